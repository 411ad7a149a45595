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
from typing import Any, Final, cast

# Publications carry this `type`. Counting is "text frame whose payload
# contains MARK", so the string must not occur in channel names, welcome,
# subscribed or pong messages ("bench" alone would match the channel name
# echoed in the `subscribed` reply).
PUB_TYPE: Final = "benchmsg"
MARK: Final = PUB_TYPE.encode()

# The publisher puts its time.time_ns() into data.t0; tolerate a space
# after the colon in case a server re-serialises with json.dumps defaults.
_T0_RE: Final = re.compile(rb'"t0":\s*(\d+)')
# An inbox push is {"id": <notification id>, "type": "notification", ..., "data":
# {..., "seq": N, ...}}: the first "id" is the notification's, the first "seq" its
# per-user sequence number.
_ID_SEQ_RE: Final = re.compile(rb'"id":\s*"([^"]+)".*?"seq":\s*(\d+)')

_WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Connection states. READY is the only hot one.
_HANDSHAKE: Final = 0
_WAIT_FIRST: Final = 1
_WAIT_SUBSCRIBED: Final = 2
_READY: Final = 3
_CLOSED: Final = 4


Arrival = tuple[int, bytes, int, int, int]


class Tally:
    """State shared by every subscriber of one benchmark run.

    `delivered` is bumped once per `data_received` call (not per frame) and
    waiters are only examined when it crosses `wake_at`, so the hot path pays
    one integer comparison for the pacing machinery.
    """

    __slots__ = (
        "_waiters",
        "app_latencies_ns",
        "arrivals",
        "delivered",
        "latencies_ns",
        "unexpected_closes",
        "wake_at",
    )

    def __init__(self) -> None:
        self.delivered = 0
        self.wake_at = sys.maxsize
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []
        # When not None, every delivery appends (receive_ns - t0_ns), with
        # t0 from the publisher's time.time_ns() and receive_ns the kernel's
        # receive timestamp (CLOCK_REALTIME); app_latencies_ns gets the same
        # with receive_ns taken when this process parsed the frame.
        self.latencies_ns: list[int] | None = None
        self.app_latencies_ns: list[int] | None = None
        # When not None (inbox scenarios), every delivery appends (socket fd,
        # notification id, seq, kernel receive ns, parse ns); the caller joins
        # the ids with the create requests' send times afterwards.
        self.arrivals: list[Arrival] | None = None
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

    async def reach(self, threshold: int) -> int:
        """Wait until `delivered >= threshold`; return the perf_counter_ns at
        which that happened. Callers bound it with asyncio.timeout()."""
        if self.delivered >= threshold:
            return time.perf_counter_ns()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append((threshold, fut))
        self.wake_at = min(self.wake_at, threshold)
        try:
            return await fut
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


# One receive buffer shared by every subscriber: a readable callback reads
# into it and parses it before returning, so nothing can interleave; a
# partial frame is copied into the connection's own `buf`. (A fresh bytes
# object per recv, as asyncio's Protocol path does with a 256 KiB max_size,
# showed up as extra kernel time per frame on this VM.)
_RXBUF_SIZE: Final = 256 * 1024
_RXBUF: Final = bytearray(_RXBUF_SIZE)
_RXVIEW: Final = memoryview(_RXBUF)
_CMSG_SPACE: Final = socket.CMSG_SPACE(16)  # one struct timespec
_SO_TIMESTAMPNS: Final = getattr(socket, "SO_TIMESTAMPNS", 35)


class WsSubscriber:
    """One subscriber connection on a raw non-blocking socket.

    Not an asyncio Protocol/transport on purpose: a reader callback registered
    with loop.add_reader() skips the transport layer (cheaper per frame), and
    it can use recvmsg() to get the kernel's receive timestamp
    (SO_TIMESTAMPNS). Latency is then "publish -> bytes arrived in this
    socket", which does not include the load generator's own queueing.
    """

    __slots__ = (
        "_closing",
        "_first",
        "_subscribed",
        "accept",
        "auto_ready",
        "buf",
        "fd",
        "first_msg",
        "loop",
        "request",
        "sock",
        "state",
        "subscribed_msg",
        "tally",
    )

    def __init__(
        self,
        tally: Tally,
        sock: socket.socket,
        host: str,
        port: int,
        path: str,
        subscribe: bool = True,
    ) -> None:
        self.tally = tally
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = asyncio.get_running_loop()
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
        self.first_msg: dict[str, Any] | None = None
        self.subscribed_msg: dict[str, Any] | None = None
        self._first: asyncio.Future[None] = self.loop.create_future()
        self._subscribed: asyncio.Future[None] = self.loop.create_future()
        self._closing = False
        # No channel to subscribe to (inbox scenarios): ready after the first frame.
        self.auto_ready = not subscribe

    # -- setup ---------------------------------------------------------------

    def start(self) -> None:
        self.loop.add_reader(self.fd, self._on_readable)
        self._send(self.request)

    async def setup(self, channel: str | None) -> None:
        """Wait for the server's first text frame (tidings: `welcome`, guide:
        `connected`), subscribe, and wait for the `subscribed` reply. With no
        channel (the subscriber was built with subscribe=False), the first frame
        is all there is to wait for."""
        await self._first
        if channel is None:
            return
        self._send(client_frame(0x1, self._subscribe_message(channel)))
        await self._subscribed

    def _subscribe_message(self, channel: str) -> bytes:
        return json.dumps({"type": "subscribe", "channel": channel}).encode()

    def _setup_message(self, payload: bytes) -> Any:
        """A setup-phase text frame as a tidings message (None: not one, skip it)."""
        return json.loads(payload)

    def _send(self, data: bytes) -> None:
        # Everything the client sends is tiny (handshake, subscribe, pong)
        # and the socket's send buffer is empty, so one send() suffices.
        try:
            sent = self.sock.send(data)
        except OSError as e:
            self._lost(e)
            return
        if sent != len(data):
            self._fail(f"short send ({sent}/{len(data)} bytes)")

    def _fail(self, why: str) -> None:
        exc = ConnectionError(why)
        for fut in (self._first, self._subscribed):
            if not fut.done():
                fut.set_exception(exc)
                # Mark retrieved: a failed connection may only ever be awaited
                # on one of the two futures.
                fut.exception()
        self._teardown()

    def _teardown(self) -> None:
        if self.state != _CLOSED:
            self.state = _CLOSED
            self.loop.remove_reader(self.fd)
            self.sock.close()

    def close(self) -> None:
        self._closing = True
        self._teardown()

    def _lost(self, exc: Exception | None) -> None:
        if self.state == _READY and not self._closing:
            self.tally.unexpected_closes += 1
            self._teardown()
        elif self.state != _CLOSED:
            self._fail(f"connection lost during setup (state {self.state}): {exc!r}")

    # -- receive ---------------------------------------------------------------

    def _on_readable(self) -> None:
        tally = self.tally
        try:
            if tally.latencies_ns is None and tally.arrivals is None:
                n = self.sock.recv_into(_RXVIEW)
                kts = 0
            else:
                n, anc, _, _ = self.sock.recvmsg_into([_RXVIEW], _CMSG_SPACE)
                kts = 0
                for level, kind, cdata in anc:
                    if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", cdata[:16])
                        kts = sec * 1_000_000_000 + nsec
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        if n == 0:
            self._lost(None)
            return
        if self.buf:
            data: bytes | bytearray = self.buf + _RXBUF[:n]
            self.buf = b""
            n = len(data)
        else:
            data = _RXBUF
        if self.state != _READY:
            self._slow(bytes(data[:n]))
        else:
            self._frames(data, n, kts)

    def _frames(self, data: bytes | bytearray, n: int, kts: int) -> None:
        # Hot path: walk frame headers, count publications.
        pos = 0
        hits = 0
        tally = self.tally
        lat = tally.latencies_ns
        arr = tally.arrivals
        now = time.time_ns() if lat is not None or arr is not None else 0
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
                            t0 = int(m.group(1))
                            lat.append((kts or now) - t0)
                            assert tally.app_latencies_ns is not None
                            tally.app_latencies_ns.append(now - t0)
                    if arr is not None:
                        m = _ID_SEQ_RE.search(data, pos + hl, end)
                        if m is not None:
                            arr.append((self.fd, m.group(1), int(m.group(2)), kts or now, now))
                elif ln == 1 and data[pos + hl] == 0x32 and isinstance(self, SioSubscriber):
                    self._send(client_frame(0x1, b"3"))  # an Engine.IO ping: pong
            elif op >= 8:
                self._control(op, bytes(data[pos + hl : end]))
            pos = end
        if pos < n and self.state == _READY:
            # Partial frame: keep a private copy (the shared buffer is reused).
            self.buf = bytes(data[pos:n])
        if hits:
            tally.delivered += hits
            if tally.delivered >= tally.wake_at:
                tally._wake()

    def _control(self, op: int, payload: bytes) -> None:
        if op == 0x9:  # ping -> pong with the same payload (keeps heartbeats happy)
            if self.state != _CLOSED:
                self._send(client_frame(0xA, payload))
        elif op == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            reason = payload[2:].decode("utf-8", "replace")
            if self.state != _READY:
                self._fail(f"server closed during setup: code={code} reason={reason!r}")
            else:
                self._lost(ConnectionError(f"server closed: code={code} reason={reason!r}"))

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
                msg = self._setup_message(payload)
            except ValueError:
                self._fail(f"non-JSON text frame during setup: {payload[:200]!r}")
                return
            if not isinstance(msg, dict):
                continue
            if self.state == _WAIT_FIRST:
                self.first_msg = msg
                self.state = _READY if self.auto_ready else _WAIT_SUBSCRIBED
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
                self._frames(rest, len(rest), 0)
        elif self.state != _CLOSED:
            self.buf = rest


class SioSubscriber(WsSubscriber):
    """A Socket.IO v4 client over the WebSocket transport alone (tidings' /socket.io/):
    the same raw socket, with Engine.IO/Socket.IO framing. Its token is in the URL, so
    it opens the default namespace with a bare ``40``; publications arrive as
    ``42["benchmsg",{...}]`` frames, which the same MARK search counts, and the server's
    Engine.IO pings (``2``) are answered (``3``) on the hot path too."""

    __slots__ = ()

    def _subscribe_message(self, channel: str) -> bytes:
        return b"42" + json.dumps(["subscribe", channel]).encode()

    def _setup_message(self, payload: bytes) -> Any:
        if payload.startswith(b"0{"):  # Engine.IO open: connect the default namespace
            self._send(client_frame(0x1, b"40"))
            return None
        if payload == b"2":
            self._send(client_frame(0x1, b"3"))
            return None
        if payload.startswith(b"44"):  # CONNECT_ERROR: the token was refused
            raise ValueError(f"Socket.IO connect refused: {payload[:200]!r}")
        if not payload.startswith(b"42["):
            return None  # the namespace's CONNECT answer
        event = json.loads(payload[2:])
        return {"type": event[0], "data": event[1] if len(event) > 1 else None}


async def open_subscriber(
    tally: Tally,
    host: str,
    port: int,
    path: str,
    channel: str | None,
    kind: type[WsSubscriber] | None = None,
) -> WsSubscriber:
    """Connect, upgrade, subscribe (channel None: no subscription, ready once
    the first frame has arrived). Callers bound it with asyncio.timeout()."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    # Tiny client frames (subscribe, pong) must not wait for Nagle.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Kernel receive timestamps, read only when latencies are recorded.
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    try:
        await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    sub = (kind or WsSubscriber)(tally, sock, host, port, path, subscribe=channel is not None)
    sub.start()
    try:
        await sub.setup(channel)
    except BaseException:
        sub.close()
        raise
    return sub


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
        # cast, not isinstance: uvloop's transports are not asyncio.Transport
        # subclasses.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # The request must not wait for Nagle (both loops set this too,
            # but it is the whole point of a latency benchmark's publisher).
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

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        try:
            return await self.waiter
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
    """A small pool of HttpConn to POST /api/publish (or, with post(), any
    JSON route)."""

    # A publish answered later than this means the server is wedged.
    request_timeout_s = 30.0

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

    async def publish(self, channel: str, data: dict[str, Any], stamp: bool = False) -> int:
        """POST one publication; return the server's `delivered` count.

        With stamp=True, data["t0"] is set to time.time_ns() (CLOCK_REALTIME,
        the clock of kernel receive timestamps) after a connection has been
        obtained, i.e. as close to the write as possible.
        """
        conn = await self._idle.get()
        try:
            if conn.closed:
                # Server closed the idle keep-alive connection; reconnect.
                conn = await self._connect()
            if stamp:
                data["t0"] = time.time_ns()
            async with asyncio.timeout(self.request_timeout_s):
                status, body = await conn.request(self.encode(channel, data))
        finally:
            self._idle.put_nowait(conn)
        if status != 200:
            raise RuntimeError(f"publish -> HTTP {status}: {body[:300]!r}")
        try:
            return int(json.loads(body)["delivered"])
        except (ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"publish response without delivered count: {body[:300]!r}") from e

    async def post(self, path: str, body: bytes) -> tuple[int, bytes, int]:
        """POST a JSON body on an idle connection of the pool; return (status,
        response body, time.time_ns() taken just before the request was
        written). At most `size` requests are in flight at once."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        conn = await self._idle.get()
        try:
            if conn.closed:
                conn = await self._connect()
            t0 = time.time_ns()
            async with asyncio.timeout(self.request_timeout_s):
                status, resp = await conn.request(head + body)
        finally:
            self._idle.put_nowait(conn)
        return status, resp, t0

    def close(self) -> None:
        for c in self._all:
            if c.transport is not None:
                c.transport.abort()
