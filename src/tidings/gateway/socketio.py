"""Socket.IO v4 compatibility at ``/socket.io/``: existing Socket.IO clients get a session.

python-socketio's ``AsyncServer`` speaks Engine.IO and Socket.IO (long-polling, the
WebSocket upgrade, acknowledgements); this module only translates between its events and
the same ``Session`` the native WebSocket drives, so auth, subscriptions, the inbox,
rooms, rate limits and caps are the native transport's, not a second implementation.

Both ways:

* a server message becomes an event named by its ``type`` (``notification``, ``welcome``,
  a publication's event name, ``CHAT_MESSAGE`` ...). Its argument is the message's
  ``data``; a message on a channel gets ``{channel, id, timestamp, data}`` instead, since
  the channel is what tells two subscriptions apart;
* a client event is a command of the same name (``subscribe``, ``mark_read``,
  ``get_notifications`` ...; see ``ALIASES`` for guide 003's and snake_case names). With an
  acknowledgement callback, the reply (or ``{"error": {...}}``) is the callback's argument;
  without one it arrives as an event, as on the native WebSocket.

The token comes in the Socket.IO handshake (``auth: {token}``, or ``?token=``); a refused
connection gets ``connect_error`` whose ``data`` is ``{code, reason}`` from the close-code
table. Where a WebSocket would be closed with a code, the client first gets a ``close``
event ``{code, reason}``: then a code the table says to reconnect on drops the transport
(Socket.IO clients reconnect on their own), and any other disconnects the namespace (they
do not).

Fan-out stays synchronous: each message is turned into its Socket.IO packet once, shared
by every recipient. On a socket that is (or upgraded to) a WebSocket, with nothing in
Engine.IO's queue ahead of it, ``push`` writes the prebuilt frame straight into the asyncio
transport's buffer, as the native WebSocket does (Engine.IO's own writer wakes a task and
frames a copy per message per recipient, which more than doubled the CPU per delivery);
both write whole frames in one synchronous call, so they never interleave. Otherwise
(long-polling, a ping or an ack still queued) the packet joins Engine.IO's queue, behind
what is there, so order is kept. The backpressure signal is the transport's buffer past
``outbox_max_bytes``, or more than ``outbox_limit`` packets queued: a slow consumer (4008).
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import itertools
import logging
from collections.abc import Coroutine, Mapping, MutableMapping
from typing import Any, Final

import engineio  # type: ignore[import-untyped]
import msgspec
import socketio  # type: ignore[import-untyped]
from aiohttp import web

from ..hub import Outbound
from ..node import Node
from ..protocol import CloseCode, Closing, should_reconnect
from ..session import Close, Session, State
from .websocket import (
    AUTH_FAILURES,
    SLOW_CLOSE_GRACE,
    Fallback,
    WebSocketEndpoint,
    _refusal,
    client_address,
    frame_text,
)

log = logging.getLogger("tidings.socketio")

PATH: Final = "/socket.io/"
# Client event names that differ from the native command's (guide 003's and the usual
# Socket.IO spellings); an event not listed is the command of its own name.
ALIASES: Final[Mapping[str, tuple[str, Mapping[str, Any]]]] = {
    "mark_all_read": ("mark_read", {"all": True}),
    "mark_as_read": ("mark_read", {}),
    "markAsRead": ("mark_read", {}),
    "markAllAsRead": ("mark_read", {"all": True}),
    "archive_notification": ("archive", {}),
    "delete_notification": ("delete", {}),
    "getNotifications": ("get_notifications", {}),
    "join_room": ("subscribe", {}),
    "leave_room": ("unsubscribe", {}),
}
# snake_case field names accepted beside the native camelCase ones.
FIELDS: Final[Mapping[str, str]] = {
    "notification_id": "notificationId",
    "notification_ids": "notificationIds",
    "unread_only": "unreadOnly",
    "room_id": "roomId",
    "message_id": "messageId",
    "is_typing": "isTyping",
    "before_seq": "beforeSeq",
    "user_id": "userId",
}
# What a bare (non-object) argument means, per command.
BARE: Final[Mapping[str, str]] = {
    "subscribe": "channel",
    "unsubscribe": "channel",
    "mark_read": "notificationId",
    "archive": "notificationId",
    "delete": "notificationId",
    "ack": "notificationId",
}
# How long an acknowledged command waits for its reply before the callback gets an error.
REPLY_TIMEOUT: Final = 30.0
# A socket with more Engine.IO packets than this waiting is a slow consumer.
MIN_OUTBOX_PACKETS: Final = 256

_decoder: Final = msgspec.json.Decoder()
_encoder: Final = msgspec.json.Encoder()
# Whether the event being handled asked for an acknowledgement (see _Server).
_wants_ack: contextvars.ContextVar[bool] = contextvars.ContextVar("wants_ack", default=False)


class _Server(socketio.AsyncServer):  # type: ignore[misc]
    """An ``AsyncServer`` that tells event handlers whether the client wants an ack.

    A command's reply goes to the acknowledgement callback when there is one, and is
    emitted as an event when there is not; only the packet says which, and the public
    handler signature does not carry it.
    """

    async def _handle_event_internal(
        self,
        server: Any,
        sid: str,
        eio_sid: str,
        data: Any,
        namespace: str,
        id: int | None,
    ) -> None:
        _wants_ack.set(id is not None)  # each event runs in its own task: no reset needed
        await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)


class _Quiet(logging.LoggerAdapter):  # type: ignore[type-arg]
    """python-socketio's and python-engineio's log, under ``tidings.socketio``: their
    per-packet INFO lines go to DEBUG, and their ERROR lines, which report a client's
    bad request (an unknown session, a bad origin), to WARNING; an exception stays."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level == logging.INFO:
            level = logging.DEBUG
        elif level == logging.ERROR and not kwargs.get("exc_info"):
            level = logging.WARNING
        super().log(level, msg, *args, **kwargs)


class _Event:
    """One server message as Socket.IO sees it (built once, shared by every recipient)."""

    __slots__ = ("_frame", "data", "kind", "packet", "reply_to", "value")

    def __init__(self, payload: bytes) -> None:
        env = _decoder.decode(payload)
        self.kind: str = env["type"]
        self.reply_to: str | None = env.get("replyTo")
        channel = env.get("channel")
        self.data: Any = env.get("data")
        if channel is None:
            self.value: Any = self.data
        else:
            self.value = {
                "channel": channel,
                "id": env["id"],
                "timestamp": env["timestamp"],
                "data": env.get("data"),
            }
        # A Socket.IO EVENT for namespace "/" inside an Engine.IO MESSAGE: "2[name,arg]".
        text = "2" + _encoder.encode([self.kind, self.value]).decode()
        self.packet = engineio.packet.Packet(engineio.packet.MESSAGE, text)
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The packet as a WebSocket frame (Engine.IO's ``4`` + the Socket.IO packet)."""
        frame = self._frame
        if frame is None:
            frame = self._frame = frame_text(("4" + self.packet.data).encode())
        return frame


def _event_of(message: Outbound, cache: MutableMapping[int, tuple[Outbound, _Event]]) -> _Event:
    """The message's event, from the per-message cache the fan-out shares (which holds
    the message too, so its id cannot be reused by another while it is cached)."""
    hit = cache.get(id(message))
    if hit is not None:
        return hit[1]
    event = _Event(message.payload)
    cache[id(message)] = (message, event)
    return event


class _Conn:
    """One Socket.IO connection: its session, its Engine.IO socket and pending replies."""

    __slots__ = (
        "close_code",
        "closing",
        "current",
        "early",
        "eio_sid",
        "endpoint",
        "expiry",
        "ids",
        "peer",
        "replies",
        "session",
        "sid",
        "socket",
        "transport",
    )

    def __init__(self, endpoint: SocketIoEndpoint, sid: str, eio_sid: str, peer: str | None):
        self.endpoint = endpoint
        self.sid = sid
        self.eio_sid = eio_sid
        self.peer = peer
        self.socket: Any = endpoint.server.eio.sockets.get(eio_sid)
        self.session: Session | None = None
        self.closing = False
        self.close_code: int | None = None
        self.replies: dict[str, asyncio.Future[Any]] = {}
        # The request id of the command the session is handling right now: an error it
        # sends meanwhile without a replyTo (a rate limit) answers that command.
        self.current: str | None = None
        self.ids = itertools.count(1)
        self.expiry: asyncio.TimerHandle | None = None
        # Packets pushed before the CONNECT answer is queued (a welcome sent while the
        # token is checked): held until ``flush``, since a client drops or reorders events
        # that arrive before it is connected.
        self.early: list[Any] | None = []
        # The WebSocket's asyncio transport, once the connection is or upgrades to one.
        self.transport: asyncio.Transport | None = None

    def flush(self) -> None:
        """Queue the packets held back during the connect; from now on push directly."""
        early, self.early = self.early, None
        if early and self.socket is not None:
            for packet in early:
                self.socket.queue.put_nowait(packet)

    def push(self, message: Outbound) -> bool:
        if self.closing:
            return False
        socket = self.socket
        if socket is None or socket.closed or socket.closing:
            self.closing = True
            return False
        event = self.endpoint.event(message)
        reply_to = event.reply_to
        if reply_to is None and event.kind == "error":
            reply_to = self.current
        if reply_to is not None:
            waiter = self.replies.pop(reply_to, None)
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(event)
                return True
        if self.early is not None:
            self.early.append(event.packet)
            return True
        queue = socket.queue
        t = self.transport
        if t is not None and socket.upgraded and not socket.upgrading and queue.empty():
            # On a WebSocket with nothing queued before it, the prebuilt frame goes straight
            # into the socket's buffer, as on the native WebSocket (see the module's doc).
            if t.is_closing():
                self.closing = True
                return False
            t.write(event.frame)
            if t.get_write_buffer_size() > self.endpoint.outbox_bytes:
                self.endpoint.close_soon(self, Close(CloseCode.SLOW_CONSUMER, "slow consumer"))
            return True
        queue.put_nowait(event.packet)
        if queue.qsize() > self.endpoint.outbox_limit:
            self.endpoint.close_soon(self, Close(CloseCode.SLOW_CONSUMER, "slow consumer"))
        return True


class SocketIoEndpoint:
    """Serves Socket.IO clients at ``/socket.io/`` for one node.

    Args:
        node: the node.
        websockets: the WebSocket endpoint, for the shared caps, admission control and the
            connection control API (this endpoint joins its chain of fallbacks).
    """

    def __init__(self, node: Node, websockets: WebSocketEndpoint) -> None:
        self.node = node
        self.websockets = websockets
        s = node.settings
        self.accepting = True
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in s.trusted_proxies]
        self._conns: dict[str, _Conn] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # One event per message being fanned out; keyed by id(), cleared once per loop
        # iteration (a message is pushed to all its recipients in one synchronous call).
        self._events: dict[int, tuple[Outbound, _Event]] = {}
        self._clearing = False
        self.outbox_limit = max(MIN_OUTBOX_PACKETS, s.outbox_max_bytes // 1024)
        self.outbox_bytes = s.outbox_max_bytes
        self._by_eio: dict[str, _Conn] = {}
        quiet = _Quiet(log, {})
        interval = s.heartbeat_interval or 25.0
        self.server = _Server(
            async_mode="aiohttp",
            # Origins are checked in handle() with the WebSocket's rule and answer; CORS
            # headers then go to any origin that got that far.
            cors_allowed_origins="*",
            cors_credentials=False,
            ping_interval=interval,
            ping_timeout=max(5.0, interval * 2 / 3),
            max_http_buffer_size=s.max_message_bytes,
            logger=quiet,
            engineio_logger=quiet,
            # Replies are awaited in the handler: each event needs its own task.
            async_handlers=True,
        )
        self.server.on("connect", self._on_connect)
        self.server.on("disconnect", self._on_disconnect)
        self.server.on("*", self._on_event)
        self.next: Fallback | None = websockets.fallback
        websockets.fallback = self

    # --- the Fallback chain -------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """Socket.IO sessions, plus those of the fallbacks after this one."""
        rest = 0 if self.next is None else self.next.open_connections
        return len(self._conns) + rest

    def disconnect(self, sessions: list[Session], code: int, reason: str) -> int:
        """End these sessions with ``code`` (the connection control API)."""
        wanted = set(sessions)
        count = 0
        for conn in list(self._conns.values()):
            if conn.session in wanted and not conn.closing:
                self.close_soon(conn, Close(code, reason))
                count += 1
        if self.next is not None:
            count += self.next.disconnect(sessions, code, reason)
        return count

    # --- HTTP ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Serve ``/socket.io/`` (GET, POST and the CORS preflight) on ``app``."""
        for method in ("GET", "POST", "OPTIONS"):
            app.router.add_route(method, PATH, self.handle)

        async def on_shutdown(_: web.Application) -> None:
            await self.shutdown()

        app.on_shutdown.append(on_shutdown)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """An Engine.IO request; a new session first passes the origin check and admission
        control, as a WebSocket handshake does."""
        if "sid" not in request.query and request.method != "OPTIONS":
            refused = self._refuse(request)
            if refused is not None:
                return refused
        elif request.method != "OPTIONS" and request.query["sid"] not in self.server.eio.sockets:
            # A session this server does not hold (it ended, or a restart): answered here,
            # since Engine.IO logs it at ERROR.
            return _refusal(400, "INVALID_MESSAGE", "unknown Engine.IO session")
        elif request.query.get("transport") == "websocket":
            conn = self._by_eio.get(request.query["sid"])
            if conn is not None:
                # The upgrade's socket: written to directly once Engine.IO switched to it.
                conn.transport = request.transport
        response: web.StreamResponse = await self.server.handle_request(request)
        return response

    def _refuse(self, request: web.Request) -> web.Response | None:
        s = self.node.settings
        peer = client_address(request, self._trusted)
        metrics = self.node.metrics
        if not self.accepting:
            return _refusal(503, "UNAVAILABLE", "server shutting down", {"Retry-After": "1"})
        origin = request.headers.get("Origin")
        if s.allowed_origins and origin not in s.allowed_origins:
            log.warning("rejected Socket.IO from %s: origin %r not allowed", peer, origin)
            metrics.admission_refusals["origin"] += 1
            return _refusal(403, "FORBIDDEN", "origin not allowed")
        # The token arrives in the first Socket.IO packet, within the Engine.IO handshake's
        # round trip, so the connection counts as one that brings a token.
        refusal = self.websockets.admission.admit(peer, has_token=True)
        if refusal is None:
            return None
        log.info("refused Socket.IO from %s: %s", peer, refusal.message)
        code = "RATE_LIMIT" if refusal.status == 429 else "UNAVAILABLE"
        return _refusal(
            refusal.status, code, refusal.message, {"Retry-After": str(refusal.retry_after)}
        )

    # --- connect / disconnect -----------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        """A Socket.IO CONNECT: authenticate and open the session, or refuse it."""
        node = self.node
        s = node.settings
        request: web.Request = environ["aiohttp.request"]
        peer = client_address(request, self._trusted)
        eio_sid = self.server.manager.eio_sid_from_sid(sid, "/")
        conn = _Conn(self, sid, eio_sid, peer)
        token = _token(auth, request)
        session = Session(
            node,
            node.new_id("client"),
            conn.push,
            user_id_param=request.query.get("userId"),
            ack_mode=request.query.get("ack", "").lower() in ("1", "true"),
        )
        session.remote = peer
        conn.session = session
        close: Close | None
        if not self.accepting:
            close = Close(CloseCode.GOING_AWAY, "server shutting down")
        elif self.websockets._authenticated() >= s.max_connections:
            log.warning("rejected Socket.IO from %s: server full", peer)
            close = Close(CloseCode.TOO_MANY_CONNECTIONS, "server connection limit reached")
        elif not token:
            node.metrics.auth_failures["missing"] += 1
            close = Close(CloseCode.MISSING_CREDENTIALS, "missing token (auth.token or ?token=)")
        else:
            await node.verifier.ready(token)
            close = session.authenticate(token)
        if close is None and session.state is State.OPEN:
            self._conns[sid] = conn  # counted from here, for the caps
            self._by_eio[eio_sid] = conn
            if request.query.get("transport") == "websocket":
                conn.transport = request.transport  # a WebSocket from the start
            if not await node.join(session):
                close = Close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections for this user")
            else:
                close = await session.ask_backend("socketio")  # the connect hook, if any
        if close is not None:
            self._conns.pop(sid, None)
            self._by_eio.pop(eio_sid, None)
            session.close()
            node.metrics.rejections[str(close.code)] += 1
            if close.code in AUTH_FAILURES:
                self.websockets.admission.failed(peer)
            log.info("refused Socket.IO %s from %s: %s", session.client_id, peer, close.reason)
            raise socketio.exceptions.ConnectionRefusedError(
                close.reason, {"code": close.code, "reason": close.reason}
            )
        node.metrics.connects += 1
        log.info(
            "open %s (socket.io) user=%r roles=%s",
            session.client_id,
            session.user_id,
            list(session.roles),
        )
        # The welcome and the catch-up go out after the CONNECT packet (python-socketio
        # queues it when this handler returns): a client must see "connect" first.
        self._spawn(self._welcome(conn))
        self._schedule_expiry(conn)
        return True

    async def _welcome(self, conn: _Conn) -> None:
        conn.flush()
        inbox = self.node.inbox
        session = conn.session
        if inbox is not None and session is not None and not conn.closing:
            await inbox.open_session(session)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self._conns.pop(sid, None)
        if conn is None or conn.session is None:
            return
        self._by_eio.pop(conn.eio_sid, None)
        conn.closing = True
        socket = conn.socket
        if socket is not None and reason != self.server.reason.SERVER_DISCONNECT:
            # Ends a long-poll still waiting for packets: Engine.IO leaves it waiting out
            # the ping timeout after a client's close.
            socket.queue.put_nowait(None)
        if conn.expiry is not None:
            conn.expiry.cancel()
        for waiter in conn.replies.values():
            waiter.cancel()
        session = conn.session
        session.close()
        code = conn.close_code or 1000
        self.node.metrics.disconnects[str(code)] += 1
        log.info(
            "closed %s (socket.io) user=%r peer=%s code=%s reason=%s",
            session.client_id,
            session.user_id or None,
            conn.peer,
            code,
            reason,
        )

    # --- events -------------------------------------------------------------------------

    async def _on_event(self, event: str, sid: str, *args: Any) -> Any:
        """A client event: the command of that name; its reply, for the ack callback."""
        conn = self._conns.get(sid)
        session = conn.session if conn is not None else None
        if conn is None or session is None or conn.closing:
            return {"error": {"code": "UNAUTHORIZED", "message": "not connected"}}
        if event == "register":
            # Guide 003 names its user after connecting; tidings knows it from the token.
            return {"userId": session.user_id}
        command, fields = _command(event, args[0] if args else None)
        request_id = f"sio{next(conn.ids)}"
        fields["type"] = command
        fields["id"] = request_id
        frame = _encoder.encode(fields)
        if len(frame) > self.node.settings.max_message_bytes:
            return _error("INVALID_MESSAGE", "message too big")
        wants_ack = _wants_ack.get()
        waiter: asyncio.Future[_Event] | None = None
        if wants_ack:
            waiter = asyncio.get_running_loop().create_future()
            conn.replies[request_id] = waiter
        expires_at = session.expires_at
        conn.current = request_id
        try:
            close = session.receive(frame)
        finally:
            conn.current = None
        if close is not None:
            conn.replies.pop(request_id, None)
            self.close_soon(conn, close)
            return _error("CLOSED", close.reason) if wants_ack else None
        if session.expires_at != expires_at:
            self._schedule_expiry(conn)  # refreshed in-band with an ``auth`` event
        if waiter is None:
            return None
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                reply = await waiter
        except TimeoutError:
            return _error("TIMEOUT", "no reply in time")
        except asyncio.CancelledError:  # the connection ended first
            return _error("CLOSED", "connection closed")
        finally:
            conn.replies.pop(request_id, None)
        if reply.kind == "error":
            return {"error": reply.data}
        return reply.data

    def event(self, message: Outbound) -> _Event:
        """The Socket.IO event of a message, built once per fan-out."""
        event = _event_of(message, self._events)
        if not self._clearing:
            # ids are reused once a message is freed: forget them after this iteration.
            self._clearing = True
            asyncio.get_running_loop().call_soon(self._clear)
        return event

    def _clear(self) -> None:
        self._events.clear()
        self._clearing = False

    # --- closing ------------------------------------------------------------------------

    def close_soon(self, conn: _Conn, close: Close) -> None:
        """Send a ``close`` event, then end the connection: the transport when the code
        says to reconnect (the client does), else the namespace (it does not)."""
        if conn.closing:
            return
        if close.code == CloseCode.SLOW_CONSUMER and conn.session is not None:
            log.warning(
                "closing slow consumer %s (user %r): over %d packets queued",
                conn.session.client_id,
                conn.session.user_id,
                self.outbox_limit,
            )
        socket = conn.socket
        if socket is not None and not (socket.closed or socket.closing):
            closing = Closing(code=close.code, reason=close.reason)
            _, out = self.node.message(closing.kind, closing)
            socket.queue.put_nowait(_Event(out.payload).packet)
        conn.closing = True
        conn.close_code = close.code
        if conn.session is not None:
            conn.session.close()
        if should_reconnect(close.code):
            self._spawn(self._drop(conn))
        else:
            self._spawn(self.server.disconnect(conn.sid))

    async def _drop(self, conn: _Conn) -> None:
        """End the Engine.IO transport (the client reconnects). Engine.IO waits until its
        queue is written, which a client that stopped reading would hold up for ever:
        after a grace period the socket is aborted instead."""
        try:
            async with asyncio.timeout(SLOW_CLOSE_GRACE):
                await self.server.eio.disconnect(conn.eio_sid)
            if conn.socket is not None:
                # Ends Engine.IO's WebSocket writer, which then closes the WebSocket; it
                # would otherwise wait for the client to close it after the CLOSE packet.
                conn.socket.queue.put_nowait(None)
        except TimeoutError:
            log.info("aborting %s: its close did not get through", conn.eio_sid)
            if conn.transport is not None:
                conn.transport.abort()

    def _schedule_expiry(self, conn: _Conn) -> None:
        session = conn.session
        if conn.expiry is not None:
            conn.expiry.cancel()
            conn.expiry = None
        if session is None or session.expires_at is None:
            return
        node = self.node
        delay = max(0.0, session.expires_at + node.settings.jwt_leeway - node.clock()) + 0.01
        conn.expiry = asyncio.get_running_loop().call_later(delay, self._on_expiry, conn)

    def _on_expiry(self, conn: _Conn) -> None:
        session = conn.session
        if session is None or conn.closing:
            return
        close = session.expiry_check()
        if close is not None:
            self.close_soon(conn, close)
        elif session.state is State.OPEN:
            self._schedule_expiry(conn)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        """Stop accepting; close every connection with a ``close`` event 1001."""
        self.accepting = False
        for conn in list(self._conns.values()):
            self.close_soon(conn, Close(CloseCode.GOING_AWAY, "server shutting down"))
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.server.shutdown()


def _token(auth: Any, request: web.Request) -> str | None:
    """The token of a Socket.IO handshake: ``auth: {token}``, else ``?token=``, else a
    Bearer header (a Node client's ``extraHeaders``)."""
    if isinstance(auth, dict):
        token = auth.get("token")
        if isinstance(token, str) and token:
            return token
    token = request.query.get("token")
    if token:
        return token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _command(event: str, arg: Any) -> tuple[str, dict[str, Any]]:
    """The native command and fields for a client event and its first argument."""
    command, preset = ALIASES.get(event, (event, {}))
    fields: dict[str, Any] = dict(preset)
    if command == "publish" and isinstance(arg, dict):
        # For a publication, ``data`` is the payload itself (as in the native message).
        fields.update(arg)
    elif isinstance(arg, dict):
        for key, value in arg.items():
            if key in ("type", "id"):
                continue  # the envelope's: set by the adapter
            fields[FIELDS.get(key, key)] = value
    elif isinstance(arg, list) and command in BARE:
        fields["notificationIds" if BARE[command] == "notificationId" else "channels"] = arg
    elif arg is not None and command in BARE:
        fields[BARE[command]] = arg
    return command, fields


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def add_routes(app: web.Application, node: Node, websockets: WebSocketEndpoint) -> SocketIoEndpoint:
    """Serve Socket.IO clients on ``app``; their sessions share the WebSockets' caps."""
    endpoint = SocketIoEndpoint(node, websockets)
    endpoint.add_routes(app)
    return endpoint


__all__ = ["PATH", "SocketIoEndpoint", "add_routes"]
