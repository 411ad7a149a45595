"""The WebSocket transport: aiohttp connections, driven through the gateway
(``connection.py``: admission, caps, timers, welcome; this module frames and moves bytes).

Every upgrade request comes here first (version, origin, admission). On the default
engine, ``ws_engine = "lean"``, the socket then leaves aiohttp (``lean.py``); what
follows is the ``ws_engine = "aiohttp"`` engine, where aiohttp keeps it.

Outgoing messages bypass aiohttp's awaitable ``send_*``: ``push`` writes a prebuilt
frame straight into the asyncio transport's buffer, which is the connection's outbox.
That makes fan-out synchronous and cheap (one frame built per message, one
``write`` per recipient, no task switch), and the buffer's size is the backpressure
signal: past ``outbox_max_bytes`` the client is closed as a slow consumer, so it can
neither grow server memory without bound nor delay anyone else.

Writing beside aiohttp's own writer is safe because both write whole frames in one
synchronous call, and the event loop never interleaves two synchronous calls.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final, NamedTuple

from aiohttp import WebSocketError, WSMsgType, web

from ..admission import Admission
from ..hub import Outbound
from ..protocol import CloseCode, encode
from ..session import Close
from .connection import Connection, Gateway
from .frameguard import FrameGuard, GuardedProtocol, Violation
from .frames import deflate_offers_valid, frame_close, frame_text, message_error, valid_close_code
from .handover import Detached, detach, handshake
from .handshake import (
    Options,
    client_address,
    handshake_token,
    offered_protocols,
    options,
    trusted_networks,
)
from .lean import LeanEngine, LeanLink

log = logging.getLogger("tidings.transport")

SUBPROTOCOL: Final = "tidings"
# The code of a connection that ended without a close frame (RFC 6455 7.1.5).
ABNORMAL: Final = 1006
# A message may be split into max_message_bytes / 64 frames, and at least this many.
MIN_FRAGMENTS: Final = 128
# How long a slow consumer's close frame may wait behind its backlog before the socket
# is aborted outright.
SLOW_CLOSE_GRACE: Final = 5.0


class _Link:
    """The wire of one WebSocket: its asyncio transport's write buffer is the outbox
    (a ``connection.Transport``)."""

    __slots__ = ("close_code", "closing", "conn", "gateway", "limit", "transport", "ws")

    name: Final = "websocket"

    def __init__(
        self,
        transport: asyncio.Transport,
        limit: int,
        ws: web.WebSocketResponse,
        gateway: Gateway,
    ) -> None:
        self.transport = transport
        self.limit = limit
        self.ws = ws
        self.gateway = gateway
        self.closing = False
        # The code of a close this side started, for the connection's log line.
        self.close_code: int | None = None
        self.conn: Connection | None = None

    def push(self, message: Outbound) -> bool:
        if self.closing:
            return False
        t = self.transport
        if t.is_closing():
            self.closing = True
            return False
        wire = message.wire
        if wire is None:
            wire = message.wire = frame_text(message.payload)
        t.write(wire)
        if t.get_write_buffer_size() > self.limit:
            self._close_slow()
        return True

    def close(self, close: Close) -> bool:
        if self.closing:
            return False
        # The close frame follows: a reply still on its way (an inbox request, say) must
        # not be written after it, which clients take for a broken connection.
        self.closing = True
        self.close_code = close.code
        self.gateway.spawn(self._close(close))
        return True

    async def _close(self, close: Close) -> None:
        await self.ws.close(code=close.code, message=close.reason.encode())

    def _close_slow(self) -> None:
        self.closing = True
        self.close_code = CloseCode.SLOW_CONSUMER
        conn = self.conn
        if conn is not None:
            session = conn.session
            log.warning(
                "closing slow consumer %s (user %r): outbox over %d bytes",
                session.client_id,
                session.user_id,
                self.limit,
            )
            session.close()
        t = self.transport
        info = CloseCode.SLOW_CONSUMER
        t.write(frame_close(info, "slow consumer"))
        # close() flushes the backlog first; a client that never reads would hold the
        # socket open forever, so abort after a grace period.
        t.close()
        asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE, t.abort)


class Refused(NamedTuple):
    """A handshake refused before the upgrade: the HTTP answer, in the API's error shape."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None


def _refused(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Refused:
    return Refused(status, {"error": {"code": code, "message": message}}, headers)


def _refusal(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A handshake refused before the upgrade, in the HTTP API's error shape."""
    return _answer(_refused(status, code, message, headers))


def _answer(refused: Refused) -> web.Response:
    return web.Response(
        body=encode(refused.body),
        status=refused.status,
        headers=refused.headers,
        content_type="application/json",
    )


class WebSocketEndpoint:
    """Accepts WebSocket connections for one node through its gateway.

    Args:
        gateway: the connections' gateway, shared with the other transports.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.node = gateway.node
        self.trusted = trusted_networks(self.node.settings.trusted_proxies)
        # Conformance-test mode: every message is echoed back by the same reader, limits
        # and writer, with no session (tests/test_security_conformance.py).
        self.echo = False
        s = self.node.settings
        self.max_fragments = max(MIN_FRAGMENTS, s.max_message_bytes // 64)
        # ws_engine = "lean": the socket leaves aiohttp after the upgrade (gateway.lean).
        self.lean = LeanEngine(gateway, self.max_fragments) if s.ws_engine == "lean" else None

    @property
    def accepting(self) -> bool:
        """False once the server is draining (every transport's gateway)."""
        return self.gateway.accepting

    @accepting.setter
    def accepting(self, value: bool) -> None:
        self.gateway.accepting = value

    @property
    def admission(self) -> Admission:
        return self.gateway.admission

    @property
    def open_connections(self) -> int:
        """Every open WebSocket, authenticated or not."""
        return len(self.gateway.connections(_Link.name))

    async def shutdown(self) -> None:
        """Stop accepting and close every connection with 1001 (on either engine)."""
        await self.gateway.shutdown()
        if self.lean is not None:
            await self.lean.shutdown(self.node.settings.shutdown_timeout)

    def _refuse(
        self, request: web.Request, peer: str | None, has_token: bool
    ) -> web.Response | None:
        """The HTTP answer to a handshake refused before the upgrade, if it is: a
        cross-site page gets no socket at all (403), and admission control (429/503,
        with Retry-After) keeps one address from taking the server."""
        metrics = self.node.metrics
        version = request.headers.get("Sec-WebSocket-Version")
        if version is not None and version.strip() != "13":
            # aiohttp would upgrade the drafts' versions 7 and 8 too (RFC 6455 4.4).
            metrics.admission_refusals["version"] += 1
            return _refusal(
                426,
                "UPGRADE_REQUIRED",
                "WebSocket version 13 only",
                {"Sec-WebSocket-Version": "13"},
            )
        origin = request.headers.get("Origin")
        if not self.gateway.origin_allowed(origin):
            log.warning("rejected WebSocket from %s: origin %r not allowed", peer, origin)
            metrics.admission_refusals["origin"] += 1
            return _refusal(403, "FORBIDDEN", "origin not allowed")
        refused = self.admit(peer, has_token)
        return None if refused is None else _answer(refused)

    def admit(self, peer: str | None, has_token: bool) -> Refused | None:
        """Admission control, the last check before an upgrade (and the first that
        counts something): None to go ahead, else the refusal, logged."""
        refusal = self.gateway.admit(peer, has_token=has_token)
        if refusal is None:
            return None
        log.info("refused WebSocket from %s: %s", peer, refusal.message)
        code = "RATE_LIMIT" if refusal.status == 429 else "UNAVAILABLE"
        return _refused(
            refusal.status, code, refusal.message, {"Retry-After": str(refusal.retry_after)}
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        gateway = self.gateway
        s = self.node.settings
        offered = offered_protocols(request)
        peer = client_address(request, self.trusted)
        token = handshake_token(request, offered)
        refused = self._refuse(request, peer, token is not None)
        if refused is not None:
            return refused
        # Browsers fail the handshake unless the server picks an offered subprotocol, so
        # clients offer "tidings" beside "bearer.<jwt>"; the token is never echoed back.
        selected = SUBPROTOCOL if SUBPROTOCOL in offered else None
        if self.lean is not None:
            return await self._handle_lean(request, self.lean, peer, token, selected)
        ws = web.WebSocketResponse(
            protocols=(selected,) if selected else (),
            heartbeat=s.heartbeat_interval or None,
            # aiohttp refuses an uncompressed message of exactly its limit but accepts a
            # compressed one one byte over: give it one more, and check the exact limit
            # on each message (frames.message_error), so both ways agree with the docs.
            max_msg_size=s.max_message_bytes + 1,
            compress=s.compression and deflate_offers_valid(request),
            decode_text=False,
            # A client's close is answered here (_answer_close), with 1002 for a code
            # it must not send; aiohttp's autoclose answers everything with 1000.
            autoclose=False,
        )
        await ws.prepare(request)
        transport = request.transport
        if transport is None:  # the client went away during the handshake
            return ws
        link = _Link(transport, s.outbox_max_bytes, ws, gateway)
        self._guard(transport, link)
        if self.echo:
            await self._echo(ws, link)
            return ws
        conn = link.conn = gateway.connect(
            link, peer=peer, options=options(request), pending=token is None
        )
        close: Close | None = None
        try:
            close = await gateway.authenticate(conn, token)
            if close is None:
                close = await self._serve(ws, conn, link)
        except Exception:
            log.exception("error on connection %s", conn.session.client_id)
            close = Close(CloseCode.INTERNAL_ERROR, "internal server error")
        finally:
            gateway.leave(conn)
        if close is not None and not link.closing:
            link.closing = True
            link.close_code = close.code
            await ws.close(code=close.code, message=close.reason.encode())
        elif not link.closing:
            await self._answer_close(ws, link)
        gateway.finish(conn, link.close_code or ws.close_code or ABNORMAL)
        return ws

    async def _handle_lean(
        self,
        request: web.Request,
        engine: LeanEngine,
        peer: str | None,
        token: str | None,
        selected: str | None,
    ) -> web.StreamResponse:
        """The lean engine's upgrade: the 101 written here, the socket handed to a
        ``LeanLink``, authentication (and the welcome) before it reads a frame."""
        s = self.node.settings
        answer = handshake(
            engine, request, s.compression and deflate_offers_valid(request), selected
        )
        if isinstance(answer, web.Response):
            return answer
        ws, head = answer
        transport = request.transport
        if transport is None:  # the client went away during the handshake
            return web.Response(status=400)
        link = LeanLink(engine, ws, transport)
        tail = detach(request, link, head)
        await self.open_lean(link, tail, peer, token, options(request))
        return Detached()

    async def open_lean(
        self,
        link: LeanLink,
        tail: bytes,
        peer: str | None,
        token: str | None,
        opts: Options,
    ) -> None:
        """A lean link whose 101 is written (by ``_handle_lean`` or the HTTP front):
        the connection opened and authenticated (with its welcome) before it reads a
        frame; ``tail`` is what the client sent after its request."""
        link.echo = self.echo
        link.engine.add(link)
        if not self.echo:
            gateway = self.gateway
            conn = link.conn = gateway.connect(link, peer=peer, options=opts, pending=token is None)
            close: Close | None
            try:
                close = await gateway.authenticate(conn, token)
            except Exception:
                log.exception("error on connection %s", conn.session.client_id)
                close = Close(CloseCode.INTERNAL_ERROR, "internal server error")
            if close is not None:
                link.close(close)
                return
        link.start(tail)

    async def _serve(
        self, ws: web.WebSocketResponse, conn: Connection, link: _Link
    ) -> Close | None:
        gateway = self.gateway
        limit = self.node.settings.max_message_bytes
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                close = message_error(msg, limit)
                if close is not None:
                    return close
                await gateway.keys_for(msg.data)  # a frame may carry a new kid
                close = gateway.receive(conn, msg.data)
                if close is None and gateway.opening(conn):
                    close = await gateway.open(conn)
                if close is not None:
                    return close
            elif msg.type is WSMsgType.ERROR:
                # aiohttp has already closed with the matching code (1009 for too big);
                # remember it, since ws.close_code then reads as the abnormal 1006.
                exc = ws.exception()
                if isinstance(exc, WebSocketError):
                    link.close_code = exc.code
                log.info("protocol error on %s: %s", conn.session.client_id, exc)
                break
        return None

    async def _echo(self, ws: web.WebSocketResponse, link: _Link) -> None:
        """The conformance-test loop: what ``_serve`` does with a message, minus the
        session (each is written back by the same writer)."""
        limit = self.node.settings.max_message_bytes
        transport = link.transport
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                close = message_error(msg, limit)
                if close is not None:
                    link.closing = True
                    await ws.close(code=close.code, message=close.reason.encode())
                    return
                if msg.type is WSMsgType.TEXT:
                    link.push(Outbound(msg.data))
                else:
                    transport.write(frame_text(msg.data, 0x82))
            elif msg.type is WSMsgType.ERROR:
                log.info("protocol error on echo: %s", ws.exception())
                return
        if not link.closing:
            await self._answer_close(ws, link)

    def _guard(self, transport: asyncio.Transport, link: _Link) -> None:
        """Put a FrameGuard in front of aiohttp's frame reader (see gateway.frameguard)."""
        inner = transport.get_protocol()
        if not isinstance(inner, asyncio.Protocol):  # pragma: no cover - aiohttp's is one
            return
        max_fragments = self.max_fragments

        def violated(violation: Violation) -> None:
            if link.closing:
                return
            conn = link.conn
            log.info(
                "protocol violation on %s: %s",
                conn.session.client_id if conn is not None else "echo",
                violation.reason,
            )
            link.closing = True
            link.close_code = violation.code
            transport.write(frame_close(violation.code, violation.reason))
            transport.close()

        transport.set_protocol(GuardedProtocol(inner, FrameGuard(max_fragments), violated))

    async def _answer_close(self, ws: web.WebSocketResponse, link: _Link) -> None:
        """Answer a close the client started: 1000, or 1002 for a code a client must not
        send (1004-1006, 1015, unassigned ones; aiohttp lets 1006 and 5000+ through)."""
        if ws.closed:
            return
        received = ws.close_code or 0
        code = 1000 if received == 0 or valid_close_code(received) else 1002
        link.closing = True
        link.close_code = code
        await ws.close(code=code)
