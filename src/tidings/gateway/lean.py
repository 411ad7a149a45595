"""The lean WebSocket engine (``ws_engine = "lean"``): the socket taken off aiohttp after
the upgrade, framed by websockets' sans-I/O ``ServerProtocol``.

aiohttp still parses the upgrade request and routes it, and tidings still answers the
version, origin and admission checks before any upgrade (``websocket.py``). Then, instead
of a ``WebSocketResponse`` (with its reader, writer, request, ``RequestHandler`` and
buffers, about 14 KiB per idle connection), the handler writes the 101 itself, hands the
asyncio transport to a ``LeanLink`` and returns; aiohttp forgets the connection
(``handover.py``). What
stays per connection is the ``LeanLink`` (slots only) and its ``ServerProtocol``.

websockets does the RFC 6455 / 7692 work: the handshake answer, masks, opcodes, RSV bits,
control frames, close codes (1002 for one a client must not send), the size limit on the
decompressed message (1009, a message of exactly ``max_message_bytes`` passes),
permessage-deflate negotiation and decoding (a malformed offer is declined). tidings adds
what is per message and not websockets' job at the sans-I/O level: assembling fragments,
a fragment cap (1009), UTF-8 of a whole text message (1007).

Outgoing messages never go through websockets: as on the aiohttp engine, ``push`` writes a
frame built once per message (``frames.frame_text``, uncompressed, as RFC 7692 allows)
into the transport's buffer, which is the outbox. Control frames websockets produces
(pong, the close handshake) are flushed right after the bytes that caused them; both
write whole frames synchronously, so they never interleave.

Idle connections hold no task and no timer: one heartbeat sweep per engine walks the
links every half ``heartbeat_interval``. Work that must await (authentication, the
welcome and catch-up of a connection opened by an ``auth`` message, a JWKS fetch) runs
in a task with the socket's reading paused, so the client's next frames wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any, Final, cast

from websockets.exceptions import InvalidState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from ..hub import Outbound
from ..protocol import CloseCode
from ..session import Close
from .connection import Connection, Gateway
from .frames import INVALID_TEXT, frame_close, frame_text

log = logging.getLogger("tidings.transport")
# websockets logs every open and close at INFO; tidings logs its own line per connection.
_frames_log = logging.getLogger("tidings.transport.frames")
_frames_log.setLevel(logging.WARNING)

ABNORMAL: Final = 1006
PING: Final = b"\x89\x00"  # an empty, unmasked ping frame
# How long a close frame may wait for the client's answer (or behind a slow consumer's
# backlog) before the socket is aborted outright.
CLOSE_GRACE: Final = 5.0
_DATA: Final = (Opcode.TEXT, Opcode.BINARY)
INTERNAL: Final = Close(CloseCode.INTERNAL_ERROR, "internal server error")


class LeanEngine:
    """What the links of one endpoint share: the gateway, the limits and the heartbeat.

    Args:
        gateway: the connections' gateway.
        max_fragments: frames one message may be split into; more is closed 1009.
    """

    def __init__(self, gateway: Gateway, max_fragments: int) -> None:
        self.gateway = gateway
        s = gateway.node.settings
        self.max_message_bytes = s.max_message_bytes
        self.outbox_max_bytes = s.outbox_max_bytes
        self.compression = s.compression
        self.max_fragments = max_fragments
        self.heartbeat = s.heartbeat_interval
        self.links: set[LeanLink] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._empty: asyncio.Event | None = None  # set when the last link is gone

    def protocol(self, deflate: bool) -> ServerProtocol:
        """A sans-I/O server connection with tidings' limits; ``deflate`` offers
        permessage-deflate (the server never compresses: it says
        server_no_context_takeover, so no compressor is kept per connection)."""
        extensions = (
            [ServerPerMessageDeflateFactory(server_no_context_takeover=True)] if deflate else None
        )
        return ServerProtocol(
            extensions=extensions,
            state=State.OPEN,  # the handshake is answered by ``handshake``
            max_size=self.max_message_bytes,
            logger=_frames_log,
        )

    def add(self, link: LeanLink) -> None:
        self.links.add(link)
        if self.heartbeat and self._sweep is None:
            self._arm()

    def discard(self, link: LeanLink) -> None:
        self.links.discard(link)
        if not self.links and self._empty is not None:
            self._empty.set()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweep = loop.call_later(self.heartbeat / 2, self._beat)

    def _beat(self) -> None:
        """Every half interval: a link silent for a whole interval gets a ping; one
        silent for half an interval more (no pong) is dropped, as aiohttp's heartbeat."""
        self._sweep = None
        for link in list(self.links):
            link.beat()
        if self.links:
            self._arm()

    async def shutdown(self, limit: float) -> None:
        """After the gateway's shutdown has sent every connection its close: close what
        it does not know (echo links), wait up to ``limit`` seconds for the close handshakes,
        then abort the sockets left."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for link in list(self.links):
            link.close(Close(CloseCode.GOING_AWAY, "server shutting down"))
        if self.links:
            self._empty = asyncio.Event()
            try:
                async with asyncio.timeout(limit):
                    await self._empty.wait()
            except TimeoutError:
                pass
        for link in list(self.links):
            link.transport.abort()


class LeanLink(asyncio.Protocol):
    """One WebSocket off aiohttp: the asyncio protocol of its socket and its
    ``connection.Transport`` (the socket's write buffer is the outbox)."""

    __slots__ = (
        "close_code",
        "closing",
        "conn",
        "echo",
        "engine",
        "fragments",
        "idle",
        "parts",
        "queue",
        "reaper",
        "transport",
        "ws",
    )

    name: Final = "websocket"

    def __init__(
        self, engine: LeanEngine, ws: ServerProtocol, transport: asyncio.Transport
    ) -> None:
        self.engine = engine
        self.ws = ws
        self.transport = transport
        self.conn: Connection | None = None
        self.echo = False
        self.closing = False
        # The code of the close this side sent, for the connection's log line.
        self.close_code: int | None = None
        # The message being assembled from fragments (None between messages).
        self.parts: list[bytes] | None = None
        self.fragments = 0
        self.idle = 0  # heartbeat sweeps since the client last sent anything
        # Client messages waiting while an awaited step runs (None: none running).
        self.queue: deque[bytes] | None = None
        self.reaper: asyncio.TimerHandle | None = None

    # --- connection.Transport --------------------------------------------------------

    def push(self, message: Outbound) -> bool:
        if self.closing:
            return False
        t = self.transport
        if t.is_closing():
            self.closing = True
            return False
        wire = message.wire
        if wire is None:
            wire = message.wire = frame_text(message.payload)
        t.write(wire)
        if t.get_write_buffer_size() > self.engine.outbox_max_bytes:
            self._close_slow()
        return True

    def close(self, close: Close) -> bool:
        if self.closing:
            return False
        self._shut(close.code, close.reason)
        return True

    # --- asyncio.Protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.idle = 0
        ws = self.ws
        ws.receive_data(data)
        if ws.close_sent is None:
            # Pongs first: a ping that came before a message's last fragment is answered
            # before the message. (A close waits until the messages before it are served.)
            self._flush()
        for frame in ws.events_received():
            if self.closing:
                break
            if not isinstance(frame, Frame):  # pragma: no cover - a Request comes once
                continue
            opcode = frame.opcode
            # Parsed frames hold bytes (unmasked or inflated); the type allows views.
            payload = cast(bytes, frame.data)
            if opcode in _DATA:
                if self.parts is not None:  # pragma: no cover - websockets fails it first
                    continue
                self.fragments = 1
                if frame.fin:
                    self._message(payload, opcode is Opcode.TEXT)
                else:  # the first part is the message's opcode, for its last fragment
                    self.parts = [opcode.value.to_bytes(1, "big"), payload]
            elif opcode is Opcode.CONT and self.parts is not None:
                self.fragments += 1
                self.parts.append(payload)
                if frame.fin:
                    parts, self.parts = self.parts, None
                    self._message(b"".join(parts[1:]), parts[0] == b"\x01")
                elif self.fragments >= self.engine.max_fragments:
                    self.parts = None
                    self._shut(CloseCode.MESSAGE_TOO_BIG, "message split into too many frames")
        if ws.close_sent is not None and not self.closing:
            # websockets answered a close or failed the connection (1002, 1009, ...).
            self.closing = True
            self.close_code = ws.close_sent.code
            if ws.parser_exc is not None:
                log.info("protocol error on %s: %s", self._who(), ws.parser_exc)
            self._leave()
        self._flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.engine.discard(self)
        if self.reaper is not None:
            self.reaper.cancel()
            self.reaper = None
        conn, self.conn = self.conn, None
        if conn is not None:
            self.engine.gateway.finish(conn, self.close_code or ABNORMAL)

    # --- the rest --------------------------------------------------------------------

    def beat(self) -> None:
        """One heartbeat sweep (see ``LeanEngine._beat``)."""
        if self.closing:  # its close handshake has its own deadline (the reaper)
            return
        self.idle += 1
        if self.idle == 2:
            self.transport.write(PING)
        elif self.idle > 2:
            log.info("no pong from %s: dropping it", self._who())
            self.closing = True
            self._leave()
            self.transport.abort()

    def start(self, tail: bytes) -> None:
        """Authenticated (or awaiting ``auth``): read the client's frames from now on."""
        if tail:
            self.data_received(tail)
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _message(self, data: bytes, text: bool) -> None:
        if text and not data.isascii():
            try:
                data.decode()
            except UnicodeDecodeError:
                self._shut(INVALID_TEXT, "invalid UTF-8")
                return
        if self.echo:
            self.transport.write(frame_text(data, 0x81 if text else 0x82))
            return
        if self.queue is not None:
            self.queue.append(data)
            return
        if self.engine.gateway.node.verifier.remote_keys:
            # A frame may carry a token with a kid not fetched yet: await it first.
            self._await(self._receive(data))
            return
        self._receive_now(data)

    def _receive_now(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or self.closing:
            return
        gateway = self.engine.gateway
        close = gateway.receive(conn, data)
        if close is None and gateway.opening(conn):
            self._await(self._open(conn))
        elif close is not None:
            self._shut(close.code, close.reason)

    def _await(self, step: Coroutine[Any, Any, Close | None]) -> None:
        """Run an awaited step with reading paused; queued messages follow it."""
        self.queue = deque()
        self.transport.pause_reading()
        self.engine.gateway.spawn(self._run(step))

    async def _run(self, step: Coroutine[Any, Any, Close | None]) -> None:
        try:
            close = await step
            while close is None and self.queue and not self.closing:
                close = await self._receive(self.queue.popleft())
        except Exception:
            log.exception("error on connection %s", self._who())
            close = INTERNAL
        self.queue = None
        if close is not None:
            self.close(close)
        elif not self.closing:
            self.transport.resume_reading()

    async def _receive(self, data: bytes) -> Close | None:
        conn = self.conn
        if conn is None or self.closing:
            return None
        gateway = self.engine.gateway
        await gateway.keys_for(data)
        close = gateway.receive(conn, data)
        if close is None and gateway.opening(conn):
            close = await gateway.open(conn)
        return close

    async def _open(self, conn: Connection) -> Close | None:
        return await self.engine.gateway.open(conn)

    def _shut(self, code: int, reason: str) -> None:
        """Close on the server's initiative: the close frame, then the client's answer
        (or the grace period runs out and the socket is aborted)."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        self.parts = None
        self._leave()
        # websockets refuses a second close (one it answered); ``closing`` covers that.
        with contextlib.suppress(InvalidState):
            self.ws.send_close(code, reason)
        self._flush()
        # The client's answer must be read, even if reading was paused (a connection
        # refused before it started, an awaited step): frames before it are dropped.
        if not self.transport.is_closing():
            self.transport.resume_reading()
        self._reap()

    def _close_slow(self) -> None:
        self.closing = True
        self.close_code = CloseCode.SLOW_CONSUMER
        conn = self.conn
        if conn is not None:
            session = conn.session
            log.warning(
                "closing slow consumer %s (user %r): outbox over %d bytes",
                session.client_id,
                session.user_id,
                self.engine.outbox_max_bytes,
            )
        self._leave()
        t = self.transport
        t.write(frame_close(CloseCode.SLOW_CONSUMER, "slow consumer"))
        # close() flushes the backlog first; a client that never reads would hold the
        # socket open forever, hence the reaper.
        t.close()
        self._reap()

    def _reap(self) -> None:
        if self.reaper is None:
            loop = asyncio.get_running_loop()
            self.reaper = loop.call_later(CLOSE_GRACE, self.transport.abort)

    def _leave(self) -> None:
        """Out of the hub at once; the connection is finished when the socket is."""
        if self.conn is not None:
            self.engine.gateway.leave(self.conn)

    def _flush(self) -> None:
        t = self.transport
        data = self.ws.data_to_send()
        if t.is_closing():  # closed as a slow consumer: its close frame was the last
            return
        for chunk in data:
            if chunk:
                t.write(chunk)
            else:  # websockets' end of stream: the close handshake is over
                t.close()

    def _who(self) -> str:
        conn = self.conn
        return conn.session.client_id if conn is not None else "echo"
