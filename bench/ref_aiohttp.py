"""The bare aiohttp reference: what the stack tidings is built on costs with nothing on top.

One port, HTTP and WebSocket, as tidings: ``GET /ws?token=JWT`` (HS256, checked with
PyJWT) is answered with ``{"type":"welcome"}``; a text frame
``{"type":"subscribe","channel":C}`` gets ``{"type":"subscribed","channel":C}``;
``POST /api/publish`` with ``Authorization: Bearer KEY`` and ``{channel,type,data}``
serialises the message once (msgspec) and sends it to every subscriber of the channel
with aiohttp's own ``send_str``, answering ``{"delivered": N}``. Nothing else: no store,
no outbox bound, no rate limit, no metrics, no logging per connection.

    TIDINGS_JWT_SECRET=... TIDINGS_API_KEYS=... python bench/ref_aiohttp.py

Prints ``listening on PORT`` once bound (port 0: the OS picks).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

import jwt
import msgspec
from aiohttp import WSMsgType, web

SECRET = os.environ["TIDINGS_JWT_SECRET"]
API_KEY = os.environ["TIDINGS_API_KEYS"].split(",")[0]
WELCOME = msgspec.json.encode({"type": "welcome"}).decode()

channels: dict[str, set[web.WebSocketResponse]] = {}


async def ws_handler(request: web.Request) -> web.StreamResponse:
    try:
        claims = jwt.decode(request.query.get("token", ""), SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        raise web.HTTPUnauthorized() from None
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    mine: list[str] = []
    try:
        await ws.send_str(WELCOME)
        _ = claims["sub"]
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            cmd = msgspec.json.decode(msg.data)
            if cmd.get("type") == "subscribe":
                ch = str(cmd["channel"])
                channels.setdefault(ch, set()).add(ws)
                mine.append(ch)
                await ws.send_str(
                    msgspec.json.encode({"type": "subscribed", "channel": ch}).decode()
                )
    finally:
        for ch in mine:
            subs = channels.get(ch)
            if subs is not None:
                subs.discard(ws)
                if not subs:
                    del channels[ch]
    return ws


async def publish(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {API_KEY}":
        raise web.HTTPUnauthorized()
    body = msgspec.json.decode(await request.read())
    ch = body["channel"]
    text = msgspec.json.encode(
        {
            "id": uuid.uuid4().hex,
            "type": body["type"],
            "channel": ch,
            "data": body.get("data"),
            "timestamp": time.time(),
        }
    ).decode()
    delivered = 0
    for ws in list(channels.get(ch, ())):
        if not ws.closed:
            await ws.send_str(text)
            delivered += 1
    return web.json_response({"delivered": delivered})


async def main() -> None:
    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_post("/api/publish", publish)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", int(os.environ.get("PORT", "0")), backlog=2048)
    await site.start()
    port = runner.addresses[0][1]
    print(f"listening on {port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(15, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    try:
        import uvloop

        runner_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        runner_factory = None
    with asyncio.Runner(loop_factory=runner_factory) as r:
        r.run(main())
    sys.exit(0)
