"""Socket.IO v4 compatibility at ``/socket.io/``: existing Socket.IO clients get a session.

python-socketio's ``AsyncServer`` speaks Engine.IO and Socket.IO (long-polling, the
WebSocket upgrade, acknowledgements); this module is a transport of the gateway
(``connection.py``), so admission, caps, authentication, the welcome and catch-up, expiry,
the connection control API and shutdown are the native WebSocket's, written once. What is
left here is the framing (``sioevents.py``) and the wire:

* the token comes in the Socket.IO handshake (``auth: {token}``, or ``?token=``); a refused
  connection gets ``connect_error`` whose ``data`` is ``{code, reason}`` from the
  close-code table;
* a client event is the command of that name; with an acknowledgement callback its reply
  (or ``{"error": {...}}``) is the callback's argument, without one it arrives as an event;
* where a WebSocket would be closed with a code, the client first gets a ``close`` event
  ``{code, reason}``: then a code the table says to reconnect on drops the transport
  (Socket.IO clients reconnect on their own), and any other disconnects the namespace
  (they do not).

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
import itertools
import logging
from collections.abc import MutableMapping
from typing import Any, Final

import socketio  # type: ignore[import-untyped]
from aiohttp import web

from ..hub import Outbound
from ..protocol import CloseCode, Closing, should_reconnect
from ..session import Close
from .connection import Connection, Gateway
from .handshake import client_address, options, trusted_networks
from .sioevents import REGISTER, Event, command_of, error
from .websocket import ABNORMAL, SLOW_CLOSE_GRACE, _refusal

log = logging.getLogger("tidings.socketio")

PATH: Final = "/socket.io/"
# How long an acknowledged command waits for its reply before the callback gets an error.
REPLY_TIMEOUT: Final = 30.0
# A socket with more Engine.IO packets than this waiting is a slow consumer.
MIN_OUTBOX_PACKETS: Final = 256
MISSING_TOKEN: Final = Close(CloseCode.MISSING_CREDENTIALS, "missing token (auth.token or ?token=)")

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


class _Wire:
    """One Socket.IO connection's wire (a ``connection.Transport``): its Engine.IO socket,
    the WebSocket under it once there is one, and the replies its acks wait for."""

    __slots__ = (
        "accepted",
        "close_code",
        "closing",
        "conn",
        "current",
        "early",
        "eio_sid",
        "endpoint",
        "ids",
        "replies",
        "sid",
        "socket",
        "transport",
    )

    name: Final = "socketio"

    def __init__(self, endpoint: SocketIoEndpoint, sid: str, eio_sid: str) -> None:
        self.endpoint = endpoint
        self.sid = sid
        self.eio_sid = eio_sid
        self.socket: Any = endpoint.server.eio.sockets.get(eio_sid)
        self.conn: Connection | None = None
        self.closing = False
        self.accepted = False  # the connect handler said yes
        self.close_code: int | None = None
        self.replies: dict[str, asyncio.Future[Event]] = {}
        self.ids = itertools.count(1)
        # The request id of the command the session is handling right now: an error it
        # sends meanwhile without a replyTo (a rate limit) answers that command.
        self.current: str | None = None
        # Packets pushed before the CONNECT answer is queued (the welcome and catch-up are
        # sent while the connect handler runs): held until ``flush``, since a client
        # drops or reorders events that arrive before it is connected.
        self.early: list[Any] | None = []
        # The WebSocket's asyncio transport, once the connection is or upgrades to one.
        self.transport: asyncio.Transport | None = None

    def flush(self) -> None:
        """Queue the packets held back during the connect; from now on push directly."""
        early, self.early = self.early, None
        socket = self.socket
        if early and socket is not None and not (socket.closed or socket.closing):
            for packet in early:  # a close event too, if it came this early
                socket.queue.put_nowait(packet)

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
                self._close_slow()
            return True
        queue.put_nowait(event.packet)
        if queue.qsize() > self.endpoint.outbox_limit:
            self._close_slow()
        return True

    def _close_slow(self) -> None:
        conn = self.conn
        if conn is not None:
            log.warning(
                "closing slow consumer %s (user %r): Socket.IO outbox full",
                conn.session.client_id,
                conn.session.user_id,
            )
            self.close(Close(CloseCode.SLOW_CONSUMER, "slow consumer"))
            conn.session.close()

    def close(self, close: Close) -> bool:
        """A ``close`` event, then the end of the transport (a code to reconnect on) or of
        the namespace (any other)."""
        if self.closing:
            return False
        endpoint = self.endpoint
        socket = self.socket
        if socket is not None and not (socket.closed or socket.closing):
            closing = Closing(code=close.code, reason=close.reason)
            _, out = endpoint.node.message(closing.kind, closing)
            packet = Event(out.payload).packet
            if self.early is not None:
                self.early.append(packet)
            else:
                socket.queue.put_nowait(packet)
        self.closing = True
        self.close_code = close.code
        for waiter in self.replies.values():
            waiter.cancel()
        if not self.accepted:
            return True  # refused during the connect: connect_error says the rest
        if should_reconnect(close.code):
            endpoint.gateway.spawn(self._drop())
        else:
            endpoint.gateway.spawn(endpoint.server.disconnect(self.sid))
        return True

    async def _drop(self) -> None:
        """End the Engine.IO transport (the client reconnects). Engine.IO waits until its
        queue is written, which a client that stopped reading would hold up for ever:
        after a grace period the socket is aborted instead."""
        try:
            async with asyncio.timeout(SLOW_CLOSE_GRACE):
                await self.endpoint.server.eio.disconnect(self.eio_sid)
            if self.socket is not None:
                # Ends Engine.IO's WebSocket writer, which then closes the WebSocket; it
                # would otherwise wait for the client to close it after the CLOSE packet.
                self.socket.queue.put_nowait(None)
        except TimeoutError:
            log.info("aborting %s: its close did not get through", self.eio_sid)
            if self.transport is not None:
                self.transport.abort()


class SocketIoEndpoint:
    """Serves Socket.IO clients at ``/socket.io/`` through the gateway.

    Args:
        gateway: the connections' gateway, shared with the other transports.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.node = node = gateway.node
        s = node.settings
        self._trusted = trusted_networks(s.trusted_proxies)
        self._wires: dict[str, _Wire] = {}  # by Socket.IO sid
        self._by_eio: dict[str, _Wire] = {}  # by Engine.IO sid
        # One event per message being fanned out; cleared once per loop iteration (a
        # message is pushed to all its recipients in one synchronous call). It holds the
        # message too, so its id cannot be reused by another while it is cached.
        self._events: dict[int, tuple[Outbound, Event]] = {}
        self._clearing = False
        self.outbox_limit = max(MIN_OUTBOX_PACKETS, s.outbox_max_bytes // 1024)
        self.outbox_bytes = s.outbox_max_bytes
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

    # --- HTTP ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Serve ``/socket.io/`` (GET, POST and the CORS preflight) on ``app``."""
        for method in ("GET", "POST", "OPTIONS"):
            app.router.add_route(method, PATH, self.handle)

        async def on_shutdown(_: web.Application) -> None:
            await self.server.shutdown()  # Engine.IO's background task; connections: gateway

        app.on_shutdown.append(on_shutdown)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """An Engine.IO request; a new session first passes the origin check and admission
        control, as a WebSocket handshake does."""
        sid = request.query.get("sid")
        if request.method == "OPTIONS":
            pass
        elif sid is None:
            refused = self._refuse(request)
            if refused is not None:
                return refused
        elif sid not in self.server.eio.sockets:
            # A session this server does not hold (it ended, or a restart): answered here,
            # since Engine.IO logs it at ERROR.
            return _refusal(400, "INVALID_MESSAGE", "unknown Engine.IO session")
        elif request.query.get("transport") == "websocket":
            wire = self._by_eio.get(sid)
            if wire is not None:
                # The upgrade's socket: written to directly once Engine.IO switched to it.
                wire.transport = request.transport
        response: web.StreamResponse = await self.server.handle_request(request)
        return response

    def _refuse(self, request: web.Request) -> web.Response | None:
        peer = client_address(request, self._trusted)
        metrics = self.node.metrics
        if not self.gateway.accepting:
            return _refusal(503, "UNAVAILABLE", "server shutting down", {"Retry-After": "1"})
        origin = request.headers.get("Origin")
        if not self.gateway.origin_allowed(origin):
            log.warning("rejected Socket.IO from %s: origin %r not allowed", peer, origin)
            metrics.admission_refusals["origin"] += 1
            return _refusal(403, "FORBIDDEN", "origin not allowed")
        # The token arrives in the first Socket.IO packet, within the Engine.IO handshake's
        # round trip, so the connection counts as one that brings a token.
        refusal = self.gateway.admit(peer, has_token=True)
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
        gateway = self.gateway
        request: web.Request = environ["aiohttp.request"]
        peer = client_address(request, self._trusted)
        eio_sid = self.server.manager.eio_sid_from_sid(sid, "/")
        wire = _Wire(self, sid, eio_sid)
        if request.query.get("transport") == "websocket":
            wire.transport = request.transport  # a WebSocket from the start
        conn = wire.conn = gateway.connect(wire, peer=peer, options=options(request), pending=False)
        self._wires[sid] = self._by_eio[eio_sid] = wire
        token = _token(auth, request)
        if token is None:
            self.node.metrics.auth_failures["missing"] += 1
            close: Close | None = MISSING_TOKEN
        else:
            close = await gateway.authenticate(conn, token)
        if self._wires.get(sid) is not wire:
            return False  # the client left while it was opening: finished already
        socket = wire.socket
        if close is None and (socket is None or socket.closed or socket.closing):
            # It left while opening, and python-socketio did not report it (a namespace
            # not yet connected gets no disconnect event): end it here.
            self._forget(wire)
            wire.closing = True
            gateway.finish(conn, ABNORMAL)
            return False
        if close is None and wire.closing:
            close = Close(wire.close_code or CloseCode.SLOW_CONSUMER, "closed while opening")
        if close is not None:
            self._forget(wire)
            gateway.finish(conn, close.code)
            raise socketio.exceptions.ConnectionRefusedError(
                close.reason, {"code": close.code, "reason": close.reason}
            )
        # The CONNECT answer is queued as soon as this handler returns (no await between):
        # the welcome and catch-up held in ``early`` follow it on the next iteration.
        wire.accepted = True
        asyncio.get_running_loop().call_soon(wire.flush)
        return True

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        wire = self._wires.get(sid)
        if wire is None or wire.conn is None:
            return
        self._forget(wire)
        wire.closing = True
        for waiter in wire.replies.values():
            waiter.cancel()
        socket = wire.socket
        if socket is not None and reason != self.server.reason.SERVER_DISCONNECT:
            # Ends a long-poll still waiting for packets: Engine.IO leaves it waiting out
            # the ping timeout after a client's close.
            socket.queue.put_nowait(None)
        if wire.close_code is not None:
            code = wire.close_code
        elif reason == self.server.reason.CLIENT_DISCONNECT:
            code = CloseCode.NORMAL
        else:
            code = ABNORMAL  # the transport closed or failed, or pings went unanswered
        self.gateway.finish(wire.conn, code)

    @property
    def engine_sessions(self) -> int:
        """Engine.IO sessions open now (connected to the namespace or not)."""
        return len(self.server.eio.sockets)

    def _forget(self, wire: _Wire) -> None:
        if self._wires.get(wire.sid) is wire:
            del self._wires[wire.sid]
        if self._by_eio.get(wire.eio_sid) is wire:
            del self._by_eio[wire.eio_sid]

    # --- events -------------------------------------------------------------------------

    async def _on_event(self, event: str, sid: str, *args: Any) -> Any:
        """A client event: the command of that name; its reply, for the ack callback."""
        wire = self._wires.get(sid)
        conn = wire.conn if wire is not None else None
        if wire is None or conn is None or wire.closing:
            return error("UNAUTHORIZED", "not connected")
        if event == REGISTER:
            return {"userId": conn.session.user_id}
        request_id = f"sio{next(wire.ids)}"
        frame = command_of(event, args[0] if args else None, request_id)
        if len(frame) > self.node.settings.max_message_bytes:
            return error("INVALID_MESSAGE", "message too big")
        gateway = self.gateway
        await gateway.keys_for(frame)  # an ``auth`` event's token may name a new kid
        wants_ack = _wants_ack.get()
        waiter: asyncio.Future[Event] | None = None
        if wants_ack:
            waiter = asyncio.get_running_loop().create_future()
            wire.replies[request_id] = waiter
        wire.current = request_id
        try:
            close = gateway.receive(conn, frame)
        finally:
            wire.current = None
        if close is not None:
            wire.replies.pop(request_id, None)
            gateway.close(conn, close)
            return error("CLOSED", close.reason) if wants_ack else None
        if waiter is None:
            return None
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                reply = await waiter
        except TimeoutError:
            return error("TIMEOUT", "no reply in time")
        except asyncio.CancelledError:  # the connection ended first
            return error("CLOSED", "connection closed")
        finally:
            wire.replies.pop(request_id, None)
        if reply.kind == "error":
            return {"error": reply.data}
        return reply.data

    def event(self, message: Outbound) -> Event:
        """The Socket.IO event of a message, built once per fan-out."""
        cache: MutableMapping[int, tuple[Outbound, Event]] = self._events
        hit = cache.get(id(message))
        if hit is not None:
            return hit[1]
        event = Event(message.payload)
        cache[id(message)] = (message, event)
        if not self._clearing:
            self._clearing = True
            asyncio.get_running_loop().call_soon(self._clear)
        return event

    def _clear(self) -> None:
        self._events.clear()
        self._clearing = False


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


ENDPOINT_KEY: Final = web.AppKey("socketio", SocketIoEndpoint)


def add_routes(app: web.Application, gateway: Gateway) -> SocketIoEndpoint:
    """Serve Socket.IO clients on ``app``, through ``gateway`` (shared with WebSockets);
    the endpoint is ``app[ENDPOINT_KEY]``."""
    endpoint = SocketIoEndpoint(gateway)
    endpoint.add_routes(app)
    app[ENDPOINT_KEY] = endpoint
    return endpoint
