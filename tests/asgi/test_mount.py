"""tidings mounted in a FastAPI app under uvicorn (in this process): the WebSocket, SSE
and the HTTP API below the prefix, the host's lifespan starting and stopping it, the
embedding API from the host's routes, and refusals answered before the upgrade."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import uvicorn
import websockets
from fastapi import FastAPI

from tidings.asgi import TidingsASGI

from ..conftest import (
    API_KEY,
    TIMEOUT,
    closed_with,
    make_settings,
    recv,
    recv_type,
    request,
    token,
    wait_for,
)


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn (its WebSocket implementation: websockets) on 127.0.0.1:0."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="on", ws="websockets-sansio", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_for(lambda: server.started or task.done())
        assert not task.done(), "uvicorn did not start"
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(TIMEOUT):
            await task
        sock.close()


def host_app(**settings: Any) -> tuple[FastAPI, TidingsASGI]:
    """The docs' FastAPI app: tidings at /realtime, a route of its own that publishes."""
    tidings = TidingsASGI(make_settings(**settings))
    app = FastAPI(lifespan=tidings.lifespan)

    @app.post("/orders/{order_id}/ship")
    async def ship(order_id: str) -> dict[str, Any]:
        sent = await tidings.node.send_to_user("alice", "order_shipped", {"orderId": order_id})
        return {"delivered": sent.delivered}

    app.mount("/realtime", tidings)
    return app, tidings


async def test_websocket_api_and_embedding_under_a_prefix() -> None:
    """A client connects at /realtime/ws, is welcomed, subscribes; the API under
    /realtime/api publishes to it, and the host's own route reaches it too."""
    app, tidings = host_app()
    async with serving(app) as addr, aiohttp.ClientSession() as http:
        url = f"ws://{addr}/realtime/ws?token={token('alice')}"
        async with websockets.connect(url, subprotocols=["tidings"]) as ws:
            welcome = await recv(ws)
            assert (welcome["type"], welcome["data"]["userId"]) == ("welcome", "alice")
            assert (await request(ws, {"type": "subscribe", "channel": "news"}))[
                "type"
            ] == "subscribed"
            headers = {"Authorization": f"Bearer {API_KEY}"}
            body = {"channel": "news", "type": "headline", "data": {"t": 1}}
            async with http.post(
                f"http://{addr}/realtime/api/publish", json=body, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
            got = await recv_type(ws, "headline")
            assert (got["channel"], got["data"]) == ("news", {"t": 1})
            async with http.post(f"http://{addr}/orders/o-1/ship") as r:
                assert r.status == 200
            assert (await recv_type(ws, "order_shipped"))["data"] == {"orderId": "o-1"}
            async with http.get(f"http://{addr}/realtime/health") as r:
                assert (r.status, (await r.json())["data"]["websocket"]["totalConnections"]) == (
                    200,
                    1,
                )
    assert tidings.server.inbox is None  # the host's lifespan stopped it


async def test_refusals_keep_their_status_and_close_codes() -> None:
    """A bad token is closed 4002 as on the standalone server; a forbidden origin gets
    403 before the upgrade; an API call without a key gets the API's 401 JSON."""
    app, _ = host_app(allowed_origins=["https://app.example"])
    async with serving(app) as addr, aiohttp.ClientSession() as http:
        origin = {"Origin": "https://app.example"}
        async with websockets.connect(
            f"ws://{addr}/realtime/ws?token=nope", additional_headers=origin
        ) as ws:
            assert await closed_with(ws) == (4002, "invalid or expired token")
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(
                f"ws://{addr}/realtime/ws?token={token()}",
                additional_headers={"Origin": "https://evil.example"},
            ):
                pass
        assert refused.value.response.status_code == 403
        async with http.post(f"http://{addr}/realtime/api/publish", json={}) as r:
            assert r.status == 401
            assert "error" in await r.json()


async def test_sse_streams_through_the_mount() -> None:
    """The SSE fallback streams events as they are published, through the bridge."""
    app, tidings = host_app()
    async with serving(app) as addr, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token('bob')}"}
        async with http.get(f"http://{addr}/realtime/sse", headers=headers) as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            async with asyncio.timeout(TIMEOUT):
                seen: list[dict[str, Any]] = []
                async for line in stream.content:
                    if line.startswith(b"data:"):
                        msg = json.loads(line[5:])
                        seen.append(msg)
                        if msg["type"] == "welcome":
                            await tidings.node.send_to_user("bob", "ping_me", {"n": 1})
                        if msg["type"] == "ping_me":
                            break
            assert seen[-1]["data"] == {"n": 1}


async def test_a_mounted_server_never_binds_its_port() -> None:
    """The settings' port is ignored when mounted: a port already taken (as by a sibling
    worker) does not stop it from starting and serving through the host."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        app, tidings = host_app(port=taken.getsockname()[1])
        async with serving(app) as addr, aiohttp.ClientSession() as http:
            async with http.get(f"http://{addr}/realtime/health") as r:
                assert r.status == 200
            assert tidings.server.port == 0
    finally:
        taken.close()


async def test_closes_cross_the_bridge_both_ways() -> None:
    """The client's close reaches tidings with its code (counted as a 1000 disconnect);
    stopping tidings closes a mounted connection 1001 as a standalone server does."""
    app, tidings = host_app()
    metrics = tidings.node.metrics
    async with serving(app) as addr:
        url = f"ws://{addr}/realtime/ws?token={token('dan')}"
        async with websockets.connect(url) as ws:
            assert (await recv(ws))["type"] == "welcome"
        await wait_for(lambda: metrics.disconnects["1000"] == 1)
        async with websockets.connect(url) as ws:
            assert (await recv(ws))["type"] == "welcome"
            await tidings.stop()
            assert await closed_with(ws) == (1001, "server shutting down")


async def test_a_client_that_stops_reading_is_a_slow_consumer() -> None:
    """uvicorn's own backpressure reaches tidings' outbox through the bridge: a mounted
    subscriber that stops reading is closed 4008 while one that reads gets everything."""
    app, tidings = host_app(outbox_max_bytes=256 * 1024)
    hub = tidings.node.hub
    async with serving(app) as addr:
        url = f"ws://{addr}/realtime/ws?token="
        # A small receive buffer, fixed before connecting (no autotuning): the kernel
        # holds little of what the sleeper does not read, so the flood stays short.
        small = socket.socket()
        small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        host, port = addr.split(":")
        small.connect((host, int(port)))
        small.setblocking(False)
        async with (
            # Uncompressed: the ASGI server's own deflate would shrink the flood to nothing.
            websockets.connect(url + token("reader"), max_size=None, compression=None) as reader,
            websockets.connect(
                url + token("sleeper"), max_size=None, max_queue=1, compression=None, sock=small
            ) as sleeper,
        ):
            for ws in (reader, sleeper):
                assert (await recv(ws))["type"] == "welcome"
                assert (await request(ws, {"type": "subscribe", "channel": "news"}))["type"] == (
                    "subscribed"
                )
            payload = "x" * 32 * 1024
            sent = 0
            # Bounded: far more than the socket buffers on both sides plus the outbox.
            while hub.channel_counts().get("news", 0) == 2 and sent < 2000:
                await tidings.node.publish("news", "tick", {"n": sent, "p": payload})
                assert (await recv(reader))["data"]["n"] == sent
                sent += 1
            assert hub.channel_counts() == {"news": 1}, "the slow consumer was never dropped"
    assert tidings.node.metrics.disconnects["4008"] == 1
