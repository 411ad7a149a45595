"""The protocol state of one client connection, without the socket.

A session starts awaiting authentication (unless the handshake carried a token), then
turns each client frame into replies and hub operations. Replies go out through
``push``, which the transport supplies; anything that must end the connection is
returned as a ``Close`` for the transport to carry out. Time comes from the node's
clocks, so tests drive a session with no event loop at all.

``Session`` is here with the interfaces it declares for its node; its larger concerns are
mixins beside it: ``opening.py`` (the connect hook, the welcome, the token's life) and
``channelcommands.py`` (subscribe, unsubscribe, publish). ``state.py`` holds ``Close`` and
``State``, ``backend.py`` the backend-hooks interface.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from msgspec import UNSET

from .. import protocol
from ..auth import AuthError, Identity
from ..hub import Outbound
from ..protocol import CloseCode, ErrorCode
from ..ratelimit import TokenBucket
from .backend import Hooks
from .channelcommands import ChannelCommands, ChannelHost
from .opening import Opening, OpeningHost
from .state import Close, State

__all__ = [
    "PRE_WELCOME_LIMIT",
    "Close",
    "Hooks",
    "Host",
    "InboxHook",
    "RoomsHook",
    "Session",
    "State",
]

log = logging.getLogger("tidings.session")


class InboxHook(Protocol):
    """What a session hands inbox commands to (``inbox.Inbox`` is one)."""

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...

    def command(self, session: Session, cmd: protocol.Command) -> Coroutine[Any, Any, None]: ...


class RoomsHook(Protocol):
    """What owns room subscriptions and commands (``rooms.Rooms`` is one)."""

    def intercept(self, session: Session, command: protocol.Command) -> bool: ...

    def on_close(self, session: Session) -> None: ...


class Host(ChannelHost, OpeningHost, Protocol):
    """What a session needs of its node (``node.Node`` is one): the only way a session
    reaches the rest of the server. Its mixins' needs (``ChannelHost``, ``OpeningHost``)
    and these."""

    messages_in: int

    @property
    def monotonic(self) -> Callable[[], float]: ...
    @property
    def inbox(self) -> InboxHook | None: ...
    @property
    def rooms(self) -> RoomsHook | None: ...

    def message(
        self, kind: str, data: Any, *, channel: str | None = None, reply_to: str | None = None
    ) -> tuple[str, Outbound]: ...

    def leave(self, session: Session) -> None: ...


# Messages kept for a connection between joining the hub and its welcome (one store query).
PRE_WELCOME_LIMIT = 1000


def _no_push(message: Outbound) -> bool:
    return False


class Session(Opening, ChannelCommands):
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
        "claims",
        "client_id",
        "connected_at",
        "expires_at",
        "filters",
        "info",
        "node",
        "push",
        "remote",
        "roles",
        "state",
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
    ) -> None:
        self.node: Host = node
        self.client_id = client_id
        # The hub calls ``push`` directly: keep it a plain attribute (the fan-out hot path).
        self.push = push
        self.user_id_param = user_id_param
        self.remote: str | None = None  # the peer's address, for operators
        # The id of the ``auth`` message that opened the connection: its welcome answers it.
        self.welcome_reply_to: str | None = None
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
