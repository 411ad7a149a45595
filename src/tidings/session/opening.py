"""A session's opening and token life: the connect hook, the welcome, a refresh, the auth
deadline and the token's expiry. A mixin of ``Session``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from msgspec import UNSET

from .. import protocol
from ..auth import Identity
from ..channels import Access, is_valid_channel
from ..config import Settings
from ..filters import Filter
from ..metrics import Metrics
from ..protocol import CloseCode
from ..publication import iso_timestamp
from .backend import Hooks
from .state import Close, State

log = logging.getLogger("tidings.session")


class OpeningHost(Protocol):
    """What opening a session needs of the node (``session.Host`` extends it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def access(self) -> Access: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def hooks(self) -> Hooks: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def inbox(self) -> object | None: ...

    def now_iso(self) -> str: ...


def iso_or_none(unix: float | None) -> str | None:
    return None if unix is None else iso_timestamp(unix)


class Opening:
    """The connect hook, the welcome and the token's life, for ``Session``."""

    if TYPE_CHECKING:
        node: OpeningHost
        state: State
        client_id: str
        user_id: str
        roles: tuple[str, ...]
        expires_at: float | None
        claims: dict[str, Any]
        info: Any
        welcome_reply_to: str | None

        def send(
            self,
            message: protocol.ServerMessage,
            *,
            channel: str | None = None,
            reply_to: str | None = None,
        ) -> None: ...

        def send_welcome(
            self, unread: int | None = None, reply_to: str | None = None, *, inbox: bool = True
        ) -> None: ...

        def _subscribe_now(
            self,
            channel: str,
            flt: Filter | None,
            cmd: protocol.Subscribe | None,
            info: Any,
            *,
            by_server: bool = False,
        ) -> None: ...

    else:
        # Session has __slots__ (ten thousand idle sessions): a mixin adds none of its own.
        # Hidden from mypy, which would refuse the assignments to Session's slots here.
        __slots__ = ()

    def _refresh(self, identity: Identity, reply_to: str | None) -> Close | None:
        if identity.user_id != self.user_id:
            return Close(CloseCode.USER_MISMATCH, "refreshed token names another user")
        self.expires_at = identity.expires_at
        self.send(protocol.Refreshed(expiresAt=iso_or_none(self.expires_at)), reply_to=reply_to)
        return None

    async def ask_backend(self, transport: str) -> Close | None:
        """The connect hook, for a connection just opened (the transport calls it before
        the welcome): close it if the backend says no; else keep its info, subscribe it
        to the backend's channels, and send the welcome when no inbox will."""
        hooks = self.node.hooks
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
            expiresAt=iso_or_none(self.expires_at),
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
