"""A session's channel commands: subscribe (with the backend's say, a subscription token,
history and recovery), unsubscribe, and client publish (in the client's order, behind
the publish hook), and ``get_status``. A mixin of ``Session``, apart because it is its
largest concern."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from msgspec import UNSET

from .. import cluster, protocol
from ..auth import AuthError, Verifier
from ..broker import BrokerError, HistoryResult, StreamPosition
from ..channels import Access, NamespacePolicy, is_valid_channel
from ..config import Settings
from ..filters import Filter, FilterError
from ..hub import Hub, Outbound
from ..metrics import Metrics
from ..protocol import ErrorCode
from ..publication import PublishError, Sent
from .backend import Hooks
from .opening import iso_or_none
from .state import State

log = logging.getLogger("tidings.session")


class ChannelHost(Protocol):
    """What channel commands need of the node (``session.Host`` extends it)."""

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
    def hooks(self) -> Hooks: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    async def publish(self, channel: str, kind: str, data: Any) -> Sent: ...

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult: ...

    async def ready(self, kind: str, name: str) -> None: ...

    def is_ready(self, kind: str, name: str) -> bool: ...


class ChannelCommands:
    """Subscribe, unsubscribe and publish, for ``Session``."""

    if TYPE_CHECKING:
        node: ChannelHost
        state: State
        client_id: str
        user_id: str
        roles: tuple[str, ...]
        filters: dict[str, dict[str, Any] | None]
        connected_at: float
        expires_at: float | None
        push: Callable[[Outbound], bool]
        _catching_up: dict[str, list[Outbound]]
        _deciding: set[str]
        _publish_tail: asyncio.Task[None] | None

        def send(
            self,
            message: protocol.ServerMessage,
            *,
            channel: str | None = None,
            reply_to: str | None = None,
        ) -> None: ...

        def error(
            self,
            code: ErrorCode,
            message: str,
            *,
            reply_to: str | None = None,
            channel: str | None = None,
        ) -> None: ...

        def _gate(self) -> None: ...

        def _ungate(self) -> None: ...

    else:
        # Session has __slots__ (ten thousand idle sessions): a mixin adds none of its own.
        # Hidden from mypy, which would refuse the assignments to Session's slots here.
        __slots__ = ()

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

    def status(self) -> protocol.Status:
        """This connection as ``get_status`` reports it."""
        return protocol.Status(
            clientId=self.client_id,
            userId=self.user_id,
            roles=list(self.roles),
            connectedAt=iso_or_none(self.connected_at),
            expiresAt=iso_or_none(self.expires_at),
            subscriptions=[
                protocol.SubscriptionInfo(ch, f) for ch, f in sorted(self.filters.items())
            ],
        )
