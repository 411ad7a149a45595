"""The HTTP front (tidings.front): what it serves it answers byte for byte as aiohttp
does, and everything else reaches aiohttp unchanged, on the same connection."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tidings.broker import BrokerError
from tidings.front import Front
from tidings.front.connection import FrontConnection
from tidings.publication import Sent

from ..conftest import API_KEY, TIMEOUT, Harness, ServerFactory, token
from ..manual_clock import ManualClock

_DATE = re.compile(rb"Date: [^\r]*\r\n")
_ID = re.compile(rb'"id":"[^"]*"')
PUBLISH = b'{"channel":"news","data":{"n":1}}'


def request(
    body: bytes = PUBLISH,
    path: bytes = b"/api/publish",
    *,
    headers: bytes = b"",
    key: str | None = API_KEY,
    method: bytes = b"POST",
    version: bytes = b"HTTP/1.1",
) -> bytes:
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key is not None else b""
    return (
        method + b" " + path + b" " + version + b"\r\nHost: test\r\n" + auth
        + b"Content-Type: application/json\r\n" + headers
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One whole HTTP response (head and Content-Length body)."""
    async with asyncio.timeout(TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"Content-Length: (\d+)", head)
        body = await reader.readexactly(int(match.group(1))) if match else b""
    return head + body


async def exchange(port: int, data: bytes, answers: int = 1) -> list[bytes]:
    """Send ``data`` on one connection and read ``answers`` responses."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return [await read_answer(reader) for _ in range(answers)]
    finally:
        writer.close()


def normal(answer: bytes) -> bytes:
    """An answer with what differs between two servers (the date, the message id) blanked."""
    return _ID.sub(b'"id":"ID"', _DATE.sub(b"Date: -\r\n", answer))


def front_of(h: Harness) -> Front:
    front = h.server.front
    assert front is not None
    return front


def served(h: Harness) -> int:
    """API calls the front answered itself (WebSocket upgrades aside)."""
    return sum(n for route, n in front_of(h).served.items() if route != "upgrade")


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[Harness, Harness]:
    """The same settings with the front (first) and without it (second)."""
    limit = 65536  # a body too large for it is a small one to send
    return (
        await make_server(http_fast_path=True, max_api_body_bytes=limit),
        await make_server(http_fast_path=False, max_api_body_bytes=limit),
    )


async def same_answer(pair: tuple[Harness, Harness], data: bytes, *, fast: bool) -> bytes:
    """The answer of both servers to ``data``: identical but for the date and id; ``fast``
    says whether the front served it itself."""
    with_front, without = pair
    before = served(with_front)
    [a] = await exchange(with_front.server.port, data)
    [b] = await exchange(without.server.port, data)
    assert normal(a) == normal(b)
    assert served(with_front) == before + (1 if fast else 0)
    assert without.server.front is None
    return a


async def test_publish_answer_is_aiohttps(pair: tuple[Harness, Harness]) -> None:
    answer = await same_answer(pair, request(), fast=True)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["channel"] == "news"
    assert body["delivered"] == 0


async def test_keep_alive_header_answered_as_aiohttp(pair: tuple[Harness, Harness]) -> None:
    """Clients such as urllib3 say Connection: keep-alive on HTTP/1.1."""
    data = request(headers=b"Connection: keep-alive\r\n")
    answer = await same_answer(pair, data, fast=True)
    assert answer.startswith(b"HTTP/1.1 200 OK")


async def test_front_sockets_have_no_nagle_delay(harness: Harness) -> None:
    """The front does not set TCP_NODELAY itself (the event loop does, on every TCP
    transport): a connection it holds must have it, or small answers wait for ACKs."""
    front = harness.server.front
    assert front is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.server.port)
    try:
        writer.write(request())
        assert (await read_answer(reader)).startswith(b"HTTP/1.1 200")
        (connection,) = front.connections  # kept alive, still the front's
        assert connection.transport is not None
        sock = connection.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        writer.close()


async def test_publish_reaches_subscribers(harness: Harness) -> None:
    async with harness.client("alice") as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "news", "id": "s"}))
        async with asyncio.timeout(TIMEOUT):
            while json.loads(await ws.recv()).get("replyTo") != "s":
                pass
        [answer] = await exchange(harness.server.port, request())
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["delivered"] == 1
        async with asyncio.timeout(TIMEOUT):
            while (msg := json.loads(await ws.recv()))["type"] != "message":
                pass
        assert msg["data"] == {"n": 1}
    assert served(harness) == 1


@pytest.mark.parametrize(
    "route",
    [
        (b"/api/notifications", b'{"userId":"bob","type":"t","title":"hello"}'),
        (b"/api/notifications/batch", b'{"notifications":[{"userId":"bob","type":"t"}]}'),
    ],
)
async def test_notification_creates_answer_as_aiohttp(
    pair: tuple[Harness, Harness], route: tuple[bytes, bytes]
) -> None:
    path, body = route
    answer = await same_answer(pair, request(body, path), fast=True)
    assert answer.startswith(b"HTTP/1.1 20")


async def test_idempotent_create_replays(harness: Harness) -> None:
    body = b'{"userId":"bob","type":"t","title":"once"}'
    data = request(body, b"/api/notifications", headers=b"Idempotency-Key: k1\r\n")
    first, second = await exchange(harness.server.port, data + data, answers=2)
    assert first.startswith(b"HTTP/1.1 201 Created")
    assert second.startswith(b"HTTP/1.1 200 OK")
    assert b'"replayed":true' in second
    assert served(harness) == 2


HANDED_OVER = {
    "bad JSON": request(b"{nope"),
    "unknown field": request(b'{"channel":"news","title":"x"}'),
    "no key": request(key=None),
    "wrong key": request(key="not-the-key"),
    "user token": request(key=token("alice")),
    "body too large": request(b'{"channel":"news","data":"' + b"x" * 70_000 + b'"}'),
    "chunked": (
        b"POST /api/publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
        + API_KEY.encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        + hex(len(PUBLISH))[2:].encode()
        + b"\r\n"
        + PUBLISH
        + b"\r\n0\r\n\r\n"
    ),
    "HTTP/1.0": request(version=b"HTTP/1.0"),
    "Connection: close": request(headers=b"Connection: close\r\n"),
    "Origin": request(headers=b"Origin: https://elsewhere.example\r\n"),
    "query string": request(path=b"/api/publish?x=1"),
    "another route": request(path=b"/api/broadcast"),
    "GET": request(b"", b"/health/live", method=b"GET"),
    "HEAD": request(b"", b"/health", method=b"HEAD"),
    "bad Idempotency-Key": request(
        b'{"userId":"bob","type":"t"}',
        b"/api/notifications",
        headers=b"Idempotency-Key: " + b"k" * 300 + b"\r\n",
    ),
    "duplicate header": request(headers=b"Content-Type: text/plain\r\n"),
    "too deep": request(b'{"channel":"news","data":' + b"[" * 200 + b"]" * 200 + b"}"),
}


@pytest.mark.parametrize("case", list(HANDED_OVER))
async def test_anything_else_is_aiohttps(pair: tuple[Harness, Harness], case: str) -> None:
    """Each request not of the success shape gets aiohttp's own answer (and metric)."""
    data = HANDED_OVER[case]
    with_front, without = pair
    if data.startswith(b"HEAD"):
        reader, writer = await asyncio.open_connection("127.0.0.1", with_front.server.port)
        writer.write(data)
        async with asyncio.timeout(TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        assert head.startswith(b"HTTP/1.1 200")
        assert served(with_front) == 0
        return
    await same_answer(pair, data, fast=False)
    assert dict(with_front.server.node.metrics.api_requests) == dict(
        without.server.node.metrics.api_requests
    )


async def test_rate_limit_counts_once(make_server: ServerFactory) -> None:
    """The key's bucket is the middleware's: the front's requests spend it, and a
    request it refuses is refused by aiohttp (429) without being counted twice."""
    h = await make_server(api_rate_limit_per_second=0.001)  # a burst of 1, no refill
    first, second = await exchange(h.server.port, request() * 2, answers=2)
    assert first.startswith(b"HTTP/1.1 200")
    assert second.startswith(b"HTTP/1.1 429")
    assert b"Retry-After: 1" in second
    assert served(h) == 1


async def test_errors_after_acting_are_the_middlewares(pair: tuple[Harness, Harness]) -> None:
    """Refused by the publish path itself (422), or the broker down (503): the front
    answers as the middleware does, status, headers and body."""
    bad = request(b'{"channel":"news","type":""}')
    answer = await same_answer(pair, bad, fast=True)
    assert answer.startswith(b"HTTP/1.1 422")

    async def down(channel: str, kind: str, data: Any) -> Sent:
        raise BrokerError("down")

    for h in pair:
        h.server.node.publish = down  # type: ignore[method-assign]
    answer = await same_answer(pair, request(), fast=True)
    assert answer.startswith(b"HTTP/1.1 503")
    assert b"Retry-After: 1\r\n" in answer
    statuses = {k: v for k, v in pair[0].server.node.metrics.api_requests.items()}
    assert statuses == dict(pair[1].server.node.metrics.api_requests)


async def test_pipelined_answers_in_order(harness: Harness) -> None:
    """Pipelined requests in one packet, the last one aiohttp's: answered in order."""
    bodies = [b'{"channel":"news","data":%d}' % n for n in range(3)]
    health = b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n"
    data = b"".join(request(b) for b in bodies) + health + request(bodies[0])
    answers = await exchange(harness.server.port, data, answers=5)
    assert [a[:12] for a in answers] == [b"HTTP/1.1 200"] * 5
    ids = [json.loads(a.partition(b"\r\n\r\n")[2]).get("id", "") for a in answers]
    assert ids[0] < ids[1] < ids[2]
    assert ids[4] > ids[2]
    assert b'"status"' in answers[3]
    # After the hand-over the connection is aiohttp's: the last publish was not the front's.
    assert served(harness) == 3


async def test_split_at_every_byte(harness: Harness) -> None:
    """A request cut in two at any byte is served once, whole."""
    data = request()
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.server.port)
    try:
        for cut in range(1, len(data)):
            writer.write(data[:cut])
            await writer.drain()
            await asyncio.sleep(0)  # let the server read the first part on its own
            writer.write(data[cut:])
            answer = await read_answer(reader)
            assert answer.startswith(b"HTTP/1.1 200 OK"), cut
    finally:
        writer.close()
    assert served(harness) == len(data) - 1


async def test_split_at_every_byte_unit(harness: Harness) -> None:
    """The same, deterministically: each part handed to the protocol on its own."""
    front = front_of(harness)
    data = request() * 2

    class Transport(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self.out = bytearray()

        def write(self, data: bytes | bytearray | memoryview) -> None:
            self.out += data

        def is_closing(self) -> bool:
            return False

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return default

    for cut in range(1, len(data)):
        conn = front()
        t = Transport()
        conn.connection_made(t)
        conn.data_received(data[:cut])
        conn.data_received(data[cut:])
        async with asyncio.timeout(TIMEOUT):
            while t.out.count(b"HTTP/1.1 200 OK") < 2:
                await asyncio.sleep(0)
        assert conn in front.connections
        conn.connection_lost(None)
    assert front.connections == set()


async def test_large_body(harness: Harness) -> None:
    """A body just within the limit, arriving in many packets, is served by the front."""
    limit = harness.server.settings.max_api_body_bytes
    body = b'{"channel":"news","data":"' + b"x" * (limit - 40) + b'"}'
    assert len(body) <= limit
    [answer] = await exchange(harness.server.port, request(body))
    assert answer.startswith(b"HTTP/1.1 200")
    assert served(harness) == 1


async def test_slowloris_is_closed(make_server: ServerFactory) -> None:
    """A head that never completes is closed after handshake_timeout, as by aiohttp."""
    h = await make_server(handshake_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
    try:
        writer.write(request()[:30])
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
    finally:
        writer.close()


async def test_late_body_gets_aiohttps_408(make_server: ServerFactory) -> None:
    """A whole head whose body stops short goes to aiohttp, whose body timeout answers."""
    h = await make_server(handshake_timeout=0.2, body_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
    try:
        writer.write(request()[:-5])
        assert (await read_answer(reader)).startswith(b"HTTP/1.1 408")
    finally:
        writer.close()
    assert served(h) == 0


async def test_idle_keepalive_closed(make_server: ServerFactory) -> None:
    """After an answer, an idle keep-alive connection is closed after the timeout."""
    h = await make_server(handshake_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
    try:
        writer.write(request())
        assert (await read_answer(reader)).startswith(b"HTTP/1.1 200")
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
    finally:
        writer.close()


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_keepalive_timeout_counts_from_the_last_answer() -> None:
    """The keep-alive timer is kept between requests and moved when it fires early: a
    connection answered every 0.2 s outlives several 0.3 s timeouts, and after its last
    answer it is closed no sooner and no later than the timeout (the clock is moved by
    hand; ``test_idle_keepalive_closed`` runs the same on a real server)."""
    clock = ManualClock()
    front = cast(Any, SimpleNamespace(timeout=0.3))
    conn = FrontConnection(front)
    transport = _Transport()
    conn.transport = cast(asyncio.Transport, transport)
    conn.loop = cast(asyncio.AbstractEventLoop, clock)
    conn._arm()  # as connection_made does
    for answered in (0.2, 0.4, 0.6, 0.8):
        clock.run_until(answered)
        assert not transport.closed, answered
        conn._arm()  # as each answer does
    clock.run_until(0.8 + 0.3 - 0.001)
    assert not transport.closed
    clock.run_until(0.8 + 0.3)
    assert transport.closed
    assert not clock.armed()  # nothing left armed


async def test_off_switch(make_server: ServerFactory) -> None:
    h = await make_server(http_fast_path=False)
    assert h.server.front is None
    [answer] = await exchange(h.server.port, request())
    assert answer.startswith(b"HTTP/1.1 200")


async def test_websocket_beside_the_front(harness: Harness) -> None:
    """An upgrade on the listening socket still reaches the WebSocket endpoint."""
    async with harness.client("alice") as ws:
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        async with asyncio.timeout(TIMEOUT):
            assert json.loads(await ws.recv())["type"] == "pong"


async def test_stop_finishes_a_publication_in_flight(make_server: ServerFactory) -> None:
    """Shutdown closes idle front connections and answers the one being served."""
    h = await make_server()
    started, release = asyncio.Event(), asyncio.Event()
    real = h.server.node.publish

    async def slow(channel: str, kind: str, data: Any) -> Sent:
        started.set()
        await release.wait()
        return await real(channel, kind, data)

    h.server.node.publish = slow  # type: ignore[method-assign]
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", h.server.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
    writer.write(request())
    async with asyncio.timeout(TIMEOUT):
        await started.wait()
    stopping = asyncio.create_task(h.server.stop())
    async with asyncio.timeout(TIMEOUT):
        assert await idle_reader.read() == b""
    release.set()
    assert (await read_answer(reader)).startswith(b"HTTP/1.1 200")
    async with asyncio.timeout(TIMEOUT):
        await stopping
    writer.close()
    idle_writer.close()
