"""The WebSocket transport: aiohttp connections driving sessions.

Outgoing messages bypass aiohttp's awaitable ``send_*``: ``push`` writes a prebuilt
frame straight into the asyncio transport's buffer, which is the connection's outbox.
That makes fan-out synchronous and cheap (one frame built per message, one
``write`` per recipient, no task switch), and the buffer's size is the backpressure
signal: past ``outbox_max_bytes`` the client is closed as a slow consumer, so it can
neither grow server memory without bound nor delay anyone else.

Writing beside aiohttp's own writer is safe because both write whole frames in one
synchronous call, and the event loop never interleaves two synchronous calls.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
from collections.abc import Callable
from typing import Final, Protocol

from aiohttp import WebSocketError, WSMessage, WSMsgType, web

from ..admission import Admission
from ..hub import Outbound
from ..node import Node
from ..protocol import CloseCode, encode
from ..session import Close, Session, State
from .frameguard import FrameGuard, GuardedProtocol, Violation

log = logging.getLogger("tidings.transport")

SUBPROTOCOL: Final = "tidings"
BEARER_PREFIX: Final = "bearer."
# Closes of a connection that never opened which count as failed authentications of its
# address (admission control throttles an address that keeps failing).
AUTH_FAILURES: Final = frozenset(
    (
        CloseCode.MISSING_CREDENTIALS,
        CloseCode.INVALID_TOKEN,
        CloseCode.USER_MISMATCH,
        CloseCode.AUTH_TIMEOUT,
    )
)
# A message may be split into max_message_bytes / 64 frames, and at least this many.
MIN_FRAGMENTS: Final = 128
INVALID_TEXT: Final = 1007
# How long a slow consumer's close frame may wait behind its backlog before the socket
# is aborted outright.
SLOW_CLOSE_GRACE: Final = 5.0


def frame_text(payload: bytes, first: int = 0x81) -> bytes:
    """An unmasked, final text frame (server frames are identical for every recipient);
    ``first`` 0x82 makes it binary."""
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def frame_close(code: int, reason: str) -> bytes:
    """An unmasked close frame."""
    body = struct.pack("!H", code) + reason.encode()[:123]
    return bytes((0x88, len(body))) + body


class _Link:
    """The outbox of one connection: its asyncio transport's write buffer."""

    __slots__ = ("close_code", "closing", "counted", "limit", "pending", "session", "transport")

    def __init__(self, transport: asyncio.Transport, limit: int) -> None:
        self.transport = transport
        self.limit = limit
        self.closing = False
        # The code of a close this side started, for the connection's log line.
        self.close_code: int | None = None
        self.session: Session | None = None
        self.counted = False  # counted as a connect (so its close counts as a disconnect)
        # The client address ("" when unknown) while it is still authenticating, else None.
        self.pending: str | None = None

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
        if t.get_write_buffer_size() > self.limit:
            self._close_slow()
        return True

    def _close_slow(self) -> None:
        self.closing = True
        self.close_code = CloseCode.SLOW_CONSUMER
        session = self.session
        if session is not None:
            log.warning(
                "closing slow consumer %s (user %r): outbox over %d bytes",
                session.client_id,
                session.user_id,
                self.limit,
            )
            session.close()
        t = self.transport
        info = CloseCode.SLOW_CONSUMER
        t.write(frame_close(info, "slow consumer"))
        # close() flushes the backlog first; a client that never reads would hold the
        # socket open forever, so abort after a grace period.
        t.close()
        asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE, t.abort)


def _offered_protocols(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def handshake_token(request: web.Request, offered: list[str]) -> str | None:
    """The token a client passed with its request: ``?token=``, a Bearer header, or a
    ``bearer.<jwt>`` subprotocol (one of ``offered``)."""
    token = request.query.get("token")
    if token:
        return token
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for proto in offered:
        if proto.startswith(BEARER_PREFIX) and len(proto) > len(BEARER_PREFIX):
            return proto[len(BEARER_PREFIX) :]
    # ``?token=`` given but empty (a client whose token variable was empty): refused as
    # missing credentials at once, rather than left waiting for an auth message.
    return "" if "token" in request.query else None


def client_address(
    request: web.Request, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the
    right-most address in X-Forwarded-For that is not itself a trusted proxy (what a
    client writes further left is unverifiable)."""
    peer = request.remote
    if not trusted or peer is None or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _in(hop, trusted):
            return hop
    return peer


def _in(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _valid_close_code(code: int) -> bool:
    """Whether a client may send this close code (RFC 6455 7.4, the IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _message_error(msg: WSMessage, limit: int) -> Close | None:
    """What the frame reader does not check on a whole message: text must be UTF-8
    (1007), and nothing may exceed ``max_message_bytes`` once decompressed (1009)."""
    data = msg.data
    if len(data) > limit:
        return Close(CloseCode.MESSAGE_TOO_BIG, "message too big")
    if msg.type is WSMsgType.TEXT and not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError:
            return Close(INVALID_TEXT, "invalid UTF-8")
    return None


def deflate_offers_valid(request: web.Request) -> bool:
    """Whether every permessage-deflate offer is well formed (RFC 7692 7.1): known
    parameters, none twice, window bits 8 to 15. A malformed offer is declined: the
    connection opens without compression."""
    header = request.headers.get("Sec-WebSocket-Extensions", "")
    for offer in header.split(","):
        name, *params = [p.strip() for p in offer.split(";")]
        if name.lower() != "permessage-deflate":
            continue
        seen: set[str] = set()
        for param in params:
            key, eq, value = (x.strip() for x in param.partition("="))
            key = key.lower()
            if key in seen or key not in _DEFLATE_PARAMS:
                return False
            seen.add(key)
            value = value.strip('"')
            if key.endswith("_max_window_bits"):
                if eq and not (value.isdigit() and 8 <= int(value) <= 15):
                    return False
                if not eq and key == "server_max_window_bits":
                    return False
            elif eq:
                return False
    return True


_DEFLATE_PARAMS: Final = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)


def _refusal(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A handshake refused before the upgrade, in the HTTP API's error shape."""
    body = {"error": {"code": code, "message": message}}
    return web.Response(
        body=encode(body), status=status, headers=headers, content_type="application/json"
    )


class Fallback(Protocol):
    """Another transport (the SSE fallback) whose connections share the caps and the
    connection control API with the WebSockets."""

    @property
    def open_connections(self) -> int: ...

    def disconnect(self, sessions: list[Session], code: int, reason: str) -> int: ...


class WebSocketEndpoint:
    """Accepts WebSocket connections for one node and keeps track of them."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._live: dict[web.WebSocketResponse, _Link] = {}
        self.accepting = True
        self._tasks: set[asyncio.Task[bool]] = set()
        self._trusted = [
            ipaddress.ip_network(p, strict=False) for p in node.settings.trusted_proxies
        ]
        self.fallback: Fallback | None = None
        self.admission = Admission(node.settings, node.monotonic, node.metrics)
        # Conformance-test mode: every message is echoed back by the same reader, limits
        # and writer, with no session (tests/test_security_conformance.py).
        self.echo = False

    @property
    def open_connections(self) -> int:
        """Every open WebSocket, authenticated or not."""
        return len(self._live)

    def _authenticated(self) -> int:
        """Connections that count toward ``max_connections``: every WebSocket and SSE
        stream but those opened without a token and still authenticating."""
        return len(self._live) - self.admission.pending + self._fallback_connections()

    def _settle(self, link: _Link) -> None:
        """The connection is no longer one still authenticating (it opened, or closed)."""
        if link.pending is not None:
            self.admission.settled(link.pending or None)
            link.pending = None

    def _refuse(
        self, request: web.Request, peer: str | None, has_token: bool
    ) -> web.Response | None:
        """The HTTP answer to a handshake refused before the upgrade, if it is: a
        cross-site page gets no socket at all (403), and admission control (429/503,
        with Retry-After) keeps one address from taking the server."""
        s = self.node.settings
        version = request.headers.get("Sec-WebSocket-Version")
        if version is not None and version.strip() != "13":
            # aiohttp would upgrade the drafts' versions 7 and 8 too (RFC 6455 4.4).
            self.node.metrics.admission_refusals["version"] += 1
            return _refusal(
                426,
                "UPGRADE_REQUIRED",
                "WebSocket version 13 only",
                {"Sec-WebSocket-Version": "13"},
            )
        origin = request.headers.get("Origin")
        if s.allowed_origins and origin not in s.allowed_origins:
            log.warning("rejected WebSocket from %s: origin %r not allowed", peer, origin)
            self.node.metrics.admission_refusals["origin"] += 1
            return _refusal(403, "FORBIDDEN", "origin not allowed")
        refusal = self.admission.admit(peer, has_token=has_token)
        if refusal is None:
            return None
        log.info("refused WebSocket from %s: %s", peer, refusal.message)
        code = "RATE_LIMIT" if refusal.status == 429 else "UNAVAILABLE"
        return _refusal(
            refusal.status, code, refusal.message, {"Retry-After": str(refusal.retry_after)}
        )

    def _fallback_connections(self) -> int:
        return 0 if self.fallback is None else self.fallback.open_connections

    async def handle(self, request: web.Request) -> web.StreamResponse:
        node = self.node
        s = node.settings
        offered = _offered_protocols(request)
        peer = client_address(request, self._trusted)
        token = handshake_token(request, offered)
        refused = self._refuse(request, peer, token is not None)
        if refused is not None:
            return refused
        # Browsers fail the handshake unless the server picks an offered subprotocol, so
        # clients offer "tidings" beside "bearer.<jwt>"; the token is never echoed back.
        selected = SUBPROTOCOL if SUBPROTOCOL in offered else None
        ws = web.WebSocketResponse(
            protocols=(selected,) if selected else (),
            heartbeat=s.heartbeat_interval or None,
            # aiohttp refuses an uncompressed message of exactly its limit but accepts a
            # compressed one one byte over: give it one more, and check the exact limit
            # on each message (_message_error), so both ways agree with the docs.
            max_msg_size=s.max_message_bytes + 1,
            compress=s.compression and deflate_offers_valid(request),
            decode_text=False,
            # A client's close is answered here (_answer_close), with 1002 for a code
            # it must not send; aiohttp's autoclose answers everything with 1000.
            autoclose=False,
        )
        await ws.prepare(request)
        transport = request.transport
        if transport is None:  # the client went away during the handshake
            return ws
        link = _Link(transport, s.outbox_max_bytes)
        self._guard(transport, link)
        if self.echo:
            await self._echo(ws, link)
            return ws
        if token is None:
            # Admitted as one of its address's connections still authenticating.
            self.admission.opened(peer)
            link.pending = peer or ""
        last_seq = request.query.get("lastSeq", "")
        session = Session(
            node,
            node.new_id("client"),
            link.push,
            user_id_param=request.query.get("userId"),
            last_seq=int(last_seq) if last_seq.isdigit() and len(last_seq) < 19 else None,
            ack_mode=request.query.get("ack", "").lower() in ("1", "true"),
        )
        link.session = session
        self._live[ws] = link
        session.remote = peer
        started = node.monotonic()
        close: Close | None = None
        timers: list[asyncio.TimerHandle] = []
        loop = asyncio.get_running_loop()
        try:
            if not self.accepting:
                close = Close(CloseCode.GOING_AWAY, "server shutting down")
            elif self._authenticated() > s.max_connections:
                log.warning("rejected WebSocket from %s: server full", peer)
                close = Close(CloseCode.TOO_MANY_CONNECTIONS, "server connection limit reached")
            else:
                await node.verifier.ready(token)  # a new kid: fetch the JWKS first
                close = session.authenticate(token)
            if close is None and session.state is State.AWAITING_AUTH:
                timers.append(
                    loop.call_later(
                        s.auth_timeout, self._on_timer, ws, session, session.auth_deadline
                    )
                )
            if close is None:
                close = await self._serve(ws, session, link, timers)
        except Exception:
            log.exception("error on connection %s", session.client_id)
            close = Close(CloseCode.INTERNAL_ERROR, "internal server error")
        finally:
            for timer in timers:
                timer.cancel()
            session.close()
            del self._live[ws]
            self._settle(link)
        if close is not None and not link.closing:
            link.closing = True
            link.close_code = close.code
            await ws.close(code=close.code, message=close.reason.encode())
        elif not link.closing:
            await self._answer_close(ws, link)
        code = link.close_code or ws.close_code
        if link.counted:  # counted as a connect: count its disconnect too
            node.metrics.disconnects[str(code)] += 1
        else:  # refused before it was open (auth, caps)
            node.metrics.rejections[str(code)] += 1
            if code in AUTH_FAILURES:
                self.admission.failed(peer)
        log.info(
            "closed %s user=%r peer=%s code=%s duration=%.1fs",
            session.client_id,
            session.user_id or None,
            peer,
            code,
            node.monotonic() - started,
        )
        return ws

    async def _serve(
        self,
        ws: web.WebSocketResponse,
        session: Session,
        link: _Link,
        timers: list[asyncio.TimerHandle],
    ) -> Close | None:
        if session.state is State.OPEN:
            close = await self._on_open(ws, session, link, timers)
            if close is not None:
                return close
            link.counted = True
        limit = self.node.settings.max_message_bytes
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                close = _message_error(msg, limit)
                if close is not None:
                    return close
                was_open = session.state is State.OPEN
                expires_at = session.expires_at
                if self.node.verifier.remote_keys:  # a frame may carry a new kid
                    await self.node.verifier.ready_for_frame(msg.data)
                close = session.receive(msg.data)
                if close is not None:
                    return close
                if not was_open and session.state is State.OPEN:
                    close = await self._on_open(ws, session, link, timers)
                    if close is not None:
                        return close
                    link.counted = True
                elif session.expires_at != expires_at:
                    # Refreshed in-band: the new expiry may be earlier than the old one.
                    self._schedule_expiry(ws, session, timers)
            elif msg.type is WSMsgType.ERROR:
                # aiohttp has already closed with the matching code (1009 for too big);
                # remember it, since ws.close_code then reads as the abnormal 1006.
                exc = ws.exception()
                if isinstance(exc, WebSocketError):
                    link.close_code = exc.code
                log.info("protocol error on %s: %s", session.client_id, exc)
                break
        return None

    async def _echo(self, ws: web.WebSocketResponse, link: _Link) -> None:
        """The conformance-test loop: what ``_serve`` does with a message, minus the
        session (each is written back by the same writer)."""
        limit = self.node.settings.max_message_bytes
        transport = link.transport
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                close = _message_error(msg, limit)
                if close is not None:
                    link.closing = True
                    await ws.close(code=close.code, message=close.reason.encode())
                    return
                if msg.type is WSMsgType.TEXT:
                    link.push(Outbound(msg.data))
                else:
                    transport.write(frame_text(msg.data, 0x82))
            elif msg.type is WSMsgType.ERROR:
                log.info("protocol error on echo: %s", ws.exception())
                return
        if not link.closing:
            await self._answer_close(ws, link)

    def _guard(self, transport: asyncio.Transport, link: _Link) -> None:
        """Put a FrameGuard in front of aiohttp's frame reader (see gateway.frameguard)."""
        inner = transport.get_protocol()
        if not isinstance(inner, asyncio.Protocol):  # pragma: no cover - aiohttp's is one
            return
        max_fragments = max(MIN_FRAGMENTS, self.node.settings.max_message_bytes // 64)

        def violated(violation: Violation) -> None:
            if link.closing:
                return
            session = link.session
            log.info(
                "protocol violation on %s: %s",
                session.client_id if session is not None else "echo",
                violation.reason,
            )
            link.closing = True
            link.close_code = violation.code
            transport.write(frame_close(violation.code, violation.reason))
            transport.close()

        transport.set_protocol(GuardedProtocol(inner, FrameGuard(max_fragments), violated))

    async def _answer_close(self, ws: web.WebSocketResponse, link: _Link) -> None:
        """Answer a close the client started: 1000, or 1002 for a code a client must not
        send (1004-1006, 1015, unassigned ones; aiohttp lets 1006 and 5000+ through)."""
        if ws.closed:
            return
        received = ws.close_code or 0
        code = 1000 if received == 0 or _valid_close_code(received) else 1002
        link.closing = True
        link.close_code = code
        await ws.close(code=code)

    async def _on_open(
        self,
        ws: web.WebSocketResponse,
        session: Session,
        link: _Link,
        timers: list[asyncio.TimerHandle],
    ) -> Close | None:
        self._settle(link)
        if self._authenticated() > self.node.settings.max_connections:
            # Opened by an auth message: connections still authenticating do not count
            # toward max_connections, so it is checked again now that this one does.
            log.warning("rejected WebSocket %s: server full", session.client_id)
            return Close(CloseCode.TOO_MANY_CONNECTIONS, "server connection limit reached")
        if not await self.node.join(session):
            return Close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections for this user")
        denied = await session.ask_backend("websocket")  # the connect hook, if any
        if denied is not None:
            return denied
        inbox = self.node.inbox
        if inbox is not None:
            # The welcome goes out before the next client frame is read; the catch-up
            # runs beside the client's frames, missed notifications before live ones.
            await inbox.open_session(session)
        self.node.metrics.connects += 1
        log.info(
            "open %s user=%r roles=%s", session.client_id, session.user_id, list(session.roles)
        )
        self._schedule_expiry(ws, session, timers)
        return None

    def _schedule_expiry(
        self, ws: web.WebSocketResponse, session: Session, timers: list[asyncio.TimerHandle]
    ) -> None:
        if session.expires_at is None:
            return
        node = self.node
        delay = max(0.0, session.expires_at + node.settings.jwt_leeway - node.clock()) + 0.01
        # Only the latest expiry timer matters: drop the ones a refresh made stale.
        for timer in timers:
            timer.cancel()
        timers.clear()
        timers.append(
            asyncio.get_running_loop().call_later(delay, self._on_expiry, ws, session, timers)
        )

    def _on_expiry(
        self, ws: web.WebSocketResponse, session: Session, timers: list[asyncio.TimerHandle]
    ) -> None:
        close = session.expiry_check()
        if close is not None:
            self._close_soon(ws, close)
        elif session.state is State.OPEN:
            self._schedule_expiry(ws, session, timers)

    def _on_timer(
        self, ws: web.WebSocketResponse, session: Session, check: Callable[[], Close | None]
    ) -> None:
        close = check()
        if close is not None:
            self._close_soon(ws, close)

    def _close_soon(self, ws: web.WebSocketResponse, close: Close) -> None:
        link = self._live.get(ws)
        if link is not None and link.session is not None:
            log.info("closing %s: %s", link.session.client_id, close.reason)
            link.session.close()
            link.close_code = close.code
            # The close frame follows: a reply still on its way (an inbox request, say)
            # must not be written after it, which clients take for a broken connection.
            link.closing = True
        task = asyncio.get_running_loop().create_task(
            ws.close(code=close.code, message=close.reason.encode())
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def disconnect(self, sessions: list[Session], code: int, reason: str) -> int:
        """Close these connections with ``code`` (the connection control API)."""
        wanted = set(sessions)
        count = 0
        for ws, link in list(self._live.items()):
            if link.session in wanted and not link.closing:
                self._close_soon(ws, Close(code, reason))
                count += 1
        if self.fallback is not None:
            count += self.fallback.disconnect(sessions, code, reason)
        return count

    async def shutdown(self) -> None:
        """Stop accepting and close every connection with 1001."""
        self.accepting = False
        for link in self._live.values():
            link.close_code = CloseCode.GOING_AWAY
        closes = [
            ws.close(code=CloseCode.GOING_AWAY, message=b"server shutting down")
            for ws in list(self._live)
        ]
        if closes:
            await asyncio.gather(*closes, return_exceptions=True)
