"""The gateway: one connection's life, written once for every transport.

A transport (``websocket.py``, ``sse.py``, a Socket.IO one) only frames messages and
moves bytes. Everything else a client connection goes through is here, the same for all:

* admission before the upgrade (draining, origin, per-address limits: ``admission.py``);
* the instance's connection cap (connections still authenticating do not count);
* authentication, and the auth timeout of a connection that opened without a token;
* opening: the per-user cap across the cluster, the connect hook, the welcome and the
  inbox catch-up, in that order, before the transport reads anything else from the client;
* the token's expiry, rescheduled when a client refreshes in-band;
* the registry of live connections, for the connection control API and for shutdown;
* the metrics and the log line of each connection's end.

A transport implements ``Transport`` and drives a ``Connection`` through the gateway::

    refusal = gateway.admit(peer, has_token=token is not None)   # before any upgrade
    conn = gateway.connect(transport, peer=peer, options=options, pending=token is None)
    close = await gateway.authenticate(conn, token)   # opens it too when the token did
    for each client frame:
        close = gateway.receive(conn, frame)
        if close is None and gateway.opening(conn):   # an ``auth`` message opened it
            close = await gateway.open(conn)
    gateway.finish(conn, code)                         # once, with the code it closed with

Heartbeats stay with the transport: they are wire traffic (a WebSocket ping frame, an
SSE comment line), and each wire has its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Final, Protocol

from ..admission import Admission, Refusal
from ..events import ConnectionEvents
from ..hub import Outbound
from ..protocol import CloseCode
from ..session import Close, Host, InboxHook, Session, State
from ..tasks import TaskSet
from .handshake import Options

log = logging.getLogger("tidings.gateway")

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
SHUTTING_DOWN: Final = Close(CloseCode.GOING_AWAY, "server shutting down")
SERVER_FULL: Final = Close(CloseCode.TOO_MANY_CONNECTIONS, "server connection limit reached")
USER_FULL: Final = Close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections for this user")


class Transport(Protocol):
    """One client connection's wire, as the gateway drives it.

    The contract an implementation keeps:

    * ``name`` is the transport's name: ``"websocket"``, ``"sse"``, ``"socketio"``. The
      connect hook receives it and the logs show it.
    * ``push`` queues one server message for the client and returns at once: never
      blocking, never awaiting, it is called from the fan-out (the session's ``push``).
      It returns False once the connection is closing (the message was not queued). A
      transport bounds its outbox (``outbox_max_bytes``) and, past it, closes the
      connection itself with ``CloseCode.SLOW_CONSUMER``.
    * ``close`` starts closing the connection with a code and reason the client will
      see (a close frame, a last ``close`` event, a disconnect packet) and returns at
      once; nothing pushed after it reaches the client. It returns False when the
      connection was closing already (nothing was done). Asynchronous work it needs
      goes through ``Gateway.spawn``, which shutdown waits for.
    * When the connection has ended, whichever side ended it, the transport calls
      ``Gateway.finish`` once, with the close code the connection ended with.
    """

    @property
    def name(self) -> str: ...

    def push(self, message: Outbound) -> bool: ...

    def close(self, close: Close) -> bool: ...


class OpenHook(InboxHook, Protocol):
    """What the gateway needs of the inbox (``inbox.Inbox`` is one): per-connection
    state kept from connect to finish, and the welcome with its catch-up."""

    def attach(self, session: Session, *, last_seq: int | None, ack_mode: bool) -> None: ...

    def detach(self, session: Session) -> None: ...

    async def open_session(self, session: Session) -> None: ...


class GatewayHost(Host, Protocol):
    """What the gateway needs of its node (``node.Node`` is one): what a session needs,
    plus ids and the cluster-wide per-user cap."""

    @property
    def inbox(self) -> OpenHook | None: ...

    @property
    def events(self) -> ConnectionEvents: ...

    def new_id(self, kind: str = "msg") -> str: ...

    async def join(self, session: Session) -> bool: ...


class Connection:
    """One client connection as the gateway tracks it (the transport holds it)."""

    __slots__ = ("counted", "peer", "pending", "session", "started", "timer", "transport")

    def __init__(
        self, session: Session, transport: Transport, peer: str | None, started: float
    ) -> None:
        self.session = session
        self.transport = transport
        self.peer = peer
        self.started = started
        # Counted as a connect, so its end counts as a disconnect (else as a rejection).
        self.counted = False
        # The client address ("" when unknown) while it is still authenticating, else None.
        self.pending: str | None = None
        # The auth timeout, then the token's expiry: one timer at a time.
        self.timer: asyncio.TimerHandle | None = None

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Gateway:
    """Admission, opening, timers and the registry of live connections, for every
    transport of one node.

    Args:
        node: the node the connections' sessions belong to.
    """

    def __init__(self, node: GatewayHost) -> None:
        self.node = node
        self.accepting = True
        self.admission = Admission(node.settings, node.monotonic, node.metrics)
        self._live: dict[Session, Connection] = {}
        self._tasks = TaskSet(log, "gateway")

    @property
    def open_connections(self) -> int:
        """Every live connection, on any transport, authenticated or not."""
        return len(self._live)

    @property
    def authenticated(self) -> int:
        """Connections that count toward ``max_connections``: all but those opened
        without a token and still authenticating."""
        return len(self._live) - self.admission.pending

    def connections(self, transport: str | None = None) -> list[Connection]:
        """Live connections, on one transport (by name) or all."""
        return [c for c in self._live.values() if transport in (None, c.transport.name)]

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a page from ``origin`` may connect (``allowed_origins``; empty: any)."""
        allowed = self.node.settings.allowed_origins
        return not allowed or origin in allowed

    def admit(self, peer: str | None, *, has_token: bool) -> Refusal | None:
        """Admission control before the upgrade: None to go ahead, else the HTTP refusal."""
        return self.admission.admit(peer, has_token=has_token)

    def connect(
        self, transport: Transport, *, peer: str | None, options: Options, pending: bool
    ) -> Connection:
        """A new connection, admitted and upgraded, awaiting ``authenticate``.

        Args:
            transport: its wire.
            peer: the client's address.
            options: its query options.
            pending: it opened without a token, so counts as still authenticating.
        """
        node = self.node
        session = Session(
            node, node.new_id("client"), transport.push, user_id_param=options.user_id
        )
        session.remote = peer
        session.transport = transport.name
        conn = Connection(session, transport, peer, node.monotonic())
        # A refresh the connect hook decides is answered after receive() returned.
        session.close_later = lambda close: self._close_later(conn, close)
        session.expiry_changed = lambda: self.schedule_expiry(conn)
        if pending:
            # Admitted as one of its address's connections still authenticating.
            self.admission.opened(peer)
            conn.pending = peer or ""
        self._live[session] = conn
        inbox = node.inbox
        if inbox is not None:
            inbox.attach(session, last_seq=options.last_seq, ack_mode=options.ack)
        return conn

    async def authenticate(self, conn: Connection, token: str | None) -> Close | None:
        """Authenticate with the handshake token (None: wait for an ``auth`` message,
        under the auth timeout) and, when it opens the connection, ``open`` it."""
        session = conn.session
        if not self.accepting:
            return SHUTTING_DOWN
        if self.authenticated > self.node.settings.max_connections:
            log.warning("rejected %s from %s: server full", conn.transport.name, conn.peer)
            return SERVER_FULL
        await self.node.verifier.ready(token)  # a new kid: fetch the JWKS first
        close = session.authenticate(token)
        if close is not None:
            return close
        if session.state is State.AWAITING_AUTH:
            conn.timer = asyncio.get_running_loop().call_later(
                self.node.settings.auth_timeout, self._on_auth_timeout, conn
            )
            return None
        return await self.open(conn)

    async def keys_for(self, frame: bytes | str) -> None:
        """Fetch the identity provider's keys a client frame may need (a new kid)."""
        verifier = self.node.verifier
        if verifier.remote_keys:
            await verifier.ready_for_frame(frame)

    def receive(self, conn: Connection, frame: bytes | str) -> Close | None:
        """Hand one client frame to the session; a Close ends the connection. When it
        opened the connection (``opening`` is then true), ``open`` must follow."""
        session = conn.session
        expires_at = session.expires_at
        close = session.receive(frame)
        if close is None and conn.counted and session.expires_at != expires_at:
            # Refreshed in-band: the new expiry may be earlier than the old one.
            self.schedule_expiry(conn)
        return close

    @staticmethod
    def opening(conn: Connection) -> bool:
        """Whether the connection is authenticated and not yet opened."""
        return not conn.counted and conn.session.state is State.OPEN

    async def open(self, conn: Connection) -> Close | None:
        """Open an authenticated connection: caps, the connect hook, the welcome and the
        inbox catch-up, before the transport reads anything else from the client."""
        node = self.node
        session = conn.session
        conn.cancel_timer()
        self._settle(conn)
        if self.authenticated > node.settings.max_connections:
            # Opened by an auth message: connections still authenticating do not count
            # toward max_connections, so it is checked again now that this one does.
            log.warning("rejected %s %s: server full", conn.transport.name, session.client_id)
            return SERVER_FULL
        if not await node.join(session):  # the per-user cap across the cluster
            return USER_FULL
        denied = await session.ask_backend(conn.transport.name)  # the connect hook, if any
        if denied is not None:
            return denied
        inbox = node.inbox
        if inbox is not None:
            # The welcome goes out before the next client frame is read; the catch-up
            # runs beside the client's frames, missed notifications before live ones.
            await inbox.open_session(session)
        if self._live.get(session) is not conn:
            return None  # ended during its catch-up (a slow consumer): finished already
        conn.counted = True
        node.metrics.connects += 1
        node.events.connected(session)
        log.info(
            "open %s (%s) user=%r roles=%s",
            session.client_id,
            conn.transport.name,
            session.user_id,
            list(session.roles),
        )
        self.schedule_expiry(conn)
        return None

    def close(self, conn: Connection, close: Close) -> bool:
        """Close a connection on the server's initiative (a timer, an operator)."""
        if not conn.transport.close(close):
            return False
        log.info("closing %s: %s", conn.session.client_id, close.reason)
        conn.session.close()
        return True

    def _close_later(self, conn: Connection, close: Close) -> None:
        self.close(conn, close)

    def leave(self, conn: Connection) -> None:
        """The connection is over: out of the hub and the registry at once (the transport
        may still be sending its close); ``finish`` follows."""
        conn.cancel_timer()
        session = conn.session
        session.close()
        if self._live.get(session) is conn:
            del self._live[session]
            inbox = self.node.inbox
            if inbox is not None:
                inbox.detach(session)
        self._settle(conn)

    def finish(self, conn: Connection, code: int) -> None:
        """The connection has ended with ``code``: count it and log its line."""
        self.leave(conn)
        metrics = self.node.metrics
        if conn.counted:  # counted as a connect: count its disconnect too
            metrics.disconnects[str(code)] += 1
            self.node.events.disconnected(conn.session, code)
        else:  # refused before it was open (auth, caps)
            metrics.rejections[str(code)] += 1
            if code in AUTH_FAILURES:
                self.admission.failed(conn.peer)
        session = conn.session
        log.info(
            "closed %s (%s) user=%r peer=%s code=%s duration=%.1fs",
            session.client_id,
            conn.transport.name,
            session.user_id or None,
            conn.peer,
            code,
            self.node.monotonic() - conn.started,
        )

    def disconnect(self, sessions: list[Session], code: int, reason: str) -> int:
        """Close these sessions' connections with ``code`` (the connection control API);
        how many were closed."""
        count = 0
        for session in sessions:
            conn = self._live.get(session)
            if conn is not None and self.close(conn, Close(code, reason)):
                count += 1
        return count

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a transport's closing work; ``shutdown`` waits for it."""
        self._tasks.spawn(coro)

    async def shutdown(self) -> None:
        """Stop accepting and close every connection with 1001."""
        self.accepting = False
        for conn in list(self._live.values()):
            self.close(conn, SHUTTING_DOWN)
        await self._tasks.drain(self.node.settings.shutdown_timeout)

    def _settle(self, conn: Connection) -> None:
        """The connection is no longer one still authenticating (it opened, or closed)."""
        if conn.pending is not None:
            self.admission.settled(conn.pending or None)
            conn.pending = None

    def _on_auth_timeout(self, conn: Connection) -> None:
        conn.timer = None
        close = conn.session.auth_deadline()
        if close is not None:
            self.close(conn, close)

    def schedule_expiry(self, conn: Connection) -> None:
        """(Re)arm the close at the token's expiry (a transport calls it when a resumed
        connection brings a fresher token)."""
        conn.cancel_timer()
        if conn.session.state is not State.OPEN:
            return
        expires_at = conn.session.expires_at
        if expires_at is None:
            return
        node = self.node
        delay = max(0.0, expires_at + node.settings.jwt_leeway - node.clock()) + 0.01
        conn.timer = asyncio.get_running_loop().call_later(delay, self._on_expiry, conn)

    def _on_expiry(self, conn: Connection) -> None:
        conn.timer = None
        session = conn.session
        close = session.expiry_check()
        if close is not None:
            self.close(conn, close)
        elif session.state is State.OPEN:
            self.schedule_expiry(conn)
