"""The picows reference: the cheapest Python WebSocket server we know, doing the bare minimum.

As bench/ref_aiohttp.py: ``GET /ws?token=JWT`` (HS256, PyJWT) is answered with
``{"type":"welcome"}``; ``{"type":"subscribe","channel":C}`` gets
``{"type":"subscribed","channel":C}``; a publication is serialised once (msgspec) and
sent to every subscriber of its channel. picows takes only WebSocket upgrades (a GET
without a body), so ``POST /api/publish`` is served on a second port by a minimal
keep-alive HTTP/1.1 protocol in the same process and on the same event loop.

Prints ``publish port P`` and then ``listening on PORT`` once bound.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import jwt
import msgspec
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

SECRET = os.environ["TIDINGS_JWT_SECRET"]
API_KEY = os.environ["TIDINGS_API_KEYS"].split(",")[0]
WELCOME = msgspec.json.encode({"type": "welcome"})

channels: dict[str, set[WSTransport]] = {}


class Conn(WSListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.mine: list[str] = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, WELCOME)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return
        cmd = msgspec.json.decode(frame.get_payload_as_bytes())
        if cmd.get("type") == "subscribe":
            ch = str(cmd["channel"])
            channels.setdefault(ch, set()).add(transport)
            self.mine.append(ch)
            transport.send(
                WSMsgType.TEXT, msgspec.json.encode({"type": "subscribed", "channel": ch})
            )

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for ch in self.mine:
            subs = channels.get(ch)
            if subs is not None:
                subs.discard(transport)
                if not subs:
                    del channels[ch]


def listener_factory(request: WSUpgradeRequest) -> Conn | WSUpgradeResponseWithListener:
    url = urlsplit(request.path.decode())
    token = parse_qs(url.query).get("token", [""])[0]
    try:
        jwt.decode(token, SECRET, algorithms=["HS256"])["sub"]
    except (jwt.InvalidTokenError, KeyError):
        return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(401), None)
    return Conn()


def publish(body: bytes) -> int:
    msg = msgspec.json.decode(body)
    ch = msg["channel"]
    wire = msgspec.json.encode(
        {
            "id": uuid.uuid4().hex,
            "type": msg["type"],
            "channel": ch,
            "data": msg.get("data"),
            "timestamp": time.time(),
        }
    )
    delivered = 0
    for t in list(channels.get(ch, ())):
        t.send(WSMsgType.TEXT, wire)
        delivered += 1
    return delivered


class PublishHttp(asyncio.Protocol):
    """POST /api/publish, keep-alive, Content-Length bodies only."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + n:
                return
            body = self.buf[end + 4 : end + 4 + n]
            self.buf = self.buf[end + 4 + n :]
            if headers.get("authorization") != f"Bearer {API_KEY}":
                self.answer(401, b'{"error":"unauthorized"}')
            else:
                self.answer(200, b'{"delivered":%d}' % publish(body))

    def answer(self, status: int, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, len(body), body)
        )


async def main() -> None:
    loop = asyncio.get_running_loop()
    http = await loop.create_server(PublishHttp, "127.0.0.1", 0, backlog=2048)
    ws = await ws_create_server(listener_factory, "127.0.0.1", 0, backlog=2048)
    print(f"publish port {http.sockets[0].getsockname()[1]}", flush=True)
    print(f"listening on {ws.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(15, stop.set)
    await stop.wait()
    ws.close()
    http.close()


if __name__ == "__main__":
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as r:
        r.run(main())
