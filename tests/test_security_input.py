"""Hostile input: pathological JSON, malformed HTTP, bodies that never end. Each is answered
with its documented error, never an internal one, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings import protocol
from tidings.gateway.eventstream import client_frames
from tidings.protocol import MAX_JSON_DEPTH, ProtocolError, decode_command
from tidings.session import Close, Session

from .conftest import API_KEY, TIMEOUT, Harness, ServerFactory, recv, request, serve_process, token
from .security import assert_no_error_logged, assert_still_serving
from .test_session import Recorder, make, tok


def nested(depth: int, inner: bytes = b"1") -> bytes:
    """A JSON array nested ``depth`` deep."""
    return b"[" * depth + inner + b"]" * depth


def command_with(data: bytes, kind: str = "publish") -> bytes:
    return b'{"type":"' + kind.encode() + b'","channel":"c","data":' + data + b"}"


PATHOLOGICAL = [
    command_with(nested(1000)),  # RecursionError in msgspec before the depth check
    command_with(nested(100_000)),
    command_with(b'{"a":' * 900 + b"1" + b"}" * 900),
    command_with(nested(MAX_JSON_DEPTH + 1)),
    command_with(b"1" + b"0" * 5000),  # an integer of 5,000 digits
    command_with(b"1e99999"),
    command_with(b'"\xff\xfe"'),  # invalid UTF-8 inside a string
    command_with(b'"\\ud800"'),  # a lone surrogate escape
    b"\xef\xbb\xbf{}",  # a byte-order mark
    b"\x00" * 100,
    b"[" * 5000,  # never closed
]

# Any JSON document: what a client could send, nested a little or a lot.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
command_types = st.sampled_from([*protocol.COMMANDS, "PING", "Subscribe", "nope", ""])


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """A client frame: random bytes, random JSON, or a command with random fields."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return json.dumps(draw(json_values)).encode()
    if kind == 2:
        depth = draw(st.integers(0, 3 * MAX_JSON_DEPTH))
        return command_with(nested(depth), draw(command_types))
    body: dict[str, Any] = draw(st.dictionaries(st.text(max_size=12), json_values, max_size=5))
    body["type"] = draw(command_types)
    where = draw(st.sampled_from(["top", "data", "payload"]))
    if where != "top":
        body = {"type": body.pop("type"), where: body}
    return json.dumps(body).encode()


@pytest.mark.parametrize("frame", PATHOLOGICAL, ids=lambda f: repr(f[:40]))
def test_pathological_json_is_invalid_message(frame: bytes) -> None:
    """Deep nesting, huge numbers and bad encodings are INVALID_MESSAGE, never another error."""
    with pytest.raises(ProtocolError) as info:
        decode_command(frame)
    assert info.value.code is protocol.ErrorCode.INVALID_MESSAGE


def test_depth_limit_is_exact() -> None:
    """JSON exactly MAX_JSON_DEPTH deep decodes; one level more does not; strings don't count."""
    assert protocol.json_depth_exceeded(nested(MAX_JSON_DEPTH)) is False
    assert protocol.json_depth_exceeded(nested(MAX_JSON_DEPTH + 1)) is True
    brackets_in_string = b'["' + b"[{" * 1000 + b'\\"]"]'
    assert protocol.json_depth_exceeded(brackets_in_string) is False
    assert protocol.json_depth_exceeded(nested(MAX_JSON_DEPTH + 1).decode()) is True
    depth_minus_envelope = MAX_JSON_DEPTH - 1  # the command object is one level
    decode_command(command_with(nested(depth_minus_envelope)))


@settings(max_examples=400, deadline=None)
@given(frames())
def test_decoder_raises_only_protocol_errors(frame: bytes) -> None:
    """Whatever a client sends, decode_command returns a command or raises ProtocolError."""
    try:
        command = decode_command(frame)
    except ProtocolError as exc:
        assert exc.code is protocol.ErrorCode.INVALID_MESSAGE
    else:
        assert isinstance(command, protocol.Command)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=1, max_size=8), st.booleans())
def test_session_survives_any_frames(batch: list[bytes], authenticated: bool) -> None:
    """A session fed arbitrary frames, before or after auth, answers or closes with a
    documented code; nothing raises past it and no reply is an internal error."""
    node, clock = make(rate_limit_enabled=False)
    rec = Recorder()
    session = Session(node, "c1", rec)
    session.authenticate(tok(clock) if authenticated else None)
    for frame in batch:
        close = session.receive(frame)
        if close is not None:
            assert isinstance(close, Close)
            assert close.code in {c.value for c in protocol.CloseCode}
            assert close.code != protocol.CloseCode.INTERNAL_ERROR
            break
    # "internal error" is what an exception in a handler becomes (and it is logged at ERROR).
    errors = [m["data"]["message"] for m in rec.sent if m["type"] == "error"]
    assert "internal error" not in errors, rec.sent


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.builds(nested, st.integers(0, 5000)))
def test_sse_post_bodies_split_without_raising(body: bytes) -> None:
    """An SSE POST body of any bytes splits into frames without raising."""
    assert all(isinstance(frame, bytes) for frame in client_frames(body))


# --- over the real WebSocket ------------------------------------------------------------


@pytest.mark.parametrize(
    "frame", [f for f in PATHOLOGICAL if len(f) < 65536][:4], ids=lambda f: repr(f[:40])
)
async def test_websocket_pathological_json_before_and_after_auth(
    harness: Harness, caplog: pytest.LogCaptureFixture, frame: bytes
) -> None:
    """Before and after auth, pathological JSON gets INVALID_MESSAGE and the connection stays."""
    async with harness.connect() as ws:
        await ws.send(frame)
        error = await recv(ws)
        assert (error["type"], error["data"]["code"]) == ("error", "INVALID_MESSAGE")
        welcome = await request(ws, {"type": "auth", "token": token("mallory")})
        assert welcome["type"] == "welcome"
        await ws.send(frame)
        error = await recv(ws)
        assert (error["type"], error["data"]["code"]) == ("error", "INVALID_MESSAGE")
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
    await assert_still_serving(harness)
    assert_no_error_logged(caplog)


# --- over HTTP --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"channel":"c","data":' + nested(1000) + b"}", 400),
        (b'{"channel":"c","data":' + nested(MAX_JSON_DEPTH + 1) + b"}", 400),
        (b'{"channel":"c","data":1' + b"0" * 5000 + b"}", 422),
        (b'{"channel":"c","data":1e99999}', 422),
        (b'{"data":"\xff"}', 400),
        (b"\x00", 400),
    ],
    ids=["deep-1000", "deep-65", "5000-digits", "1e99999", "bad-utf8", "nul"],
)
async def test_http_pathological_json(
    harness: Harness, caplog: pytest.LogCaptureFixture, body: bytes, status: int
) -> None:
    """The API answers pathological JSON 400 or 422 with its JSON error, never 500."""
    for path in ("/api/publish", "/api/notifications"):
        got, answer = await harness.api("POST", path, raw=body)
        assert got == status, (path, answer)
        assert answer["error"]["code"] in ("BAD_REQUEST", "VALIDATION_ERROR")
    await assert_still_serving(harness)
    assert_no_error_logged(caplog)


async def exchange(port: int, data: bytes, *, drop: bool = False) -> bytes:
    """Send raw bytes on a new connection; the response's status line (b"" if dropped)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if drop:
            return b""
        async with asyncio.timeout(TIMEOUT):
            return (await reader.readline()).strip()
    finally:
        writer.close()


AUTH = f"Authorization: Bearer {API_KEY}\r\n".encode()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
            + b"\r\n",
            431,
        ),
        (b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-" + b"a" * 9000 + b": v\r\n\r\n", 431),
        (
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\n"
            + AUTH
            + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 400),  # TLS on HTTP
    ],
    ids=[
        "2000-headers",
        "8k-request-line",
        "9k-header",
        "9k-header-name",
        "bad-chunk",
        "tls-hello",
    ],
)
async def test_malformed_http_is_answered_and_logged_at_info(
    harness: Harness, caplog: pytest.LogCaptureFixture, data: bytes, status: int
) -> None:
    """A request aiohttp cannot parse gets 431 (headers too large or too many), 414 (request
    line too long) or 400, and one INFO line, no traceback at ERROR."""
    assert (await exchange(harness.server.port, data)).startswith(b"HTTP/1.")
    status_line = await exchange(harness.server.port, data)
    assert f" {status} ".encode() in status_line, status_line
    await assert_still_serving(harness)
    assert_no_error_logged(caplog)
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
    lines = [r for r in caplog.records if r.getMessage().startswith("bad request:")]
    assert all(r.levelno == logging.INFO and r.name == "tidings.http" for r in lines)
    if status != 400:  # (aiohttp logs TLS on the plain port at DEBUG itself)
        assert lines[-1].getMessage().endswith(f"({status})")


async def test_client_dropping_mid_body_is_not_an_error(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that disconnects halfway through its body is logged at INFO, not ERROR."""
    head = b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 100\r\n\r\n"
    for _ in range(3):
        await exchange(harness.server.port, head + b'{"chan', drop=True)
    await assert_still_serving(harness)  # by then the dropped requests were handled
    assert_no_error_logged(caplog)


async def test_trickled_body_gets_408(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked body sent a byte at a time is cut off with 408 at body_timeout."""
    h = await make_server(body_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)

    async def trickle() -> None:
        # The attacker's pace (one byte per chunk), not a synchronisation.
        for _ in range(100):
            writer.write(b"1\r\n \r\n")
            await asyncio.sleep(0.1)

    writer.write(
        b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n"
    )
    attacker = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(TIMEOUT):
            status_line = await reader.readline()
        assert b" 408 " in status_line, status_line
    finally:
        attacker.cancel()
        writer.close()
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


async def test_sse_post_trickled_body_gets_408(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The SSE POST route has the same body deadline (a user's own token is enough)."""
    h = await make_server(body_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
    writer.write(
        b"POST /sse/any-client HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {token('mallory')}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n"
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            status_line = await reader.readline()
        assert b" 408 " in status_line, status_line
    finally:
        writer.close()
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


async def test_json_log_format_holds_under_malformed_requests(tmp_path: Any) -> None:
    """With log_format = json, every line a malformed request causes is one JSON object."""
    log = tmp_path / "serve.log"
    async with serve_process("--log-format", "json", log=log) as (_, port):
        await exchange(port, b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\n\r\n")
        await exchange(port, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n")
        head = b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 9\r\n\r\n"
        await exchange(port, head + b"{", drop=True)
        # One more full request: by its answer, the ones before were handled and logged.
        assert b" 200 " in await exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    lines = log.read_text().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")], records
    assert any(r["message"].startswith("bad request: LineTooLong") for r in records)
