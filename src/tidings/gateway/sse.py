"""The Server-Sent Events fallback: ``GET /sse`` streams, ``POST /sse/{clientId}`` messages.

For clients that cannot open a WebSocket. It drives the same ``Session`` as the WebSocket
transport, so every rule (auth, subscriptions, inbox catch-up, rate limits, caps) is the
same; only the framing differs. A server message becomes one event
``id: <clientId>.<n>`` / ``data: <JSON>``; where a WebSocket would be closed with a code,
the stream gets a last ``close`` event and ends.

A session outlives its stream for ``sse_resume_seconds``: a reconnect that names the last
event it saw (``Last-Event-ID``, which EventSource sends on its own) reattaches the session
and gets the events it missed from a bounded replay buffer.

``push`` never blocks: it appends the event to the session's outbox and wakes the
stream's writer. The outbox's unsent bytes plus the socket's write buffer are the
backpressure signal, as for a WebSocket: past ``outbox_max_bytes`` the session ends with
``4008``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import Final

from aiohttp import web

from .. import cluster, protocol
from ..api.http import BodyError, error_response, json_response, read_raw_body
from ..auth import AuthError, Identity
from ..broker import BrokerError
from ..hub import Outbound
from ..node import Node
from ..protocol import CloseCode
from ..session import Close, Session, State
from .eventstream import EventOutbox, client_frames, last_event_id
from .websocket import SLOW_CLOSE_GRACE, WebSocketEndpoint, client_address, handshake_token

log = logging.getLogger("tidings.sse")

STREAM_PATH: Final = "/sse"
POST_PATH: Final = "/sse/{client_id}"
# A dropped stream that is never resumed: what a WebSocket client reports for a
# connection that ended without a close frame.
ABNORMAL: Final = 1006
_HEADERS: Final = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # nginx buffers proxied responses unless told not to; a buffered stream never arrives.
    "X-Accel-Buffering": "no",
}
_PING: Final = b": ping\n\n"
# Sent as soon as the stream opens, so the headers go out and EventSource fires ``open``
# even when there is nothing to replay.
_OPENED: Final = b": open\n\n"
_CORS_HEADERS: Final = "Authorization, Content-Type, Last-Event-ID"
# _verify's answer when the identity provider's keys were never fetched: 503, not 401.
UNAVAILABLE: Final = "token keys unavailable, try again later"


class _Stream:
    """One SSE session: its events, the response writing them (if any) and its timers."""

    __slots__ = (
        "client_id",
        "events",
        "expiry",
        "final",
        "limit",
        "on_slow",
        "response",
        "resume_timer",
        "session",
        "transport",
        "wake",
    )

    def __init__(self, client_id: str, limit: int, on_slow: Callable[[_Stream], None]) -> None:
        self.client_id = client_id
        # The replay buffer holds as much as the outbox may: a resume never needs more.
        self.events = EventOutbox(client_id, limit)
        self.limit = limit
        self.on_slow = on_slow
        self.wake = asyncio.Event()
        self.response: web.StreamResponse | None = None
        self.transport: asyncio.Transport | None = None
        # Set once the session has ended: its close, whose event is the stream's last.
        self.final: Close | None = None
        self.session: Session | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.resume_timer: asyncio.TimerHandle | None = None

    def push(self, message: Outbound) -> bool:
        if self.final is not None:
            return False
        self.append(message.payload)
        if self.backlog() > self.limit:
            self.on_slow(self)
        return True

    def append(self, payload: bytes) -> None:
        self.events.append(payload)
        self.wake.set()

    def ended(self) -> bool:
        return self.final is not None

    def backlog(self) -> int:
        """Bytes queued for the client and not yet taken by its socket."""
        t = self.transport
        return self.events.unsent + (0 if t is None else t.get_write_buffer_size())


class SseEndpoint:
    """Serves the SSE fallback for one node; its sessions count with the WebSockets.

    Args:
        node: the node.
        websockets: the WebSocket endpoint, for the shared connection cap.
    """

    def __init__(self, node: Node, websockets: WebSocketEndpoint) -> None:
        self.node = node
        self.websockets = websockets
        self.accepting = True
        self._streams: dict[str, _Stream] = {}
        # Streams being set up (authenticated, not yet welcomed): they count for the cap.
        self._opening = 0
        self._trusted = [
            ipaddress.ip_network(p, strict=False) for p in node.settings.trusted_proxies
        ]

    @property
    def open_connections(self) -> int:
        """SSE sessions, attached to a stream or waiting for a resume."""
        return len(self._streams) + self._opening

    def add_routes(self, app: web.Application) -> None:
        """Register ``GET /sse`` and ``POST /sse/{clientId}`` (and their CORS preflight)."""
        # No HEAD: a stream with no body to carry events would only hold a session.
        app.router.add_get(STREAM_PATH, self.handle_stream, allow_head=False)
        app.router.add_post(POST_PATH, self.handle_post)
        app.router.add_route("OPTIONS", STREAM_PATH, self.preflight)
        app.router.add_route("OPTIONS", POST_PATH, self.preflight)

        async def on_shutdown(_: web.Application) -> None:
            self.shutdown()

        app.on_shutdown.append(on_shutdown)

    # --- CORS ---------------------------------------------------------------------------

    def _cors(self, request: web.Request, response: web.StreamResponse) -> None:
        # EventSource and fetch from a page on another origin need these; the token, not
        # a cookie, authenticates, so no credentials are allowed.
        origin = request.headers.get("Origin")
        allowed = self.node.settings.allowed_origins
        if origin and (not allowed or origin in allowed):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        """Answer a CORS preflight for the SSE routes."""
        response = web.Response(status=204)
        self._cors(request, response)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        return response

    def _error(self, request: web.Request, status: int, message: str) -> web.Response:
        if message == UNAVAILABLE:  # the identity provider, not the token, is at fault
            status = 503
        headers = {"Retry-After": "1"} if status == 503 else None
        response = error_response(status, message, headers)
        self._cors(request, response)
        return response

    def _verify(self, token: str | None) -> Identity | str:
        """The token's identity, or why it was refused (counted as the WebSocket does)."""
        if not token:
            self.node.metrics.auth_failures["missing"] += 1
            return "missing token (?token= or Authorization: Bearer)"
        try:
            return self.node.verifier.verify(token)
        except AuthError as exc:
            if exc.unavailable:
                self.node.metrics.auth_failures["unavailable"] += 1
                return UNAVAILABLE
            self.node.metrics.auth_failures["expired" if exc.expired else "invalid"] += 1
            return "token expired" if exc.expired else "invalid or expired token"

    # --- GET /sse -----------------------------------------------------------------------

    async def handle_stream(self, request: web.Request) -> web.StreamResponse:
        """Open (or resume) a stream; a refused token is an HTTP 401 with no stream."""
        token = handshake_token(request, [])
        admission = self.websockets.admission  # the same per-address limits as WebSockets
        peer = client_address(request, self._trusted)
        refusal = admission.admit(peer, has_token=True)
        if refusal is not None:
            log.info("refused SSE stream from %s: %s", peer, refusal.message)
            refused = self._error(request, refusal.status, refusal.message)
            refused.headers["Retry-After"] = str(refusal.retry_after)
            return refused
        await self.node.verifier.ready(token)
        identity = self._verify(token)
        if isinstance(identity, str):
            log.warning("rejected SSE stream: %s", identity)
            admission.failed(peer)
            return self._error(request, 401, identity)
        assert token is not None
        response = web.StreamResponse(headers=_HEADERS)
        self._cors(request, response)
        stream = self._resumable(request, identity)
        if stream is not None:
            await response.prepare(request)
            log.info("resumed %s user=%r", stream.client_id, identity.user_id)
            return await self._attach(request, response, stream)
        self._opening += 1
        try:
            stream = await self._open(request, response, token)
        finally:
            self._opening -= 1
        return await self._attach(request, response, stream, fresh=True)

    def _resumable(self, request: web.Request, identity: Identity) -> _Stream | None:
        header = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
        last = last_event_id(header or "")
        if last is None or self.node.settings.sse_resume_seconds <= 0:
            return None
        client_id, seen = last
        stream = self._streams.get(client_id)
        session = stream.session if stream is not None else None
        if stream is None or session is None or session.user_id != identity.user_id:
            return None
        if stream.final is not None or not stream.events.replay_from(seen):
            # Too late or too much missed: this session can never be resumed; free it.
            self._end(stream, None, False)
            return None
        if identity.expires_at != session.expires_at:
            # The reconnect may carry a fresher token (EventSource keeps its URL, but a
            # client that builds a new one may not).
            session.expires_at = identity.expires_at
            self._schedule_expiry(stream)
        return stream

    async def _open(
        self, request: web.Request, response: web.StreamResponse, token: str
    ) -> _Stream:
        """A new session: the same checks, in the same order, as a WebSocket's; a refused
        one gets its close event and is ended."""
        node = self.node
        s = node.settings
        client_id = node.new_id("client")
        stream = _Stream(client_id, s.outbox_max_bytes, self._slow)
        last_seq = request.query.get("lastSeq", "")
        session = Session(
            node,
            client_id,
            stream.push,
            user_id_param=request.query.get("userId"),
            last_seq=int(last_seq) if last_seq.isdigit() and len(last_seq) < 19 else None,
            ack_mode=request.query.get("ack", "").lower() in ("1", "true"),
        )
        session.remote = client_address(request, self._trusted)
        stream.session = session
        await response.prepare(request)
        stream.response = response
        stream.transport = request.transport
        origin = request.headers.get("Origin")
        total = self.websockets.open_connections + self.open_connections
        if not self.accepting:
            close: Close | None = Close(CloseCode.GOING_AWAY, "server shutting down")
        elif s.allowed_origins and origin not in s.allowed_origins:
            log.warning(
                "rejected SSE stream from %s: origin %r not allowed", session.remote, origin
            )
            close = Close(CloseCode.FORBIDDEN_ORIGIN, "origin not allowed")
        elif total > s.max_connections:
            log.warning("rejected SSE stream from %s: server full", session.remote)
            close = Close(CloseCode.TOO_MANY_CONNECTIONS, "server connection limit reached")
        else:
            close = session.authenticate(token)
        if close is None and session.state is State.OPEN and not await node.join(session):
            # The per-user cap across the cluster (a no-op on a single instance).
            close = Close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections for this user")
        if close is None and session.state is State.OPEN:
            close = await session.ask_backend("sse")  # the connect hook, if any
        if close is None and session.state is State.OPEN and node.inbox is not None:
            # The welcome before anything else (event 1); the catch-up follows it.
            await node.inbox.open_session(session)
        if close is None and not self.accepting:
            close = Close(CloseCode.GOING_AWAY, "server shutting down")
        if close is not None:
            self._end(stream, close, True)
        elif stream.final is None:  # else ended during its catch-up (slow consumer)
            node.metrics.connects += 1
            self._streams[client_id] = stream
            log.info(
                "open %s (sse) user=%r roles=%s", client_id, session.user_id, list(session.roles)
            )
            self._schedule_expiry(stream)
        return stream

    async def _attach(
        self,
        request: web.Request,
        response: web.StreamResponse,
        stream: _Stream,
        *,
        fresh: bool = False,
    ) -> web.StreamResponse:
        """Write the stream's events to ``response`` until it ends or is replaced."""
        if stream.resume_timer is not None:
            stream.resume_timer.cancel()
            stream.resume_timer = None
        if not fresh:
            stream.response = response
            stream.transport = request.transport
            stream.wake.set()  # a writer still attached to an older response lets go
        heartbeat = self.node.settings.heartbeat_interval or None
        try:
            await response.write(_OPENED)
            while stream.response is response:
                chunk = stream.events.take()
                if chunk:
                    await response.write(chunk)
                    continue
                if stream.final is not None:
                    await response.write_eof()
                    break
                stream.wake.clear()
                try:
                    async with asyncio.timeout(heartbeat):
                        await stream.wake.wait()
                except TimeoutError:
                    await response.write(_PING)
        except ConnectionError:
            pass  # the client went away; it may come back with Last-Event-ID
        finally:
            if stream.response is response:
                stream.response = None
                stream.transport = None
                self._detached(stream)
        return response

    def _detached(self, stream: _Stream) -> None:
        session = stream.session
        if stream.final is not None or session is None:
            return
        wait = self.node.settings.sse_resume_seconds
        if wait <= 0 or not self.accepting:
            self._end(stream, None, False)
            return
        log.debug("stream of %s dropped; kept %.0fs for a resume", session.client_id, wait)
        stream.resume_timer = asyncio.get_running_loop().call_later(
            wait, self._end, stream, None, False
        )

    # --- POST /sse/{clientId} -----------------------------------------------------------

    async def handle_post(self, request: web.Request) -> web.StreamResponse:
        """One client message, or a JSON array of them, for an open session."""
        token = handshake_token(request, [])
        await self.node.verifier.ready(token)
        identity = self._verify(token)
        if isinstance(identity, str):
            return self._error(request, 401, identity)
        client_id = request.match_info["client_id"]
        stream = self._streams.get(client_id)
        session = stream.session if stream is not None else None
        if session is not None and identity.user_id != session.user_id:
            log.warning("SSE post to %s with another user's token", session.client_id)
            return self._error(request, 403, "this session belongs to another user")
        s = self.node.settings
        try:
            body = await read_raw_body(request, s.max_message_bytes, s.body_timeout)
        except BodyError as exc:
            response = self._error(request, exc.status, exc.message)
            response.force_close()
            return response
        if self.node.verifier.remote_keys:
            for frame in client_frames(body):
                await self.node.verifier.ready_for_frame(frame)  # an in-band auth's new kid
        if stream is not None and not stream.ended():
            accepted: int | None = self._deliver(stream, body)
        else:
            accepted = await self._forward(identity.user_id, client_id, body)
        if accepted is None:
            return self._error(request, 404, "no such session (it ended, or never existed)")
        response = json_response({"accepted": accepted}, status=202)
        self._cors(request, response)
        return response

    def _deliver(self, stream: _Stream, body: bytes) -> int:
        """Hand a POST body's messages to the session; how many it took."""
        session = stream.session
        assert session is not None
        accepted = 0
        for frame in client_frames(body):
            if stream.ended():  # by an earlier message of this body
                break
            accepted += 1
            expires_at = session.expires_at
            close = session.receive(frame)
            if close is not None:
                self._end(stream, close, True)
            elif session.expires_at != expires_at:
                self._schedule_expiry(stream)  # refreshed in-band
        return accepted

    async def _forward(self, user_id: str, client_id: str, body: bytes) -> int | None:
        """In a cluster, a POST may reach an instance that does not hold the stream (a
        proxy without sticky sessions): pass it to the one that does, if any."""
        node = self.node
        if node.registry is None:
            return None
        op = cluster.SsePost(
            user=user_id,
            client=client_id,
            # Control messages are JSON: a body that is not UTF-8 was not valid JSON
            # either, and the session answers the replacement text the same way.
            body=body.decode(errors="replace"),
        )
        try:
            answers = await node.control(op)
        except BrokerError as exc:
            log.warning("SSE post to %s not forwarded: %s", client_id, exc)
            return None
        taken = [a for a in answers if isinstance(a, int)]
        return taken[0] if taken else None

    def post_local(self, sessions: list[Session], body: str) -> int | None:
        """A POST forwarded by another instance, for one of these sessions (if here)."""
        for session in sessions:
            stream = self._streams.get(session.client_id)
            if stream is not None and stream.session is session and not stream.ended():
                return self._deliver(stream, body.encode())
        return None

    # --- ending -------------------------------------------------------------------------

    def _schedule_expiry(self, stream: _Stream) -> None:
        session = stream.session
        if stream.expiry is not None:
            stream.expiry.cancel()
            stream.expiry = None
        if session is None or session.expires_at is None:
            return
        node = self.node
        delay = max(0.0, session.expires_at + node.settings.jwt_leeway - node.clock()) + 0.01
        stream.expiry = asyncio.get_running_loop().call_later(delay, self._on_expiry, stream)

    def _on_expiry(self, stream: _Stream) -> None:
        session = stream.session
        if session is None or stream.final is not None:
            return
        close = session.expiry_check()
        if close is not None:
            self._end(stream, close, True)
        elif session.state is State.OPEN:
            self._schedule_expiry(stream)

    def _slow(self, stream: _Stream) -> None:
        if stream.final is not None:
            return
        session = stream.session
        if session is not None:
            log.warning(
                "closing slow consumer %s (user %r): outbox over %d bytes",
                session.client_id,
                session.user_id,
                stream.limit,
            )
        # Drop what the client has not taken: the session is over, so nothing will ever
        # replay it, and the close event should not wait behind it.
        stream.events.take()
        self._end(stream, Close(CloseCode.SLOW_CONSUMER, "slow consumer"), True)
        t = stream.transport
        if t is not None:
            # A client that never reads would hold the socket open forever.
            asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE, t.abort)

    def _end(self, stream: _Stream, close: Close | None, announce: bool) -> None:
        """End a session: a last ``close`` event on its stream (when ``announce``)."""
        session = stream.session
        if session is None or stream.final is not None:
            return
        code = close.code if close is not None else ABNORMAL
        if announce and close is not None:
            stream.append(_close_payload(self.node, close))
        stream.final = close or Close(ABNORMAL, "stream dropped")
        stream.wake.set()
        for timer in (stream.expiry, stream.resume_timer):
            if timer is not None:
                timer.cancel()
        stream.expiry = stream.resume_timer = None
        if self._streams.get(session.client_id) is stream:
            del self._streams[session.client_id]
        was_open = bool(session.user_id)
        session.close()
        if was_open:
            self.node.metrics.disconnects[str(code)] += 1
        log.info(
            "closed %s (sse) user=%r peer=%s code=%s",
            session.client_id,
            session.user_id or None,
            session.remote,
            code,
        )

    def disconnect(self, sessions: list[Session], code: int, reason: str) -> int:
        """End these sessions with ``code`` (the connection control API)."""
        wanted = set(sessions)
        count = 0
        for stream in list(self._streams.values()):
            if stream.session in wanted and stream.final is None:
                self._end(stream, Close(code, reason), True)
                count += 1
        return count

    def shutdown(self) -> None:
        """Stop accepting; end every stream with a ``1001`` close event."""
        self.accepting = False
        for stream in list(self._streams.values()):
            self._end(stream, Close(CloseCode.GOING_AWAY, "server shutting down"), True)


def _close_payload(node: Node, close: Close) -> bytes:
    closing = protocol.Closing(code=close.code, reason=close.reason)
    _, out = node.message(closing.kind, closing)
    return out.payload


def add_routes(app: web.Application, node: Node, websockets: WebSocketEndpoint) -> SseEndpoint:
    """Serve the SSE fallback on ``app``; its sessions share the WebSockets' caps."""
    endpoint = SseEndpoint(node, websockets)
    websockets.fallback = endpoint
    node.sse_post_local = endpoint.post_local
    endpoint.add_routes(app)
    return endpoint
