"""ASGI connections driven through the mounted server's own HTTP protocol, in memory.

tidings' gateway and API are aiohttp handlers that own their connection's transport (the
WebSocket outbox *is* the transport's write buffer). Rather than a second implementation
of each, an ASGI connection becomes one in-memory connection to the aiohttp protocol:
the request is written to it as HTTP/1.1 (h11 for plain requests, the sans-I/O client
of ``websockets`` for a WebSocket, masking client frames as RFC 6455 requires), and what
it writes back is parsed by the same libraries into ASGI events. Every check, limit and
close code is therefore the standalone server's.

What the bridge changes: the transport's buffer holds what the ASGI server has not
taken yet, so a client the ASGI server cannot write to fast enough is still a slow
consumer (close 4008); tidings' WebSocket pings are answered by the bridge, so a dead
client is detected by the ASGI server's own pings (uvicorn's ``--ws-ping-interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import quote

import h11
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from .transport import MemoryTransport

log = logging.getLogger("tidings.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Hop-by-hop headers: they describe the client's connection to the ASGI server, not the
# bridged one, whose framing the bridge sets itself.
_HOP: Final = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"upgrade",
        b"proxy-connection",
        b"trailer",
    )
)
# Headers of the WebSocket handshake the bridge's client writes itself.
_HANDSHAKE: Final = frozenset(
    (
        b"host",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"content-length",
    )
)
# How long the server may take to answer a client's close before the bridge drops it.
CLOSE_GRACE: Final = 5.0


def _target(scope: Scope) -> bytes:
    """The request target below the mount point (``root_path``), query included."""
    root = scope.get("root_path", "")
    path: str = scope["path"]
    raw: bytes | None = scope.get("raw_path")
    if raw is not None:
        prefix = root.encode()
        if prefix and raw.startswith(prefix):
            raw = raw[len(prefix) :]
        target = raw or b"/"
    else:
        if root and path.startswith(root):
            path = path[len(root) :]
        target = quote(path or "/").encode()
    query: bytes = scope.get("query_string", b"")
    return target + b"?" + query if query else target


def _headers(scope: Scope, drop: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in scope.get("headers", []) if k.lower() not in drop]


async def serve_http(
    scope: Scope, receive: Receive, send: Send, protocol: asyncio.Protocol
) -> None:
    """One ASGI HTTP request through ``protocol``, the response streamed back (SSE too)."""
    transport = MemoryTransport(protocol, scope.get("client"), scope.get("server"))
    protocol.connection_made(transport)
    client = h11.Connection(h11.CLIENT)
    headers = _headers(scope, _HOP)
    names = {k.lower() for k, _ in headers}
    if b"host" not in names:
        headers.append((b"host", b"tidings"))
    chunked = b"content-length" not in names and any(
        k.lower() == b"transfer-encoding" for k, _ in scope.get("headers", [])
    )
    if chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    # One request per bridged connection: aiohttp closes it after the response.
    headers.append((b"connection", b"close"))
    request = h11.Request(method=scope["method"], target=_target(scope), headers=headers)

    async def upload() -> None:
        transport.feed(client.send(request) or b"")
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                transport.lost()
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if body and client.their_state is not h11.CLOSED:
                transport.feed(client.send(h11.Data(data=body)) or b"")
        transport.feed(client.send(h11.EndOfMessage()) or b"")
        # The rest of the request is the client going away (a long SSE stream ends so).
        while (await receive())["type"] != "http.disconnect":
            pass
        transport.lost()

    uploading = asyncio.create_task(upload())
    started = False
    try:
        while (data := await transport.written()) is not None:
            client.receive_data(data)
            started = await _http_events(client, send, started)
            transport.taken(len(data))
        client.receive_data(b"")
        started = await _http_events(client, send, started)
        if not started:  # aiohttp closed without a response: nothing was done
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b""})
    except h11.RemoteProtocolError as exc:
        log.info("bad response on an ASGI bridge: %s", exc)
    finally:
        uploading.cancel()
        try:
            await uploading
        except asyncio.CancelledError:
            pass
        except h11.LocalProtocolError as exc:  # a body past its Content-Length
            log.info("request body not passed on: %s", exc)
        transport.lost()


async def _http_events(client: h11.Connection, send: Send, started: bool) -> bool:
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            return started
        if isinstance(event, h11.Response):
            started = True
            await send(
                {
                    "type": "http.response.start",
                    "status": event.status_code,
                    "headers": [(k, v) for k, v in event.headers if k not in _HOP],
                }
            )
        elif isinstance(event, h11.Data):
            await send({"type": "http.response.body", "body": bytes(event.data), "more_body": True})
        elif isinstance(event, h11.EndOfMessage):
            await send({"type": "http.response.body", "body": b""})
            return started


async def serve_websocket(
    scope: Scope, receive: Receive, send: Send, protocol: asyncio.Protocol
) -> None:
    """One ASGI WebSocket through ``protocol``: the handshake's answer becomes the
    ASGI accept (or an HTTP denial), then messages both ways until either side closes."""
    if (await receive())["type"] != "websocket.connect":
        return
    transport = MemoryTransport(protocol, scope.get("client"), scope.get("server"))
    protocol.connection_made(transport)
    target = _target(scope).decode("latin-1")
    client = ClientProtocol(
        parse_uri(f"ws://tidings{target}"),
        subprotocols=[*scope.get("subprotocols", [])] or None,
        max_size=None,  # the server's messages; the client's are limited by the server
    )
    request = client.connect()
    for key, value in _headers(scope, _HOP | _HANDSHAKE):
        request.headers[key.decode("latin-1")] = value.decode("latin-1")
    client.send_request(request)
    transport.feed(_outgoing(client))
    state = _WebSocketState()
    forwarding: asyncio.Task[None] | None = None
    try:
        while (data := await transport.written()) is not None:
            client.receive_data(data)
            transport.feed(_outgoing(client))  # pongs and the close reply
            for event in client.events_received():
                if isinstance(event, Response):
                    if not await _handshake(scope, send, client, event):
                        return
                    state.accepted = True
                    forwarding = asyncio.create_task(_forward(receive, client, transport, state))
                elif isinstance(event, Frame):
                    await _frame(send, event, state)
            transport.taken(len(data))
        if not state.accepted:
            client.receive_eof()
            for event in client.events_received():
                if isinstance(event, Response):
                    await _handshake(scope, send, client, event)
                    return
            await send({"type": "websocket.close", "code": 1011})
        elif not state.closed and not state.gone:
            # Ended without a close frame (a socket the server aborted): 1006 cannot be
            # sent, so the client hears 1011.
            await send({"type": "websocket.close", "code": 1011, "reason": "connection lost"})
    finally:
        if state.grace is not None:
            state.grace.cancel()
        if forwarding is not None:
            forwarding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarding
        transport.lost()


class _WebSocketState:
    __slots__ = ("accepted", "closed", "gone", "grace", "parts", "text")

    def __init__(self) -> None:
        self.accepted = False
        self.closed = False  # the server's close was passed on
        self.gone = False  # the client disconnected: nothing more is sent to it
        self.grace: asyncio.TimerHandle | None = None
        self.parts: list[bytes] = []
        self.text = True


def _outgoing(client: ClientProtocol) -> bytes:
    return b"".join(client.data_to_send())


async def _handshake(scope: Scope, send: Send, client: ClientProtocol, response: Response) -> bool:
    """Accept the ASGI WebSocket as the server accepted the handshake, or deny it with
    the server's status, headers (``Retry-After``) and body; True if accepted."""
    if response.status_code == 101 and not isinstance(client.handshake_exc, InvalidStatus):
        if client.handshake_exc is not None:  # pragma: no cover - aiohttp's 101 is valid
            raise client.handshake_exc
        accept: Message = {"type": "websocket.accept"}
        if client.subprotocol is not None:
            accept["subprotocol"] = client.subprotocol
        await send(accept)
        return True
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.raw_items()
            if k.lower().encode("latin-1") not in _HOP
        ]
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status_code,
                "headers": headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": bytes(response.body)})
    else:  # the ASGI server answers a close before accept with 403
        await send({"type": "websocket.close", "code": 1008})
    return False


async def _frame(send: Send, frame: Frame, state: _WebSocketState) -> None:
    if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
        state.text = frame.opcode is Opcode.TEXT
        state.parts = [bytes(frame.data)]
    elif frame.opcode is Opcode.CONT:
        state.parts.append(bytes(frame.data))
    elif frame.opcode is Opcode.CLOSE:
        if state.gone:  # the answer to the client's own close
            return
        close = Close.parse(frame.data) if frame.data else Close(1005, "")
        state.closed = True
        code = close.code if close.code not in (1005, 1006) else 1000
        await send({"type": "websocket.close", "code": code, "reason": close.reason})
        return
    else:  # ping (answered by the client protocol) or pong
        return
    if frame.fin:
        data = b"".join(state.parts)
        state.parts = []
        if state.text:
            await send({"type": "websocket.send", "text": data.decode()})
        else:
            await send({"type": "websocket.send", "bytes": data})


async def _forward(
    receive: Receive, client: ClientProtocol, transport: MemoryTransport, state: _WebSocketState
) -> None:
    """The client's messages to the server, as masked frames; its close as a close
    frame, so the server sees the code the client sent (a dropped client: the
    connection is lost, as a dropped socket would be)."""
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            if text is not None:
                client.send_text(text.encode())
            else:
                client.send_binary(message.get("bytes") or b"")
            transport.feed(_outgoing(client))
        elif message["type"] == "websocket.disconnect":
            state.gone = True
            code = message.get("code", 1005)
            if code == 1006 or client.state is not State.OPEN:
                transport.lost()
                return
            try:
                client.send_close(None if code == 1005 else code)
            except ProtocolError:  # a code no client may send: as a dropped client
                transport.lost()
                return
            transport.feed(_outgoing(client))
            # The server answers and closes; one that does not is not waited for long.
            loop = asyncio.get_running_loop()
            state.grace = loop.call_later(CLOSE_GRACE, transport.lost)
            return
