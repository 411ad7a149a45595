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
import logging
from typing import Any, Final, Protocol

from aiohttp import web

from .. import cluster, protocol
from ..api.http import BodyError, error_response, json_response, read_raw_body
from ..auth import AuthError, Identity, Verifier
from ..broker import BrokerError
from ..config import Settings
from ..hub import Outbound
from ..metrics import Metrics
from ..protocol import CloseCode
from ..session import Close, Session
from .connection import SHUTTING_DOWN, Gateway
from .eventstream import client_frames, last_event_id
from .handshake import client_address, handshake_token, options, trusted_networks
from .ssestream import Stream
from .websocket import SLOW_CLOSE_GRACE

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


class Host(Protocol):
    """What the SSE endpoint needs of its node (``node.Node`` is one), beside what the
    gateway does: the verifier for a POST's token, cluster forwarding of a POST, and
    the framing of its last ``close`` event."""

    @property
    def settings(self) -> Settings: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def verifier(self) -> Verifier: ...
    @property
    def clustered(self) -> bool: ...

    async def control(self, op: cluster.Operation, *, wait: float = 2.0) -> list[Any]: ...

    def message(
        self, kind: str, data: Any, *, channel: str | None = None, reply_to: str | None = None
    ) -> tuple[str, Outbound]: ...


class SseEndpoint:
    """Serves the SSE fallback for one node through its gateway, so its sessions share
    the WebSockets' admission, caps, timers and connection control.

    Args:
        gateway: the connections' gateway, shared with the other transports.
        node: the node (the token verifier, cluster forwarding, message framing).
    """

    def __init__(self, gateway: Gateway, node: Host) -> None:
        self.gateway = gateway
        self.node = node
        # Opened sessions by client id: a resume or a POST names one.
        self._streams: dict[str, Stream] = {}
        self._trusted = trusted_networks(node.settings.trusted_proxies)

    @property
    def open_connections(self) -> int:
        """SSE sessions, attached to a stream or waiting for a resume."""
        return len(self.gateway.connections(Stream.name))

    def add_routes(self, app: web.Application) -> None:
        """Register ``GET /sse`` and ``POST /sse/{clientId}`` (and their CORS preflight)."""
        # No HEAD: a stream with no body to carry events would only hold a session.
        app.router.add_get(STREAM_PATH, self.handle_stream, allow_head=False)
        app.router.add_post(POST_PATH, self.handle_post)
        app.router.add_route("OPTIONS", STREAM_PATH, self.preflight)
        app.router.add_route("OPTIONS", POST_PATH, self.preflight)

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
        admission = self.gateway.admission  # the same per-address limits as WebSockets
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
        stream = await self._open(request, response, token, peer)
        return await self._attach(request, response, stream, fresh=True)

    def _resumable(self, request: web.Request, identity: Identity) -> Stream | None:
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
        if identity.expires_at != session.expires_at and stream.conn is not None:
            # The reconnect may carry a fresher token (EventSource keeps its URL, but a
            # client that builds a new one may not).
            session.expires_at = identity.expires_at
            self.gateway.schedule_expiry(stream.conn)
        return stream

    async def _open(
        self, request: web.Request, response: web.StreamResponse, token: str, peer: str | None
    ) -> Stream:
        """A new session: the same checks, in the same order, as a WebSocket's; a refused
        one gets its close event and is ended."""
        gateway = self.gateway
        stream = Stream(self.node.settings.outbox_max_bytes, self._slow, self._close)
        conn = gateway.connect(stream, peer=peer, options=options(request), pending=False)
        stream.attach(conn)
        try:
            close = await self._admit(request, response, stream, token, peer)
        except BaseException:
            # The client went away during prepare, or opening failed: the gateway must
            # not keep the connection.
            self._end(stream, None, False)
            raise
        if close is None and not gateway.accepting:
            # Draining began during its catch-up, after the gateway closed every stream.
            close = SHUTTING_DOWN
        if close is not None:
            self._end(stream, close, True)
        elif stream.final is None:  # else ended during its catch-up (slow consumer)
            self._streams[stream.client_id] = stream
        return stream

    async def _admit(
        self,
        request: web.Request,
        response: web.StreamResponse,
        stream: Stream,
        token: str,
        peer: str | None,
    ) -> Close | None:
        await response.prepare(request)
        stream.response = response
        stream.transport = request.transport
        gateway = self.gateway
        origin = request.headers.get("Origin")
        if not gateway.accepting:
            return SHUTTING_DOWN
        if not gateway.origin_allowed(origin):
            log.warning("rejected SSE stream from %s: origin %r not allowed", peer, origin)
            return Close(CloseCode.FORBIDDEN_ORIGIN, "origin not allowed")
        assert stream.conn is not None
        return await gateway.authenticate(stream.conn, token)

    async def _attach(
        self,
        request: web.Request,
        response: web.StreamResponse,
        stream: Stream,
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

    def _detached(self, stream: Stream) -> None:
        session = stream.session
        if stream.final is not None or session is None:
            return
        wait = self.node.settings.sse_resume_seconds
        if wait <= 0 or not self.gateway.accepting:
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

    def _deliver(self, stream: Stream, body: bytes) -> int:
        """Hand a POST body's messages to the session; how many it took."""
        conn = stream.conn
        assert conn is not None
        accepted = 0
        for frame in client_frames(body):
            if stream.ended():  # by an earlier message of this body
                break
            accepted += 1
            close = self.gateway.receive(conn, frame)
            if close is not None:
                self._end(stream, close, True)
        return accepted

    async def _forward(self, user_id: str, client_id: str, body: bytes) -> int | None:
        """In a cluster, a POST may reach an instance that does not hold the stream (a
        proxy without sticky sessions): pass it to the one that does, if any."""
        node = self.node
        if not node.clustered:
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

    def _slow(self, stream: Stream) -> None:
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

    def _close(self, stream: Stream, close: Close) -> bool:
        """End a session on the server's initiative (``Transport.close``)."""
        return self._end(stream, close, True)

    def _end(self, stream: Stream, close: Close | None, announce: bool) -> bool:
        """End a session: a last ``close`` event on its stream (when ``announce``)."""
        conn = stream.conn
        if conn is None or stream.final is not None:
            return False
        code = close.code if close is not None else ABNORMAL
        if announce and close is not None:
            stream.append(_close_payload(self.node, close))
        stream.final = close or Close(ABNORMAL, "stream dropped")
        stream.wake.set()
        if stream.resume_timer is not None:
            stream.resume_timer.cancel()
            stream.resume_timer = None
        if self._streams.get(stream.client_id) is stream:
            del self._streams[stream.client_id]
        self.gateway.finish(conn, code)
        return True


def _close_payload(node: Host, close: Close) -> bytes:
    closing = protocol.Closing(code=close.code, reason=close.reason)
    _, out = node.message(closing.kind, closing)
    return out.payload


def add_routes(app: web.Application, gateway: Gateway, node: Host) -> SseEndpoint:
    """Serve the SSE fallback on ``app``, through ``gateway`` (shared with WebSockets);
    the server hands ``post_local`` to the cluster's control plane."""
    endpoint = SseEndpoint(gateway, node)
    endpoint.add_routes(app)
    return endpoint
