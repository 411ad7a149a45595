"""The protocol state of one client connection, without the socket.

A session starts awaiting authentication (unless the handshake carried a token), then
turns each client frame into replies and hub operations. Replies go out through
``push``, which the transport supplies; anything that must end the connection is
returned as a ``Close`` for the transport to carry out. Time comes from the node's
clocks, so tests drive a session with no event loop at all.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from msgspec import UNSET

from . import cluster, protocol
from .auth import AuthError, Identity, Verifier
from .broker import BrokerError, HistoryResult, StreamPosition
from .channels import Access, NamespacePolicy, is_valid_channel
from .config import Settings
from .filters import Filter, FilterError
from .hub import Hub, Outbound
from .metrics import Metrics
from .protocol import CloseCode, ErrorCode
from .publication import PublishError, Sent, iso_timestamp
from .ratelimit import TokenBucket

if TYPE_CHECKING:
    # Only the type: hooks.py is an adapter (it speaks HTTP to the backend).
    from .hooks import Decision

log = logging.getLogger("tidings.session")


class InboxHook(Protocol):
    """What a session hands inbox commands to (``inbox.Inbox`` is one)."""

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...

    def command(self, session: Session, cmd: protocol.Command) -> Coroutine[Any, Any, None]: ...


class RoomsHook(Protocol):
    """What owns room subscriptions and commands (``rooms.Rooms`` is one)."""

    def intercept(self, session: Session, command: protocol.Command) -> bool: ...

    def on_close(self, session: Session) -> None: ...


class Hooks(Protocol):
    """The backend's say on connect, subscribe and client publish (``hooks.BackendHooks``
    is one); a URL of None means no hook for that event."""

    @property
    def connect_url(self) -> str | None: ...
    @property
    def subscribe_url(self) -> str | None: ...
    @property
    def publish_url(self) -> str | None: ...

    def decides_subscribe(self, channel: str) -> bool: ...

    def decides_publish(self, channel: str) -> bool: ...

    async def connect(
        self,
        user: str,
        roles: tuple[str, ...],
        client: str,
        transport: str,
        claims: dict[str, Any],
        *,
        refresh: bool = False,
    ) -> Decision: ...

    async def subscribe(
        self, user: str, roles: tuple[str, ...], client: str, channel: str
    ) -> Decision: ...

    async def publish(
        self, user: str, roles: tuple[str, ...], client: str, channel: str, kind: str, data: Any
    ) -> Decision: ...


class Host(Protocol):
    """What a session needs of its node (``node.Node`` is one): the only way a session
    reaches the rest of the server."""

    messages_in: int

    @property
    def settings(self) -> Settings: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def access(self) -> Access: ...
    @property
    def verifier(self) -> Verifier: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def monotonic(self) -> Callable[[], float]: ...
    @property
    def inbox(self) -> InboxHook | None: ...
    @property
    def rooms(self) -> RoomsHook | None: ...
    @property
    def hooks(self) -> Hooks: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def now_iso(self) -> str: ...

    def message(
        self, kind: str, data: Any, *, channel: str | None = None, reply_to: str | None = None
    ) -> tuple[str, Outbound]: ...

    async def publish(self, channel: str, kind: str, data: Any) -> Sent: ...

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult: ...

    async def ready(self, kind: str, name: str) -> None: ...

    def is_ready(self, kind: str, name: str) -> bool: ...

    def leave(self, session: Session) -> None: ...


# Messages kept for a connection between joining the hub and its welcome (one store query).
PRE_WELCOME_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Close:
    """An instruction to close the connection with a code and a reason."""

    code: int  # a CloseCode, or an operator's own 4000-4999 code
    reason: str


class State(enum.Enum):
    AWAITING_AUTH = "awaiting_auth"
    OPEN = "open"
    CLOSED = "closed"


def _no_push(message: Outbound) -> bool:
    return False


class Session:
    """One connection's protocol state; it is also the hub's view of the connection.

    Args:
        node: the node it belongs to.
        client_id: unique id of this connection.
        push: queues a message to the client without blocking; False once closing.
        user_id_param: the ``userId`` query parameter, which must match the token.
    """

    # Ten thousand idle sessions: slots keep each one small.
    __slots__ = (
        "_abuse",
        "_bucket",
        "_catching_up",
        "_deciding",
        "_pre_welcome",
        "_publish_tail",
        "_transport_push",
        "ack_mode",
        "awaiting",
        "claims",
        "client_id",
        "close_later",
        "connected_at",
        "expires_at",
        "expiry_changed",
        "filters",
        "inbox_held",
        "info",
        "last_seq",
        "node",
        "push",
        "remote",
        "roles",
        "seen_seq",
        "state",
        "transport_kind",
        "user_id",
        "user_id_param",
        "welcome_reply_to",
    )

    def __init__(
        self,
        node: Host,
        client_id: str,
        push: Callable[[Outbound], bool] = _no_push,
        *,
        user_id_param: str | None = None,
        last_seq: int | None = None,
        ack_mode: bool = False,
    ) -> None:
        self.node = node
        self.client_id = client_id
        # The hub calls ``push`` directly: keep it a plain attribute (the fan-out hot path).
        self.push = push
        self.user_id_param = user_id_param
        self.remote: str | None = None  # the peer's address, for operators
        # The inbox position the client resumes from (None: every unacknowledged one).
        self.last_seq = last_seq
        # While the inbox catches this connection up, live notifications wait here.
        self.inbox_held: list[Any] | None = None
        self.welcome_reply_to: str | None = None
        # A client that acknowledges (``?ack=1``, or once it sends ``ack``) gets
        # unacknowledged notifications again after a timeout; ``awaiting`` holds them:
        # id -> [notification, attempts, due time].
        self.ack_mode = ack_mode
        self.awaiting: dict[str, list[Any]] = {}
        # The highest inbox seq pushed to this connection (a resync resumes after it).
        self.seen_seq = 0
        # Channels being caught up (subscribe with recovery, or awaiting the broker):
        # their live publications wait here, so the reply and history go first.
        self._catching_up: dict[str, list[Outbound]] = {}
        self._pre_welcome: list[Outbound] | None = None
        self._transport_push: Callable[[Outbound], bool] | None = None
        self.state = State.AWAITING_AUTH
        self.user_id = ""
        self.roles: tuple[str, ...] = ()
        self.expires_at: float | None = None
        self.connected_at = node.clock()
        self.filters: dict[str, dict[str, Any] | None] = {}
        self.claims: dict[str, Any] = {}  # the token's, for the connect hook
        self.info: Any = UNSET  # the connect hook's data, shown in the welcome
        self.transport_kind = ""  # "websocket" or "sse", for the connect hook
        # Set by the transport: what an answer that arrives later (a refresh the connect
        # hook decides) uses to close the connection, and to reschedule its expiry.
        self.close_later: Callable[[Close], None] | None = None
        self.expiry_changed: Callable[[], None] | None = None
        # Channels whose subscribe hook is still deciding (an unsubscribe drops them).
        self._deciding: set[str] = set()
        # The last client publication waiting on the publish hook: the next waits for it.
        self._publish_tail: asyncio.Task[None] | None = None
        settings = node.settings
        self._bucket: TokenBucket | None = None
        self._abuse: TokenBucket | None = None
        if settings.rate_limit_enabled:
            rate = settings.rate_limit_per_second
            self._bucket = TokenBucket(rate, settings.rate_limit_burst, node.monotonic)
            self._abuse = TokenBucket(rate, settings.rate_limit_close_after, node.monotonic)

    def __repr__(self) -> str:
        return f"<Session {self.client_id} user={self.user_id!r} {self.state.value}>"

    # --- authentication -----------------------------------------------------------------

    def authenticate(self, token: str | None) -> Close | None:
        """Authenticate with a handshake token; with None, wait for an ``auth`` message."""
        if token is None:
            return None
        return self._accept_token(token, None, None)

    def _accept_token(
        self, token: str, claimed_user: str | None, reply_to: str | None
    ) -> Close | None:
        if not token.strip():
            # An empty token is no credential at all: 4001 as for an absent one, so a client
            # that lost its token is told to get one rather than that its token is bad.
            self.node.metrics.auth_failures["missing"] += 1
            if self.state is State.OPEN:
                self.error(ErrorCode.UNAUTHORIZED, "missing token", reply_to=reply_to)
                return None
            return Close(CloseCode.MISSING_CREDENTIALS, "missing authentication credentials")
        try:
            identity = self.node.verifier.verify(token)
        except AuthError as exc:
            log.warning("rejected token for %s: %s", self.client_id, exc.reason)
            if exc.unavailable:
                # The identity provider's keys could not be fetched: the token may be fine.
                self.node.metrics.auth_failures["unavailable"] += 1
                reason = "token keys unavailable, try again later"
                if self.state is State.OPEN:
                    self.error(ErrorCode.UNAVAILABLE, reason, reply_to=reply_to)
                    return None
                return Close(CloseCode.INTERNAL_ERROR, reason)
            self.node.metrics.auth_failures["expired" if exc.expired else "invalid"] += 1
            reason = "token expired" if exc.expired else "invalid or expired token"
            if self.state is State.OPEN:
                # A failed refresh leaves the connection on its current, still valid token.
                self.error(ErrorCode.UNAUTHORIZED, reason, reply_to=reply_to)
                return None
            return Close(CloseCode.INVALID_TOKEN, reason)
        for claimed in (self.user_id_param, claimed_user):
            if claimed is not None and claimed != identity.user_id:
                log.warning("user id mismatch on %s", self.client_id)
                self.node.metrics.auth_failures["user_mismatch"] += 1
                return Close(CloseCode.USER_MISMATCH, "user id mismatch")
        if self.state is State.OPEN:
            return self._refresh(identity, reply_to)
        return self._open(identity, reply_to)

    def _open(self, identity: Identity, reply_to: str | None) -> Close | None:
        hub = self.node.hub
        settings = self.node.settings
        if len(hub.user_connections(identity.user_id)) >= settings.max_connections_per_user:
            return Close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections for this user")
        self.user_id = identity.user_id
        self.roles = identity.roles
        self.expires_at = identity.expires_at
        self.claims = identity.claims
        self.state = State.OPEN
        if self.node.inbox is not None or self.node.hooks.connect_url is not None:
            # The welcome carries the unread count, which needs the store, and the connect
            # hook's info: the transport sends it (``ask_backend``, then ``send_welcome``)
            # before reading anything else from the client.
            self.inbox_held = []
            self.welcome_reply_to = reply_to
            # Joined now, so caps count it; but until the welcome is written, whatever the
            # hub sends it (a broadcast, another tab's read receipt) waits in line.
            self._pre_welcome = []
            self._gate()
            hub.add(self)
            return None
        hub.add(self)
        self.send_welcome(None, reply_to)
        return None

    def _hold(self, message: Outbound) -> bool:
        """``push`` while the welcome or a channel's catch-up is pending: hold back what
        must follow them; everything else goes straight out."""
        held = self._pre_welcome
        if held is None:
            queue = self._catching_up.get(message.channel) if message.channel else None
            if queue is None:
                assert self._transport_push is not None
                return self._transport_push(message)
            held = queue
        if len(held) >= PRE_WELCOME_LIMIT:
            return False
        held.append(message)
        return True

    def _gate(self) -> None:
        """Route ``push`` through ``_hold`` (the fan-out path pays for it only meanwhile)."""
        if self._transport_push is None:
            self._transport_push = self.push
            self.push = self._hold

    def _ungate(self) -> None:
        if self._pre_welcome is None and not self._catching_up and self._transport_push:
            self.push, self._transport_push = self._transport_push, None

    def send_welcome(
        self, unread: int | None = None, reply_to: str | None = None, *, inbox: bool = True
    ) -> None:
        """Send the welcome, with ``unreadCount`` when there is an inbox (``inbox`` False:
        the store failed, said as ``inboxAvailable: false``), then whatever arrived for
        this connection while it was being prepared."""
        held, self._pre_welcome = self._pre_welcome, None
        self._ungate()
        welcome = self._welcome()
        if unread is not None:
            welcome.unreadCount = unread
        if not inbox:
            welcome.inboxAvailable = False
        self.send(welcome, reply_to=reply_to)
        for message in held or ():
            self.push(message)

    def _refresh(self, identity: Identity, reply_to: str | None) -> Close | None:
        if identity.user_id != self.user_id:
            return Close(CloseCode.USER_MISMATCH, "refreshed token names another user")
        if self.node.hooks.connect_url is not None:
            # The backend that let the connection in decides whether it stays on the new
            # token (a suspended account, a revoked session); the old token holds meanwhile.
            self.node.spawn(self._refresh_hooked(identity, reply_to))
            return None
        self._adopt(identity, reply_to)
        return None

    def _adopt(self, identity: Identity, reply_to: str | None) -> None:
        self.expires_at = identity.expires_at
        self.claims = identity.claims
        self.send(protocol.Refreshed(expiresAt=_iso_or_none(self.expires_at)), reply_to=reply_to)

    async def _refresh_hooked(self, identity: Identity, reply_to: str | None) -> None:
        decision = await self.node.hooks.connect(
            self.user_id,
            self.roles,
            self.client_id,
            self.transport_kind,
            identity.claims,
            refresh=True,
        )
        if self.state is not State.OPEN:  # closed while the backend decided
            return
        if not decision.allow:
            log.info(
                "connect hook denied the refresh of %s (user %r)", self.client_id, self.user_id
            )
            if self.close_later is not None:
                reason = decision.why.encode()[:120].decode(errors="ignore")
                self.close_later(Close(CloseCode.BACKEND_DENIED, reason))
            return
        expires_at = self.expires_at
        self._adopt(identity, reply_to)
        if self.expires_at != expires_at and self.expiry_changed is not None:
            self.expiry_changed()

    async def ask_backend(self, transport: str) -> Close | None:
        """The connect hook, for a connection just opened (the transport calls it before
        the welcome): close it if the backend says no; else keep its info, subscribe it
        to the backend's channels, and send the welcome when no inbox will."""
        hooks = self.node.hooks
        self.transport_kind = transport
        if hooks.connect_url is None or self.state is not State.OPEN:
            return None
        decision = await hooks.connect(
            self.user_id, self.roles, self.client_id, transport, self.claims
        )
        if not self.is_open():  # closed while the backend decided
            return None
        if not decision.allow:
            log.info("connect hook denied %s (user %r)", self.client_id, self.user_id)
            reason = decision.why.encode()[:120].decode(errors="ignore")
            return Close(CloseCode.BACKEND_DENIED, reason)
        self.info = decision.data
        for channel in decision.channels:
            if is_valid_channel(channel):
                self._subscribe_now(channel, None, None, UNSET, by_server=True)
            else:
                log.warning("connect hook: invalid channel name %r ignored", channel[:255])
        if self.node.inbox is None:
            self.send_welcome(None, self.welcome_reply_to)
        return None

    def is_open(self) -> bool:
        return self.state is State.OPEN

    def _welcome(self) -> protocol.Welcome:
        s = self.node.settings
        return protocol.Welcome(
            info=self.info,
            clientId=self.client_id,
            userId=self.user_id,
            roles=list(self.roles),
            role=self.roles[0] if self.roles else None,
            serverTime=self.node.now_iso(),
            expiresAt=_iso_or_none(self.expires_at),
            availableSubscriptions=self.node.access.available(self.user_id, self.roles),
            heartbeatInterval=s.heartbeat_interval,
            limits=protocol.Limits(s.max_message_bytes, s.max_subscriptions),
            protocolVersion=protocol.PROTOCOL_VERSION,
        )

    def auth_deadline(self) -> Close | None:
        """Called when the auth timeout fires: close if still unauthenticated."""
        if self.state is State.AWAITING_AUTH:
            self.node.metrics.auth_failures["timeout"] += 1
            return Close(CloseCode.AUTH_TIMEOUT, "authentication timeout")
        return None

    def expiry_check(self) -> Close | None:
        """Called when the token's expiry passes: close unless it was refreshed."""
        if self.state is not State.OPEN or self.expires_at is None:
            return None
        if self.node.clock() > self.expires_at + self.node.settings.jwt_leeway:
            return Close(CloseCode.TOKEN_EXPIRED, "token expired")
        return None

    # --- frames -------------------------------------------------------------------------

    def receive(self, frame: bytes | str) -> Close | None:
        """Handle one client text frame."""
        if self.state is State.CLOSED:
            return None
        self.node.messages_in += 1
        if self._bucket is not None and not self._bucket.take():
            assert self._abuse is not None
            if not self._abuse.take():
                log.warning("closing %s (user %r): sustained flood", self.client_id, self.user_id)
                return Close(CloseCode.RATE_LIMITED, "rate limit exceeded")
            self.node.metrics.rate_limited += 1
            self.error(ErrorCode.RATE_LIMIT, "too many messages; slow down")
            return None
        try:
            command = protocol.decode_command(frame)
        except protocol.ProtocolError as exc:
            # Before authentication too: a frame that is not a command is answered, and
            # the connection still has until its auth deadline to send ``auth``.
            self.node.metrics.messages_in["invalid"] += 1
            self.error(exc.code, exc.message, reply_to=exc.request_id)
            return None
        self.node.metrics.messages_in[command.name] += 1
        if isinstance(command, protocol.Ping):
            self.send(
                protocol.PongShout() if command.shout else protocol.Pong(), reply_to=command.id
            )
            return None
        if isinstance(command, protocol.Auth):
            return self._accept_token(command.token, command.userId, command.id)
        if self.state is State.AWAITING_AUTH:
            self.node.metrics.auth_failures["missing"] += 1
            return Close(CloseCode.MISSING_CREDENTIALS, "missing authentication credentials")
        try:
            self._dispatch(command)
        except Exception:
            log.exception("error handling %s from %s", command.name, self.client_id)
            self.error(ErrorCode.SERVER_ERROR, "internal error", reply_to=command.id)
        return None

    def _dispatch(self, command: protocol.Command) -> None:
        # Rooms check membership (in the store) before room subscriptions, and own the room
        # commands: see rooms.Rooms.intercept.
        rooms = self.node.rooms
        if rooms is not None and rooms.intercept(self, command):
            return
        if isinstance(command, protocol.Subscribe):
            self._subscribe(command)
        elif isinstance(command, protocol.Unsubscribe):
            self._unsubscribe(command)
        elif isinstance(command, protocol.GetStatus):
            self.send(self.status(), reply_to=command.id)
        elif isinstance(command, protocol.Publish):
            self._publish(command)
        elif isinstance(command, protocol.InboxCommand):
            inbox = self.node.inbox
            if inbox is None:
                self.error(ErrorCode.SERVER_ERROR, "this server has no inbox", reply_to=command.id)
            elif (
                isinstance(command, protocol.IdsCommand)
                and len(command.id_list()) > protocol.MAX_IDS
            ):
                self.error(
                    ErrorCode.INVALID_MESSAGE,
                    f"at most {protocol.MAX_IDS} ids",
                    reply_to=command.id,
                )
            else:
                inbox.spawn(inbox.command(self, command))
        else:  # pragma: no cover - COMMANDS and this dispatch are kept in step
            raise AssertionError(command)

    def _subscribe(self, cmd: protocol.Subscribe) -> None:
        channel = cmd.channel
        if not is_valid_channel(channel):
            self.error(
                ErrorCode.INVALID_MESSAGE,
                "invalid channel name",
                reply_to=cmd.id,
                channel=channel[:255],
            )
            return
        if cmd.token is not None:
            # A subscription token is the backend's word for this channel: no other check.
            denied = self._token_refusal(cmd.token, channel)
        else:
            denied = self.node.access.can_subscribe(channel, self.user_id, self.roles)
        if denied:
            self.error(ErrorCode.FORBIDDEN, denied, reply_to=cmd.id, channel=channel)
            return
        flt = None
        if cmd.filters:
            try:
                flt = Filter(cmd.filters)
            except FilterError as exc:
                self.error(ErrorCode.INVALID_MESSAGE, str(exc), reply_to=cmd.id, channel=channel)
                return
        if cmd.token is None and self.node.hooks.decides_subscribe(channel):
            self._deciding.add(channel)
            self.node.spawn(self._subscribe_hooked(cmd, flt))
            return
        self._subscribe_now(channel, flt, cmd, UNSET)

    def _token_refusal(self, token: str, channel: str) -> str | None:
        """Why a subscription token does not open ``channel`` to this user, or None."""
        try:
            identity = self.node.verifier.verify(token)
        except AuthError as exc:
            log.info("subscription token refused on %s: %s", self.client_id, exc.reason)
            return "invalid subscription token"
        if identity.claims.get("channel") != channel:
            return "the subscription token is for another channel"
        if identity.user_id != self.user_id:
            return "the subscription token is for another user"
        return None

    async def _subscribe_hooked(self, cmd: protocol.Subscribe, flt: Filter | None) -> None:
        channel = cmd.channel
        decision = await self.node.hooks.subscribe(
            self.user_id, self.roles, self.client_id, channel
        )
        if self.state is not State.OPEN or channel not in self._deciding:
            return  # closed, or unsubscribed while the backend decided
        self._deciding.discard(channel)
        if not decision.allow:
            self.error(ErrorCode.FORBIDDEN, decision.why, reply_to=cmd.id, channel=channel)
            return
        self._subscribe_now(channel, flt, cmd, decision.data)

    def _subscribe_now(
        self,
        channel: str,
        flt: Filter | None,
        cmd: protocol.Subscribe | None,
        info: Any,
        *,
        by_server: bool = False,
    ) -> None:
        """Subscribe (every check passed): the reply, after history when the namespace
        keeps it. ``cmd`` is None for a subscription the server made."""
        reply_to = cmd.id if cmd is not None else None
        hub = self.node.hub
        if (
            channel not in self.filters
            and hub.subscription_count(self) >= self.node.settings.max_subscriptions
        ):
            self.error(
                ErrorCode.LIMIT_EXCEEDED,
                "too many subscriptions",
                reply_to=reply_to,
                channel=channel,
            )
            return
        filters = dict(cmd.filters) if cmd is not None and cmd.filters else None
        policy = self.node.access.policy(channel)
        hub.subscribe(self, channel, flt)
        self.filters[channel] = filters
        reply = protocol.Subscribed(
            channel=channel, filters=filters, info=info, byServer=True if by_server else UNSET
        )
        if not policy.history_size and self.node.is_ready("ch", channel):
            self.send(reply, channel=channel, reply_to=reply_to)
            return
        # The broker must be listening (a cluster's first subscriber here) or history
        # read before the reply: hold this channel's live publications until then.
        self._catching_up[channel] = []
        self._gate()
        since = cmd.since if cmd is not None else None
        self.node.spawn(self._finish_subscribe(channel, since, reply_to, reply, policy))

    async def _finish_subscribe(
        self,
        channel: str,
        resume: protocol.Position | None,
        reply_to: str | None,
        reply: protocol.Subscribed,
        policy: NamespacePolicy,
    ) -> None:
        top = 0
        recovered: list[tuple[int, cluster.Deliver]] = []
        epoch = ""
        try:
            await self.node.ready("ch", channel)
            if policy.history_size:
                since = None if resume is None else StreamPosition(resume.offset, resume.epoch)
                result = await self.node.history(channel, since, policy.history_size)
                top, epoch = result.position
                reply.offset, reply.epoch = top, epoch
                if since is not None:
                    reply.recovered = result.recoverable
                    if not result.recoverable:
                        reply.reason = "epoch" if since.epoch != epoch else "gone"
                    recovered = result.publications
                    if result.recoverable:
                        self.node.metrics.recovered += 1
        except BrokerError as exc:
            log.warning("subscribe to %s: history unavailable (%s)", channel, exc)
            reply.recovered = False
            reply.reason = "unavailable"
        finally:
            held = self._catching_up.pop(channel, [])
            self._ungate()
        if self.state is not State.OPEN or not self.node.hub.is_subscribed(self, channel):
            return  # closed or unsubscribed meanwhile
        self.send(reply, channel=channel, reply_to=reply_to)
        for offset, publication in recovered:
            envelope = cluster.with_position(publication.envelope, offset, epoch, recovered=True)
            self.push(Outbound(envelope, channel, offset))
        last = recovered[-1][0] if recovered else 0
        for message in held:
            # What history already covered is not sent twice.
            if not (last and message.offset and message.offset <= last):
                self.push(message)

    def _unsubscribe(self, cmd: protocol.Unsubscribe) -> None:
        if not is_valid_channel(cmd.channel):
            self.error(
                ErrorCode.INVALID_MESSAGE,
                "invalid channel name",
                reply_to=cmd.id,
                channel=cmd.channel[:255],
            )
            return
        self._deciding.discard(cmd.channel)
        self.node.hub.unsubscribe(self, cmd.channel)
        self.filters.pop(cmd.channel, None)
        if self._catching_up.pop(cmd.channel, None) is not None:
            self._ungate()
        # Unsubscribing from a channel one is not on is not an error: the end state holds.
        self.send(protocol.Unsubscribed(channel=cmd.channel), channel=cmd.channel, reply_to=cmd.id)

    def _publish(self, cmd: protocol.Publish) -> None:
        denied = self.node.access.can_publish(cmd.channel, self.user_id, self.roles)
        if not denied and cmd.event.lower() in protocol.SERVER_TYPES:
            denied = f"{cmd.event[:64]!r} is a type only the server sends"
        if denied:
            self.error(ErrorCode.FORBIDDEN, denied, reply_to=cmd.id, channel=cmd.channel)
            return
        ask = self.node.hooks.decides_publish(cmd.channel)
        previous = self._publish_tail
        if ask or (previous is not None and not previous.done()):
            # Behind a publication the backend is still deciding, every later one waits.
            self._publish_tail = self.node.spawn(self._publish_hooked(cmd, previous, ask))
            return
        # Tasks start in order and the broker takes publications in call order, so one
        # client's publications keep their order.
        self.node.spawn(self._publish_async(cmd))

    async def _publish_hooked(
        self, cmd: protocol.Publish, previous: asyncio.Task[None] | None, ask: bool
    ) -> None:
        if previous is not None:
            # The client's order holds whatever the backend answers first; how the
            # previous one ended (denied, failed) does not matter here.
            await asyncio.wait([previous])
        if not ask:
            await self._publish_async(cmd)
            return
        decision = await self.node.hooks.publish(
            self.user_id, self.roles, self.client_id, cmd.channel, cmd.event, cmd.data
        )
        if self.state is not State.OPEN:
            return
        if not decision.allow:
            self.error(ErrorCode.FORBIDDEN, decision.why, reply_to=cmd.id, channel=cmd.channel)
            return
        if decision.data is not UNSET:
            cmd = msgspec.structs.replace(cmd, data=decision.data)
        await self._publish_async(cmd)

    async def _publish_async(self, cmd: protocol.Publish) -> None:
        try:
            sent = await self.node.publish(cmd.channel, cmd.event, cmd.data)
        except PublishError as exc:
            self.error(ErrorCode.INVALID_MESSAGE, str(exc), reply_to=cmd.id)
            return
        except BrokerError:
            self.error(
                ErrorCode.UNAVAILABLE,
                "the cluster is unreachable; not published",
                reply_to=cmd.id,
                channel=cmd.channel,
            )
            return
        self._published(cmd, sent.id)

    def _published(self, cmd: protocol.Publish, msg_id: str) -> None:
        self.send(
            protocol.Published(channel=cmd.channel, messageId=msg_id),
            channel=cmd.channel,
            reply_to=cmd.id,
        )

    def status(self) -> protocol.Status:
        """This connection as ``get_status`` reports it."""
        return protocol.Status(
            clientId=self.client_id,
            userId=self.user_id,
            roles=list(self.roles),
            connectedAt=_iso_or_none(self.connected_at),
            expiresAt=_iso_or_none(self.expires_at),
            subscriptions=[
                protocol.SubscriptionInfo(ch, f) for ch, f in sorted(self.filters.items())
            ],
        )

    def unsubscribe(self, channel: str) -> bool:
        """Drop one subscription on the server's initiative and tell the client."""
        if channel not in self.filters:
            return False
        self.node.hub.unsubscribe(self, channel)
        del self.filters[channel]
        if self._catching_up.pop(channel, None) is not None:
            self._ungate()
        self.send(protocol.Unsubscribed(channel=channel, byServer=True), channel=channel)
        return True

    def close(self) -> None:
        """Leave the hub; idempotent."""
        if self.state is State.OPEN:
            self.node.hub.remove(self)
            self.node.leave(self)
            if self.node.rooms is not None:
                self.node.rooms.on_close(self)
        self.state = State.CLOSED

    # --- output -------------------------------------------------------------------------

    def send(
        self,
        message: protocol.ServerMessage,
        *,
        channel: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        _, out = self.node.message(message.kind, message, channel=channel, reply_to=reply_to)
        if self.push(out):
            self.node.hub.messages_out += 1
            self.node.metrics.sent["reply"] += 1

    def error(
        self,
        code: ErrorCode,
        message: str,
        *,
        reply_to: str | None = None,
        channel: str | None = None,
    ) -> None:
        error = protocol.Error(code=code, message=message)
        if channel is not None:
            error.details = protocol.ErrorDetails(channel)
        self.send(error, reply_to=reply_to)


def _iso_or_none(unix: float | None) -> str | None:
    return None if unix is None else iso_timestamp(unix)
