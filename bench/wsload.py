"""Cheap client side of the benchmark: raw-asyncio WebSocket subscribers and a
minimal keep-alive HTTP/1.1 publisher.

Why hand-rolled instead of `websockets`/`aiohttp`: the load generator gets a
single core, and it must receive every frame the server sends. A full client
library costs several times more per frame than the server work we are trying
to measure, so the generator would saturate first and the numbers would
describe the client. Here a received frame costs one header decode and one
`bytes.find`; JSON is only parsed during connection setup and, for latency
runs, a regex pulls the send timestamp out of the payload.

Assumptions, valid for both servers under test: server->client frames are
unmasked and not fragmented (neither `ws` nor aiohttp fragments outgoing
messages), and no extensions (permessage-deflate) are negotiated, because the
handshake does not offer any.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import socket
import struct
import sys
import time
from typing import Any, Final

# Publications carry this `type`. Counting is "text frame whose payload
# contains MARK", so the string must not occur in channel names, welcome,
# subscribed or pong messages ("bench" alone would match the channel name
# echoed in the `subscribed` reply).
PUB_TYPE: Final = "benchmsg"
MARK: Final = PUB_TYPE.encode()

# The publisher puts its perf_counter_ns() into data.t0; tolerate a space
# after the colon in case a server re-serialises with json.dumps defaults.
_T0_RE: Final = re.compile(rb'"t0":\s*(\d+)')

_WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Connection states. READY is the only hot one.
_HANDSHAKE: Final = 0
_WAIT_FIRST: Final = 1
_WAIT_SUBSCRIBED: Final = 2
_READY: Final = 3
_CLOSED: Final = 4


class Tally:
    """State shared by every subscriber of one benchmark run.

    `delivered` is bumped once per `data_received` call (not per frame) and
    waiters are only examined when it crosses `wake_at`, so the hot path pays
    one integer comparison for the pacing machinery.
    """

    __slots__ = ("delivered", "wake_at", "_waiters", "latencies_ns", "unexpected_closes")

    def __init__(self) -> None:
        self.delivered = 0
        self.wake_at = sys.maxsize
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []
        # When not None, every delivery appends (receive_ns - t0_ns).
        self.latencies_ns: list[int] | None = None
        self.unexpected_closes = 0

    def _wake(self) -> None:
        # Resolve with the time the threshold was crossed, so broadcast timing
        # is not inflated by the event loop's scheduling of the waiter.
        now = time.perf_counter_ns()
        keep: list[tuple[int, asyncio.Future[int]]] = []
        for threshold, fut in self._waiters:
            if self.delivered >= threshold:
                if not fut.done():
                    fut.set_result(now)
            else:
                keep.append((threshold, fut))
        self._waiters = keep
        self.wake_at = min((t for t, _ in keep), default=sys.maxsize)

    async def wait_for(self, threshold: int, timeout: float) -> int:
        """Wait until `delivered >= threshold`; return the perf_counter_ns at
        which that happened. Raises TimeoutError."""
        if self.delivered >= threshold:
            return time.perf_counter_ns()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append((threshold, fut))
        self.wake_at = min(self.wake_at, threshold)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            if not fut.done():
                fut.cancel()
            self._waiters = [(t, f) for t, f in self._waiters if f is not fut]
            self.wake_at = min((t for t, _ in self._waiters), default=sys.maxsize)


def client_frame(opcode: int, payload: bytes) -> bytes:
    """Build one masked client->server frame (RFC 6455 requires the mask)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    if n:
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        payload = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
    return head + mask + payload


# One receive buffer shared by every subscriber. asyncio calls get_buffer(),
# recv_into() and buffer_updated() back to back without yielding, so nothing
# can interleave; a partial frame is copied into the connection's own `buf`.
# This replaces the default Protocol path, where every recv() allocates a
# 256 KiB bytes object and shrinks it: that malloc/trim churn showed up as
# 10+ µs of kernel time per received frame on this VM.
_RXBUF_SIZE: Final = 256 * 1024
_RXBUF: Final = bytearray(_RXBUF_SIZE)
_RXVIEW: Final = memoryview(_RXBUF)


class WsSubscriber(asyncio.BufferedProtocol):
    """One subscriber connection: handshake, wait for the server's first
    message, subscribe, then count publications."""

    __slots__ = (
        "tally",
        "request",
        "accept",
        "state",
        "buf",
        "transport",
        "first_msg",
        "subscribed_msg",
        "_first",
        "_subscribed",
        "_closing",
    )

    def __init__(self, tally: Tally, host: str, port: int, path: str) -> None:
        self.tally = tally
        key = base64.b64encode(os.urandom(16))
        self.accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        self.request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n"
        ).encode()
        self.state = _HANDSHAKE
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.first_msg: dict[str, Any] | None = None
        self.subscribed_msg: dict[str, Any] | None = None
        loop = asyncio.get_running_loop()
        self._first: asyncio.Future[None] = loop.create_future()
        self._subscribed: asyncio.Future[None] = loop.create_future()
        self._closing = False

    # -- setup ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Tiny client frames (subscribe, pong) must not wait for Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self.request)

    async def setup(self, channel: str) -> None:
        """Wait for the server's first text frame (tidings: `welcome`, guide:
        `connected`), subscribe, and wait for the `subscribed` reply."""
        await self._first
        msg = json.dumps({"type": "subscribe", "channel": channel}).encode()
        assert self.transport is not None
        self.transport.write(client_frame(0x1, msg))
        await self._subscribed

    def _fail(self, why: str) -> None:
        exc = ConnectionError(why)
        for fut in (self._first, self._subscribed):
            if not fut.done():
                fut.set_exception(exc)
                # Mark retrieved: a failed connection may only ever be awaited
                # on one of the two futures.
                fut.exception()
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == _READY and not self._closing:
            self.tally.unexpected_closes += 1
        if self.state != _READY:
            self._fail(f"connection lost during setup (state {self.state}): {exc!r}")
        self.state = _CLOSED

    # -- receive ---------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RXVIEW

    def buffer_updated(self, nbytes: int) -> None:
        if self.buf:
            self.data_received(self.buf + _RXBUF[:nbytes])
            return
        if self.state != _READY:
            self._slow(bytes(_RXBUF[:nbytes]))
            return
        self._frames(_RXBUF, nbytes)

    def data_received(self, data: bytes | bytearray) -> None:
        """Process bytes that are not (or no longer) in the shared buffer."""
        self.buf = b""
        if self.state != _READY:
            self._slow(bytes(data))
        else:
            self._frames(data, len(data))

    def _frames(self, data: bytes | bytearray, n: int) -> None:
        # Hot path: walk frame headers, count publications.
        pos = 0
        hits = 0
        tally = self.tally
        lat = tally.latencies_ns
        now = time.perf_counter_ns() if lat is not None else 0
        while n - pos >= 2:
            b1 = data[pos + 1]
            ln = b1 & 0x7F
            if ln < 126:
                hl = 2
            elif ln == 126:
                if n - pos < 4:
                    break
                ln = (data[pos + 2] << 8) | data[pos + 3]
                hl = 4
            else:
                if n - pos < 10:
                    break
                ln = int.from_bytes(data[pos + 2 : pos + 10], "big")
                hl = 10
            end = pos + hl + ln
            if end > n:
                break
            op = data[pos] & 0x0F
            if op <= 1:  # text or continuation
                if data.find(MARK, pos + hl, end) >= 0:
                    hits += 1
                    if lat is not None:
                        m = _T0_RE.search(data, pos + hl, end)
                        if m is not None:
                            lat.append(now - int(m.group(1)))
            elif op >= 8:
                self._control(op, bytes(data[pos + hl : end]))
            pos = end
        if pos < n:
            # Partial frame: keep a private copy (the shared buffer is reused).
            self.buf = bytes(data[pos:n])
        if hits:
            tally.delivered += hits
            if tally.delivered >= tally.wake_at:
                tally._wake()

    def _control(self, op: int, payload: bytes) -> None:
        if op == 0x9:  # ping -> pong with the same payload (keeps heartbeats happy)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(client_frame(0xA, payload))
        elif op == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            reason = payload[2:].decode("utf-8", "replace")
            if self.state != _READY:
                self._fail(f"server closed during setup: code={code} reason={reason!r}")
            elif self.transport is not None:
                self.transport.abort()

    def _slow(self, data: bytes) -> None:
        if self.state == _HANDSHAKE:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > 65536:
                    self._fail("oversized handshake response")
                else:
                    self.buf = data
                return
            head, data = data[:end], data[end + 4 :]
            status = head.split(b"\r\n", 1)[0]
            if not status.startswith(b"HTTP/1.1 101"):
                self._fail(f"upgrade refused: {status.decode('latin-1')} {data[:200]!r}")
                return
            accept = b""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-accept":
                    accept = value.strip()
            if accept != self.accept:
                self._fail("bad Sec-WebSocket-Accept")
                return
            self.state = _WAIT_FIRST
        # Setup-phase frames: few, so parse them fully.
        pos = 0
        n = len(data)
        while self.state in (_WAIT_FIRST, _WAIT_SUBSCRIBED) and n - pos >= 2:
            b1 = data[pos + 1]
            ln = b1 & 0x7F
            hl = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = struct.unpack("!H", data[pos + 2 : pos + 4])[0]
                hl = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = struct.unpack("!Q", data[pos + 2 : pos + 10])[0]
                hl = 10
            end = pos + hl + ln
            if end > n:
                break
            op = data[pos] & 0x0F
            payload = data[pos + hl : end]
            pos = end
            if op >= 8:
                self._control(op, payload)
                continue
            if op != 1:
                continue
            try:
                msg = json.loads(payload)
            except ValueError:
                self._fail(f"non-JSON text frame during setup: {payload[:200]!r}")
                return
            if not isinstance(msg, dict):
                continue
            if self.state == _WAIT_FIRST:
                self.first_msg = msg
                self.state = _WAIT_SUBSCRIBED
                self._first.set_result(None)
            elif msg.get("type") == "subscribed":
                self.subscribed_msg = msg
                self.state = _READY
                self._subscribed.set_result(None)
            elif msg.get("type") == "error":
                self._fail(f"subscribe answered with error: {payload[:300]!r}")
                return
        rest = data[pos:]
        if self.state == _READY:
            if rest:
                self.data_received(rest)
        elif self.state != _CLOSED:
            self.buf = rest


async def open_subscriber(
    tally: Tally, host: str, port: int, path: str, channel: str, timeout: float
) -> WsSubscriber:
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(
        loop.create_connection(lambda: WsSubscriber(tally, host, port, path), host, port),
        timeout,
    )
    try:
        await asyncio.wait_for(proto.setup(channel), timeout)
    except BaseException:
        proto.close()
        raise
    return proto


class HttpConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight.

    Hand-written because aiohttp's client costs ~100 µs of client CPU per
    request, and fanout-100ch needs thousands of publishes per second from
    the same core that receives every frame.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"HTTP connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._try_complete()

    def _try_complete(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        body_start = end + 4
        if "content-length" in headers:
            blen = int(headers["content-length"])
            if len(self.buf) < body_start + blen:
                return
            body = self.buf[body_start : body_start + blen]
            self.buf = self.buf[body_start + blen :]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parsed = _parse_chunked(self.buf, body_start)
            if parsed is None:
                return
            body, consumed = parsed
            self.buf = self.buf[consumed:]
        else:
            # No framing: body ends at connection close (rare; not keep-alive).
            if not self.closed:
                return
            body = self.buf[body_start:]
            self.buf = b""
        if headers.get("connection", "").lower() == "close" and self.transport is not None:
            self.closed = True
            self.transport.close()
        self.waiter.set_result((status, body))

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        try:
            return await asyncio.wait_for(self.waiter, timeout)
        finally:
            self.waiter = None


def _parse_chunked(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n", pos)  # no trailers expected
            if end < 0:
                return None
            return bytes(out), end + 2
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2


class Publisher:
    """A small pool of HttpConn to POST /api/publish."""

    def __init__(self, host: str, port: int, api_key: str | None, size: int) -> None:
        self.host = host
        self.port = port
        self.size = size
        self._auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self._idle: asyncio.Queue[HttpConn] = asyncio.Queue()
        self._all: list[HttpConn] = []

    async def _connect(self) -> HttpConn:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(HttpConn, self.host, self.port)
        self._all.append(proto)
        return proto

    async def start(self) -> None:
        for _ in range(self.size):
            self._idle.put_nowait(await self._connect())

    def encode(self, channel: str, data: dict[str, Any]) -> bytes:
        body = json.dumps(
            {"channel": channel, "type": PUB_TYPE, "data": data}, separators=(",", ":")
        ).encode()
        return (
            f"POST /api/publish HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def publish(
        self, channel: str, data: dict[str, Any], timeout: float = 30.0, stamp: bool = False
    ) -> int:
        """POST one publication; return the server's `delivered` count.

        With stamp=True, data["t0"] is set to perf_counter_ns() after a
        connection has been obtained, i.e. as close to the write as possible.
        """
        conn = await self._idle.get()
        try:
            if conn.closed:
                # Server closed the idle keep-alive connection; reconnect.
                conn = await self._connect()
            if stamp:
                data["t0"] = time.perf_counter_ns()
            status, body = await conn.request(self.encode(channel, data), timeout)
        finally:
            self._idle.put_nowait(conn)
        if status != 200:
            raise RuntimeError(f"publish -> HTTP {status}: {body[:300]!r}")
        try:
            return int(json.loads(body)["delivered"])
        except (ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"publish response without delivered count: {body[:300]!r}") from e

    def close(self) -> None:
        for c in self._all:
            if c.transport is not None:
                c.transport.abort()
