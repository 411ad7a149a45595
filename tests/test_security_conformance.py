"""WebSocket conformance: the Autobahn TestSuite's cases (run by kosoku) against the real
transport in echo mode, and the RFC 6455 / 7692 checks the issue found missing, each
against a real server, on both WebSocket engines (`ws_engine`: aiohttp and lean).
`make conformance` runs every section (see docs/security.md)."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import os
import struct
from collections import Counter
from typing import Any

import pytest
import websockets
from kosoku import FailureError, run_fuzzingclient

from .conftest import TIMEOUT, Harness, ServerFactory, closed_with, recv, request, token
from .security import assert_no_error_logged, assert_still_serving, rss_within

# Cases that may end other than OK / NON-STRICT / INFORMATIONAL, each with its reason.
ALLOWED: dict[str, str] = {}


def _patch_compression_cases() -> None:
    """kosoku 0.1.0's port of the compression cases (12.*, 13.*) hashes the echoed
    message as the str its runner hands over (text decoded, binary as latin-1), so each
    case ended ERROR ('Strings must be encoded before hashing') before judging the
    server. Hand the case the bytes on the wire, as Autobahn's Python 2 original had them;
    the case's own checks (type, length, SHA-1 of the payload) are unchanged."""
    from kosoku._caseindex import initialize_shims

    initialize_shims()
    import case12_x_x  # type: ignore[import-not-found]  # kosoku's vendored cases

    for cls in case12_x_x.Case12_X_X + case12_x_x.Case13_X_X:
        original = cls.onMessage
        if getattr(original, "tidings_patched", False):
            continue

        def on_message(self: Any, msg: Any, binary: bool, _original: Any = original) -> None:
            if isinstance(msg, str):
                msg = msg.encode("latin-1" if binary else "utf-8")
            _original(self, msg, binary)

        on_message.tidings_patched = True  # type: ignore[attr-defined]
        cls.onMessage = on_message


# Section: (cases, settings). Section 9 sends messages up to 16 MiB, so it runs with the
# limits raised, as the issue asks for 12-13.
BIG = {"max_message_bytes": 16 * 2**20, "outbox_max_bytes": 64 * 2**20}
SECTIONS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "1-7,10": ([f"{n}.*" for n in (1, 2, 3, 4, 5, 6, 7, 10)], {}),
    "9": (["9.*"], BIG),
    "12-13": (["12.*", "13.*"], {**BIG, "compression": True}),
}
# `make conformance` sets this: every section, not only the one `make test` runs.
FULL = os.environ.get("TIDINGS_CONFORMANCE") == "full"


@pytest.fixture(params=["aiohttp", "lean"])
def make_server(make_server: ServerFactory, request: pytest.FixtureRequest) -> ServerFactory:
    """Every test here runs once per WebSocket engine."""
    engine = request.param

    async def factory(**overrides: Any) -> Harness:
        return await make_server(ws_engine=engine, **overrides)

    return factory


# And on the lean engine only (websockets' sans-I/O protocol frames it).
ALLOWED_LEAN: dict[str, str] = {
    "7.1.5": "a close frame between the fragments of a message: websockets fails the "
    "connection with 1002 ('incomplete fragmented message', a deliberate check in "
    "websockets.protocol) where Autobahn wants 1000; the connection closes either way",
}


def allowed(case_id: str, engine: str) -> bool:
    patterns = {**ALLOWED, **ALLOWED_LEAN} if engine == "lean" else ALLOWED
    return any(fnmatch.fnmatchcase(case_id, pattern) for pattern in patterns)


@pytest.mark.parametrize(
    "section",
    [
        pytest.param(
            name,
            # 12-13 sends 1,000 compressed messages in each of 216 cases (minutes).
            marks=(pytest.mark.timeout(900),)
            if name == "1-7,10" or FULL
            else pytest.mark.skip(reason="make conformance runs it"),
        )
        for name in SECTIONS
    ],
)
# kosoku's vendored case files (12.x) open their test data without closing it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_autobahn(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, section: str
) -> None:
    """The Autobahn cases against the real reader, limits and writer with an echo in place
    of the session: nothing FAILED outside the allow-list."""
    cases, settings = SECTIONS[section]
    _patch_compression_cases()
    h = await make_server(**settings)
    h.server.endpoint.echo = True
    try:
        results = await run_fuzzingclient(h.ws_url, cases=cases, concurrency=2)
    except FailureError as exc:
        results = exc.results
    counts: Counter[tuple[str, str]] = Counter()
    failed = []
    for r in results:
        verdict = r.behavior.value if r.behavior.value != "OK" else r.behavior_close.value
        counts[(r.case_id.split(".")[0], verdict)] += 1
        if not r.passed and not allowed(r.case_id, h.server.settings.ws_engine):
            failed.append((r.case_id, r.behavior.value, r.behavior_close.value, r.result))
    for (sec, verdict), n in sorted(counts.items(), key=lambda x: (int(x[0][0]), x[0][1])):
        print(f"autobahn section {sec}: {verdict} {n}")
    assert results
    assert not failed, failed
    h.server.endpoint.echo = False
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


# --- the checks one by one, on the real (session) transport ----------------------------


async def open_raw(
    h: Harness, headers: str = "", version: str = "13"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A hand-made handshake: the reader, the writer and the response head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws?token={token('raw')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n{headers}\r\n"
        ).encode()
    )
    async with asyncio.timeout(TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """A client frame (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    head = bytes((first,))
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes((bit | n,))
    elif n < 65536:
        head += bytes((bit | 126,)) + struct.pack("!H", n)
    else:
        head += bytes((bit | 127,)) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def close_code_of(reader: asyncio.StreamReader) -> int:
    """Read server frames until the close frame; its code."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            first, second = await reader.readexactly(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await reader.readexactly(8))[0]
            payload = await reader.readexactly(n)
            if first & 0x0F == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])


@pytest.mark.parametrize(
    ("name", "frames", "code"),
    [
        ("unmasked", [frame(0x1, b'{"type":"ping"}', mask=False)], 1002),
        ("invalid-utf8", [frame(0x1, b'{"type":"ping","x":"\xff"}')], 1007),
        ("reserved-close-1006", [frame(0x8, struct.pack("!H", 1006))], 1002),
        ("close-5000", [frame(0x8, struct.pack("!H", 5000))], 1002),
        (
            "200000-continuations",
            [frame(0x1, b"[", fin=False)] + [frame(0x0, b"", fin=False)] * 200_000,
            1009,
        ),
        ("normal-close", [frame(0x8, struct.pack("!H", 1000))], 1000),
    ],
)
async def test_frame_violations_get_their_close_code(
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
    name: str,
    frames: list[bytes],
    code: int,
) -> None:
    """Each RFC 6455 violation is answered with its close code (a normal close with 1000)."""
    reader, writer, head = await open_raw(harness)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert (await recv_raw_text(reader))["type"] == "welcome"
    try:
        with rss_within(32):  # 200,000 frames cost no memory: they are counted, not kept
            writer.writelines(frames)
            assert await close_code_of(reader) == code, name
    finally:
        writer.close()
    await assert_still_serving(harness)
    assert_no_error_logged(caplog)


async def recv_raw_text(reader: asyncio.StreamReader) -> dict[str, Any]:
    import json

    async with asyncio.timeout(TIMEOUT):
        first, second = await reader.readexactly(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
        payload = await reader.readexactly(n)
    assert first == 0x81
    message = json.loads(payload)
    assert isinstance(message, dict)
    return message


async def test_version_8_gets_426(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """A handshake for the drafts' version 8 is refused 426 naming version 13."""
    _, writer, head = await open_raw(harness, version="8")
    writer.close()
    assert head.startswith(b"HTTP/1.1 426"), head
    assert b"Sec-WebSocket-Version: 13" in head
    await assert_still_serving(harness)
    assert_no_error_logged(caplog)


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits=99",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; unknown_parameter",
    ],
)
async def test_bad_deflate_offers_are_declined(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, offer: str
) -> None:
    """A malformed permessage-deflate offer opens without compression (RFC 7692 7.1)."""
    h = await make_server(compression=True)
    _, writer, head = await open_raw(h, f"Sec-WebSocket-Extensions: {offer}\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"sec-websocket-extensions" not in head.lower()
    _, writer, head = await open_raw(h, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    writer.close()
    assert b"permessage-deflate" in head  # a good offer still negotiates
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_exactly_max_message_bytes_is_accepted(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, compression: str | None
) -> None:
    """A message of exactly max_message_bytes is accepted, compressed or not; one byte
    more is closed 1009 either way."""
    limit = 4096
    h = await make_server(compression=True, max_message_bytes=limit)

    def ping(size: int) -> str:
        head = '{"type":"ping","id":"p","pad":"'
        return head + "x" * (size - len(head) - 2) + '"}'

    async with h.client("max", compression=compression) as ws:
        await ws.send(ping(limit))
        assert (await recv(ws))["type"] == "pong"
        await ws.send(ping(limit + 1))
        assert (await closed_with(ws))[0] == 1009
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


async def test_invalid_utf8_text_closes_1007_with_a_real_client(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A text frame that is not UTF-8 closes 1007; binary JSON is still served."""
    async with harness.client("bytes") as ws:
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        await ws.send(b'{"type":"ping","id":"b"}')  # binary frames carry JSON too
        assert (await recv(ws))["type"] == "pong"
        await ws.send(b'{"type":"ping","x":"\xc3\x28"}', text=True)
        assert (await closed_with(ws))[0] == 1007
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    await assert_still_serving(harness)
    assert_no_error_logged(caplog)
