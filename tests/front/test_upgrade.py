"""WebSocket upgrades on the HTTP front (lean engine): the same 101 and the same refusals
as through aiohttp, and the connection then behaves as any other."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re

import pytest
from multidict import CIMultiDict
from websockets.protocol import State
from yarl import URL

from tidings.front.request import Head, read_head
from tidings.front.upgrade import read_query
from tidings.gateway.handover import accept

from ..conftest import TIMEOUT, Harness, ServerFactory, token
from .test_front import exchange, normal, read_answer

_DATE = re.compile(rb"Date: [^\r]*\r\n")


def upgrade(
    path: str = "/ws",
    *,
    key: str | None = None,
    headers: str = "",
    version: str = "13",
) -> bytes:
    key = key or base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: {version}\r\n{headers}\r\n"
    ).encode()


def upgrades(h: Harness) -> int:
    front = h.server.front
    assert front is not None
    return front.served["upgrade"]


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[Harness, Harness]:
    """Lean engine with the front (first) and without it (second)."""
    return (
        await make_server(http_fast_path=True, ws_engine="lean", compression=True),
        await make_server(http_fast_path=False, ws_engine="lean", compression=True),
    )


async def open_head(
    port: int, data: bytes
) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    async with asyncio.timeout(TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
    return head, reader, writer


def masked(payload: bytes) -> bytes:
    """One masked text frame (a client's), for payloads under 126 bytes."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


async def frame(reader: asyncio.StreamReader) -> dict[str, object]:
    """The next server text frame (unmasked, under 64 KiB), parsed."""
    async with asyncio.timeout(TIMEOUT):
        first, length = await reader.readexactly(2)
        assert first == 0x81
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        message = json.loads(await reader.readexactly(length))
    assert isinstance(message, dict)
    return message


@pytest.mark.parametrize(
    "extra",
    [
        "",
        "Sec-WebSocket-Protocol: tidings, bearer.{token}\r\n",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    ],
)
async def test_101_is_the_same(pair: tuple[Harness, Harness], extra: str) -> None:
    key = base64.b64encode(b"0123456789abcdef").decode()
    path = "/ws" if "bearer" in extra else f"/ws?token={token('alice')}"
    data = upgrade(path, key=key, headers=extra.replace("{token}", token("alice")))
    heads = []
    for h in pair:
        head, reader, writer = await open_head(h.server.port, data)
        heads.append(_DATE.sub(b"", head))
        assert (await frame(reader))["type"] == "welcome"
        writer.close()
    assert heads[0] == heads[1]
    assert heads[0].startswith(b"HTTP/1.1 101")
    assert upgrades(pair[0]) == 1


async def test_frames_sent_with_the_request(harness: Harness) -> None:
    """A frame in the same packet as the upgrade request is read after the welcome."""
    ping = masked(b'{"type":"ping","id":"p1"}')
    head, reader, writer = await open_head(
        harness.server.port, upgrade(f"/ws?token={token('alice')}") + ping
    )
    try:
        assert head.startswith(b"HTTP/1.1 101")
        assert (await frame(reader))["type"] == "welcome"
        assert (await frame(reader))["replyTo"] == "p1"
    finally:
        writer.close()
    assert upgrades(harness) == 1


async def test_query_options_reach_the_session(harness: Harness) -> None:
    """userId in the query must match the token's user, as through aiohttp."""
    head, reader, writer = await open_head(
        harness.server.port, upgrade(f"/ws?token={token('alice')}&userId=bob")
    )
    try:
        assert head.startswith(b"HTTP/1.1 101")
        async with asyncio.timeout(TIMEOUT):
            rest = await reader.read()
        assert rest[:1] == b"\x88"  # a close frame, not a welcome
    finally:
        writer.close()


async def test_auth_message_after_the_upgrade(harness: Harness) -> None:
    """No token in the request: the connection waits for an auth message."""
    auth = json.dumps({"type": "auth", "token": token("alice")}).encode()
    head, reader, writer = await open_head(harness.server.port, upgrade())
    try:
        assert head.startswith(b"HTTP/1.1 101")
        writer.write(bytes([0x81, 0xFE]) + len(auth).to_bytes(2, "big") + b"\0\0\0\0" + auth)
        assert (await frame(reader))["type"] == "welcome"
    finally:
        writer.close()


REFUSED_BY_AIOHTTP = {
    "version 8": upgrade(version="8"),
    "no key": upgrade().replace(b"Sec-WebSocket-Key", b"X-Nothing"),
    "bad key": upgrade(key="short"),
    # RFC 6455 4.2.1: base64 of 16 bytes; websockets' 400, through aiohttp, as before.
    "key not base64": upgrade(key="!" * 22 + "=="),
    "key of 15 bytes": upgrade(key=base64.b64encode(bytes(15)).decode()),
    "key of 17 bytes": upgrade(key=base64.b64encode(bytes(17)).decode()),
    "key unpadded": upgrade(key=base64.b64encode(bytes(16)).decode().rstrip("=")),
    "key padded short": upgrade(key=base64.b64encode(bytes(16)).decode()[:-1]),
    "key twice padded": upgrade(key=base64.b64encode(bytes(16)).decode() + "=="),
    "key with a space": upgrade(key="AAAAAAAAAAA AAAAAAAAAA=="),
    "upgrade to another protocol": upgrade().replace(b"websocket", b"websocket, h2c"),
    "not an upgrade": upgrade().replace(b"Upgrade: websocket\r\n", b""),
    "another path": upgrade("/nowhere"),
}


@pytest.mark.parametrize("case", list(REFUSED_BY_AIOHTTP))
async def test_refusals_are_aiohttps(pair: tuple[Harness, Harness], case: str) -> None:
    data = REFUSED_BY_AIOHTTP[case]
    answers = [normal((await exchange(h.server.port, data))[0]) for h in pair]
    assert answers[0] == answers[1]
    assert not answers[0].startswith(b"HTTP/1.1 101")
    assert upgrades(pair[0]) == 0
    assert pair[0].server.node.metrics.admission_refusals == (
        pair[1].server.node.metrics.admission_refusals
    )


async def test_origin_refused_by_aiohttp(make_server: ServerFactory) -> None:
    allowed = ["https://app.example"]
    pair = (
        await make_server(allowed_origins=allowed),
        await make_server(allowed_origins=allowed, http_fast_path=False),
    )
    data = upgrade(f"/ws?token={token('a')}", headers="Origin: https://evil.example\r\n")
    answers = [normal((await exchange(h.server.port, data))[0]) for h in pair]
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 403")
    ok = upgrade(f"/ws?token={token('a')}", headers="Origin: https://app.example\r\n")
    head, _, writer = await open_head(pair[0].server.port, ok)
    writer.close()
    assert head.startswith(b"HTTP/1.1 101")
    assert upgrades(pair[0]) == 1


async def test_admission_refusal_answered_as_the_endpoint(make_server: ServerFactory) -> None:
    """Admission counts, so the front answers its refusal itself: the same bytes, the
    same metric, and the connection stays open for the next request."""
    pair = (
        await make_server(max_pending_connections=1),
        await make_server(max_pending_connections=1, http_fast_path=False),
    )
    held = []
    for h in pair:  # one connection still authenticating: the cap is reached
        head, _, writer = await open_head(h.server.port, upgrade())
        assert head.startswith(b"HTTP/1.1 101")
        held.append(writer)
    answers = [normal((await exchange(h.server.port, upgrade()))[0]) for h in pair]
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 503")
    assert b"Retry-After: 1\r\n" in answers[0]
    assert pair[0].server.node.metrics.admission_refusals == (
        pair[1].server.node.metrics.admission_refusals
    )
    # Keep-alive: the next request on the same connection is answered too.
    reader, writer = await asyncio.open_connection("127.0.0.1", pair[0].server.port)
    writer.write(upgrade() + b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await read_answer(reader)).startswith(b"HTTP/1.1 503")
    assert (await read_answer(reader)).startswith(b"HTTP/1.1 200")
    writer.close()
    for w in held:
        w.close()
    assert upgrades(pair[0]) == 1


async def test_per_address_rate_counted_once(make_server: ServerFactory) -> None:
    """connection_rate_per_address for the address a trusted proxy names: a burst of 2,
    then 429; each attempt counted once."""
    h = await make_server(
        trusted_proxies=["127.0.0.1"],
        connection_rate_per_address=0.001,
        connection_burst_per_address=2,
    )
    writers = []
    via = "X-Forwarded-For: 192.0.2.7\r\n"
    for expected in (b"HTTP/1.1 101", b"HTTP/1.1 101", b"HTTP/1.1 429"):
        data = upgrade(f"/ws?token={token('u')}", headers=via)
        head, _, writer = await open_head(h.server.port, data)
        writers.append(writer)
        assert head.startswith(expected)
    for writer in writers:
        writer.close()
    assert h.server.node.metrics.admission_refusals["connection_rate"] == 1
    assert upgrades(h) == 2


async def test_aiohttp_engine_upgrades_through_aiohttp(make_server: ServerFactory) -> None:
    h = await make_server(ws_engine="aiohttp")
    async with h.client("alice"):
        pass
    assert upgrades(h) == 0


# Shapes the front answers itself (``Upgrades._switch``): the 101 must be websockets'.
SWITCHED = {
    "plain": "",
    "subprotocol": "Sec-WebSocket-Protocol: tidings, bearer.x\r\n",
    "other subprotocol": "Sec-WebSocket-Protocol: chat\r\n",
    "malformed subprotocols": "Sec-WebSocket-Protocol: a b\r\n",  # not websockets' to read
    "origin": "Origin: https://app.example\r\n",
}
REPLACED = {
    "connection list": (b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"),
    "capitalised upgrade": (b"Upgrade: websocket", b"Upgrade: WebSocket"),
    "lower-case connection": (b"Connection: Upgrade", b"Connection: upgrade"),
}


def _head(data: bytes) -> Head:
    head = read_head(data)
    assert isinstance(head, Head)
    return head


def _switch_cases() -> list[tuple[str, bytes]]:
    key = base64.b64encode(bytes(range(16))).decode()
    cases = [(name, upgrade(headers=extra, key=key)) for name, extra in SWITCHED.items()]
    for name, (old, new) in REPLACED.items():
        cases.append((name, upgrade(key=key).replace(old, new)))
    return cases


@pytest.mark.parametrize("compression", [True, False])
@pytest.mark.parametrize(("case", "data"), _switch_cases())
async def test_switched_101_is_websockets(
    make_server: ServerFactory, compression: bool, case: str, data: bytes
) -> None:
    """The 101 built on the front is the one websockets' ``accept`` makes (modulo its
    Date), and its protocol frames as websockets' would."""
    h = await make_server(ws_engine="lean", compression=compression)
    front = h.server.front
    assert front is not None
    assert front.upgrades is not None
    up = front.upgrades
    head = _head(data)
    selected = "tidings" if b"tidings" in data else None
    switched = up._switch(head.headers, compression, selected)
    assert switched is not None, case  # the shape is the front's own
    multi = CIMultiDict((k.decode(), v.decode()) for k, v in head.headers.items())
    reference = accept(up.engine, multi, head.target.decode(), compression, selected)
    assert isinstance(reference, tuple)
    assert _DATE.sub(b"", switched[1]) == _DATE.sub(b"", reference[1])
    assert _DATE.search(switched[1]) is not None
    ws, expected = switched[0], reference[0]
    assert ws.state is State.OPEN
    assert ws.extensions == expected.extensions == []
    assert ws.max_message_size == expected.max_message_size


@pytest.mark.parametrize(
    "data",
    [
        # Taken by websockets' path (the front does not judge them), answered as before.
        upgrade(headers="Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        upgrade(key="AAAAAAAAAAAAAAAAAAAAAB=="),  # non-canonical: websockets accepts it
        upgrade(key="short"),
        upgrade().replace(b"Upgrade: websocket", b"Upgrade: websocket, h2c"),
        upgrade().replace(b"Connection: Upgrade", b"Connection: Upgrade,,x y"),
    ],
)
async def test_other_shapes_take_websockets_path(harness: Harness, data: bytes) -> None:
    front = harness.server.front
    assert front is not None
    assert front.upgrades is not None
    head = _head(data)
    assert front.upgrades._switch(head.headers, True, None) is None


async def test_non_canonical_key_accepted_as_before(pair: tuple[Harness, Harness]) -> None:
    """A key whose last digit has stray bits is base64 of 16 bytes to websockets: the
    front's websockets path upgrades it with the same accept value as aiohttp's."""
    data = upgrade(f"/ws?token={token('alice')}", key="AAAAAAAAAAAAAAAAAAAAAB==")
    heads = []
    for h in pair:
        head, reader, writer = await open_head(h.server.port, data)
        heads.append(_DATE.sub(b"", head))
        assert (await frame(reader))["type"] == "welcome"
        writer.close()
    assert heads[0] == heads[1]
    assert heads[0].startswith(b"HTTP/1.1 101")
    assert upgrades(pair[0]) == 1


@pytest.mark.parametrize(
    "query",
    [
        "",
        "token=abc.def-ghi_jkl",
        "token=a&userId=bob&lastSeq=12&ack=1",
        "token=",
        "token=a=b",
        "token=first&token=second",
        "ack",
        "&token=a",
        "token=a&&ack=1",
        "=x&token=a",
        "token=a%2Eb",
        "token=a+b",
        "token=a;ack=1",
        "userId=b%C3%B6b&token=t",
        "userId=%ZZ",
    ],
)
def test_query_read_as_yarl_reads_it(query: str) -> None:
    target = f"/ws?{query}"
    assert dict(read_query(target)) == {
        k: URL(target, encoded=True).query[k] for k in URL(target, encoded=True).query
    }


@pytest.mark.parametrize("compression", [True, False])
@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate",
        "permessage-deflate; server_max_window_bits",  # malformed: declined, no 400
        "x-unknown",
    ],
)
async def test_extension_offers_answered_as_before(
    make_server: ServerFactory, compression: bool, offer: str
) -> None:
    """Without compression websockets reads no extension offer, and a malformed
    permessage-deflate offer is declined: the front builds those 101s itself; they must
    be the ones the aiohttp path writes."""
    pair = [
        await make_server(ws_engine="lean", compression=compression, http_fast_path=fast)
        for fast in (True, False)
    ]
    key = base64.b64encode(bytes(range(16))).decode()
    data = upgrade(
        f"/ws?token={token('alice')}",
        key=key,
        headers=f"Sec-WebSocket-Extensions: {offer}\r\n",
    )
    heads = []
    for h in pair:
        head, reader, writer = await open_head(h.server.port, data)
        heads.append(_DATE.sub(b"", head))
        assert (await frame(reader))["type"] == "welcome"
        writer.close()
    assert heads[0] == heads[1]
    assert (b"Sec-WebSocket-Extensions" in heads[0]) == (
        compression and offer == "permessage-deflate"
    )
    assert upgrades(pair[0]) == 1
