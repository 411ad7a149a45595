"""Limits and abuse: caps, floods, oversized frames, slow consumers, dead peers."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import websockets

from ..conftest import (
    TIMEOUT,
    Harness,
    ServerFactory,
    closed_with,
    flood_until_dropped,
    recv,
    request,
    token,
    wait_for,
)


async def test_per_user_cap(make_server: ServerFactory) -> None:
    """The sixth tab of one user is closed 4009; other users are unaffected."""
    h = await make_server(max_connections_per_user=5)
    tabs = [h.connect(f"?token={token('alice')}") for _ in range(6)]
    opened = [await t.__aenter__() for t in tabs]
    try:
        for ws in opened[:5]:
            assert (await recv(ws))["type"] == "welcome"
        assert await closed_with(opened[5]) == (4009, "too many connections for this user")
        async with h.client("bob"):
            pass
    finally:
        for t in tabs:
            await t.__aexit__(None, None, None)


async def test_total_cap(make_server: ServerFactory) -> None:
    """Past max_connections the server closes new connections 4009 (guide 001)."""
    h = await make_server(max_connections=2)
    async with h.client("a"), h.client("b"), h.connect(f"?token={token('c')}") as third:
        assert (await closed_with(third))[0] == 4009


async def test_flood_is_limited_then_closed(make_server: ServerFactory) -> None:
    """A flood first gets RATE_LIMIT errors, then a 4029 close; others keep being served."""
    h = await make_server(rate_limit_per_second=5, rate_limit_burst=5, rate_limit_close_after=5)
    async with h.client("calm") as calm, h.client("flood") as flood:
        for _ in range(30):
            await flood.send('{"type":"ping"}')
        kinds = []
        try:
            while True:
                kinds.append((await recv(flood))["data"].get("code"))
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None
            assert exc.rcvd.code == 4029
        assert "RATE_LIMIT" in kinds
        assert (await request(calm, {"type": "ping"}))["type"] == "pong"


async def test_oversized_message_1009(make_server: ServerFactory) -> None:
    """A frame over max_message_bytes closes 1009; other clients are unaffected."""
    h = await make_server(max_message_bytes=1024)
    async with h.client("calm") as calm, h.client("big") as big:
        await big.send(json.dumps({"type": "ping", "pad": "x" * 2000}))
        assert (await closed_with(big))[0] == 1009
        assert (await request(calm, {"type": "ping"}))["type"] == "pong"


async def test_slow_consumer_closed_others_unaffected(make_server: ServerFactory) -> None:
    """A client that stops reading is closed 4008 while a reading client gets everything."""
    h = await make_server(outbox_max_bytes=256 * 1024)
    async with h.client("fast") as fast, h.client("slow", max_queue=1) as slow:
        await request(fast, {"type": "subscribe", "channel": "feed"})
        await request(slow, {"type": "subscribe", "channel": "feed"})
        sent = await flood_until_dropped(h, fast, "feed")
        # Publishing goes on for the reader.
        await h.api(
            "POST", "/api/publish", {"channel": "feed", "type": "tick", "data": {"n": sent}}
        )
        assert (await recv(fast))["data"]["n"] == sent
        # The slow client, reading again, finds its backlog and then the 4008 close.
        assert (await closed_with(slow))[0] == 4008


async def _raw_upgrade(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    writer.write(request.encode() + b"\r\n")
    status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101"), status
    return reader, writer


async def test_dead_peer_dropped_by_heartbeat(make_server: ServerFactory) -> None:
    """A peer that never answers protocol pings is dropped (guide 001's heartbeat)."""
    h = await make_server(heartbeat_interval=0.3)
    reader, writer = await _raw_upgrade(h.server.port, f"/ws?token={token('ghost')}")
    try:
        await wait_for(lambda: h.server.node.hub.connection_count() == 1)
        received = b""
        async with asyncio.timeout(TIMEOUT):
            while chunk := await reader.read(65536):
                received += chunk
        assert b"\x89" in received  # at least one ping frame arrived unanswered
        await wait_for(lambda: h.server.node.hub.connection_count() == 0)
    finally:
        writer.close()


async def test_silent_tcp_connection_dropped(make_server: ServerFactory) -> None:
    """A TCP connection that never sends a request is closed after handshake_timeout."""
    h = await make_server(handshake_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
    try:
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
    finally:
        writer.close()


async def test_server_survives_garbage_after_upgrade(harness: Harness) -> None:
    """Invalid WebSocket framing from one client does not disturb another."""
    async with harness.client("calm") as calm:
        reader, writer = await _raw_upgrade(harness.server.port, f"/ws?token={token('x')}")
        writer.write(b"\xff\x00garbage that is not a websocket frame")
        async with asyncio.timeout(TIMEOUT):
            while await reader.read(65536):
                pass
        writer.close()
        assert (await request(calm, {"type": "ping"}))["type"] == "pong"


async def test_compressed_message_limit_is_decompressed_size(make_server: ServerFactory) -> None:
    """With compression on, the size limit applies to the decompressed message (no zip bombs)."""
    h = await make_server(compression=True, max_message_bytes=4096)
    async with (
        h.client("calm", compression="deflate") as calm,
        h.client("bomb", compression="deflate") as bomb,
    ):
        assert bomb.protocol.extensions, "permessage-deflate was not negotiated"
        # Compresses to a few dozen bytes on the wire, inflates past the limit.
        await bomb.send(json.dumps({"type": "ping", "pad": "0" * 100_000}))
        assert (await closed_with(bomb))[0] == 1009
        small = json.dumps({"type": "ping", "id": "z", "pad": "0" * 1000})
        await calm.send(small)
        assert (await recv(calm))["replyTo"] == "z"
