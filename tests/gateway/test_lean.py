"""The lean WebSocket engine: the socket leaves aiohttp after the upgrade, and what only
that hand-over could get wrong. Everything else every test runs on both engines
(tests/test_security_conformance.py) or on either (TIDINGS_TEST_WS_ENGINE=lean)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct

import pytest

from tidings.gateway.lean import CLOSE_GRACE, LeanLink

from ..conftest import TIMEOUT, ServerFactory, closed_with, request, token, wait_for


def _masked_text(payload: bytes) -> bytes:
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + key + masked


async def _frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next server frame (unmasked): its first byte and its payload."""
    first, second = await reader.readexactly(2)
    n = second & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return first, await reader.readexactly(n)


async def _frames(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    """The payloads of the next ``count`` server frames."""
    async with asyncio.timeout(TIMEOUT):
        return [(await _frame(reader))[1] for _ in range(count)]


async def test_aiohttp_keeps_nothing_of_a_lean_connection(make_server: ServerFactory) -> None:
    """Once upgraded, the connection is served with no aiohttp request handler left."""
    h = await make_server(ws_engine="lean")
    runner = h.server._runner
    assert runner is not None
    aiohttp_server = runner.server
    assert aiohttp_server is not None
    async with h.client("lean") as ws:
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        await wait_for(lambda: not aiohttp_server.connections)
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        link = h.server.gateway.connections("websocket")[0].transport
        assert isinstance(link, LeanLink)
        assert not hasattr(link, "__dict__")  # slots only: the point of the engine


async def test_frame_sent_behind_the_request_is_served(make_server: ServerFactory) -> None:
    """A frame the client sends in the same packet as its upgrade request (before the
    101) is read after the welcome, not lost with aiohttp's buffer."""
    h = await make_server(ws_engine="lean")
    reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET /ws?token={token('eager')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    writer.write(head.encode() + _masked_text(b'{"type":"ping","id":"early"}'))
    try:
        async with asyncio.timeout(TIMEOUT):
            status = await reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        welcome, pong = (json.loads(p) for p in await _frames(reader, 2))
        assert welcome["type"] == "welcome"
        assert pong["type"] == "pong", pong
    finally:
        writer.close()


async def test_shutdown_closes_lean_sockets_going_away(make_server: ServerFactory) -> None:
    """Stopping the server closes lean connections 1001 and leaves none behind."""
    h = await make_server(ws_engine="lean")
    async with h.client("bye") as ws:
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        lean = h.server.endpoint.lean
        assert lean is not None
        stopping = asyncio.create_task(h.server.stop())
        assert (await closed_with(ws))[0] == 1001
        async with asyncio.timeout(TIMEOUT):
            await stopping
        assert not lean.links


@pytest.mark.parametrize("compression", [True, False])
async def test_deflate_is_negotiated_without_server_context(
    make_server: ServerFactory, compression: bool
) -> None:
    """With compression on, a deflate offer gets server_no_context_takeover (the server
    never compresses, so it keeps no compressor); off, no extension at all."""
    h = await make_server(ws_engine="lean", compression=compression)
    async with h.client("zip", compression="deflate") as ws:
        assert (await request(ws, {"type": "ping", "pad": "x" * 2000}))["type"] == "pong"
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    if compression:
        assert "permessage-deflate" in extensions
        assert "server_no_context_takeover" in extensions
    else:
        assert extensions == ""


async def test_answered_pings_keep_an_idle_connection(make_server: ServerFactory) -> None:
    """A client that sends nothing but answers the heartbeat's pings stays open through
    several of them, and is still served."""
    h = await make_server(ws_engine="lean", heartbeat_interval=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws?token={token('quiet')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            await reader.readuntil(b"\r\n\r\n")
            pings = 0
            while pings < 3:
                first, _ = await _frame(reader)
                if first == 0x89:
                    pings += 1
                    writer.write(bytes((0x8A, 0x80)) + os.urandom(4))  # an empty pong
        writer.write(_masked_text(b'{"type":"ping","id":"still"}'))
        (reply,) = await _frames(reader, 1)
        assert json.loads(reply)["type"] == "pong"
    finally:
        writer.close()


async def test_refused_before_start_completes_its_close_handshake(
    make_server: ServerFactory,
) -> None:
    """A connection refused during authentication (its reading still paused) reads the
    client's close answer and ends at once, not when the close grace runs out."""
    h = await make_server(ws_engine="lean")
    rejections = h.server.node.metrics.rejections
    async with asyncio.timeout(CLOSE_GRACE / 2):  # the whole handshake, both ways
        async with h.connect("?token=not-a-jwt") as ws:
            assert (await closed_with(ws))[0] == 4002
        await wait_for(lambda: rejections["4002"] == 1)
