"""One tidings node: the hub, the access rules, the token verifier and the publish path.

This is also the embedding API: code in the same process awaits ``publish``,
``send_to_user``, ``send_to_role`` and ``broadcast``. Each serializes its message once.
Every message goes through the broker: on a single instance (``broker_url =
"memory"``) the in-process broker hands it to ``route`` before ``publish`` returns, with
no task switch and no copy; in a cluster it crosses Redis once and every node's ``route``
hands it to its own hub. One path either way (``cluster/__init__.py`` has the messages).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from . import cluster, protocol
from .backends import open_broker, open_registry
from .broker import Broker, BrokerError, HistoryResult, StreamPosition
from .channels import Access, NamespacePolicy, is_valid_channel
from .cluster import Topics
from .cluster.control import ControlPlane
from .config import Settings
from .events import ClusterEventsPage, ConnectionEvents
from .hooks import BackendHooks
from .hub import Hub, Outbound
from .metrics import Metrics

# Re-exported: embedding code imports these from here.
from .publication import PublishError as PublishError
from .publication import Sent as Sent
from .publication import iso_timestamp as iso_timestamp
from .registry import Registry
from .tasks import TaskSet
from .verifier import build_verifier as build_verifier

if TYPE_CHECKING:
    from .inbox import Inbox
    from .rooms import Rooms
    from .session import Session

log = logging.getLogger("tidings.node")


class _Data(msgspec.Struct):
    data: Any = None


_DATA_DECODER = msgspec.json.Decoder(_Data)

# How many channels a node remembers it published to (see ``Node._known_channels``).
KNOWN_CHANNELS_KEPT = 4096


class Node:
    """Routing state and the publish path of one server instance.

    Args:
        settings: effective settings.
        clock: Unix time in seconds (wall clock, for tokens and timestamps).
        monotonic: monotonic seconds (for rate limits).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic
        self.clustered = settings.broker_url != "memory"
        self.hub = Hub(self._watch if self.clustered else None)
        self.access = Access(settings.namespaces)
        self.verifier = build_verifier(settings, clock, monotonic)
        self.hooks = BackendHooks(
            connect_url=settings.hook_connect_url,
            subscribe_url=settings.hook_subscribe_url,
            publish_url=settings.hook_publish_url,
            subscribe_namespaces=settings.hook_subscribe_namespaces,
            publish_namespaces=settings.hook_publish_namespaces,
            secret=settings.hook_secret,
            timeout=settings.hook_timeout,
            failure=settings.hook_failure,
            cache_seconds=settings.hook_cache_seconds,
            clock=clock,
            monotonic=monotonic,
        )
        self.started_at = clock()
        self.messages_in = 0
        # Ids are unique per node run: a random prefix, then a counter (cheap, ordered).
        self._id_prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)
        self.instance_id = self._id_prefix
        # Channels published to, each with its namespace's policy and its broker topic:
        # the grammar's regex, the policy lookup and the topic's formatting are visible
        # parts of a publication's cost. Only names that passed is_valid_channel enter
        # (``access`` is fixed for the node's life); it is emptied when full, so it
        # holds at most KNOWN_CHANNELS_KEPT names.
        self._known_channels: dict[str, tuple[NamespacePolicy, str]] = {}
        # Set by the server once its store is open; None when running without one.
        self.inbox: Inbox | None = None
        self.rooms: Rooms | None = None
        self.metrics = Metrics()
        # The last connects and disconnects, for operators (GET /api/events).
        self.events = ConnectionEvents(clock)
        self.broker: Broker = open_broker(
            settings.broker_url,
            prefix=settings.broker_prefix,
            clock=monotonic,
            encode=cluster.encode,
            decode=cluster.decode,
            command_timeout=settings.redis_command_timeout,
            ping_interval=settings.cluster_heartbeat,
        )
        self.topics = Topics(self.broker)
        self.registry: Registry | None = open_registry(
            settings.broker_url,
            self.instance_id,
            prefix=settings.broker_prefix,
            ttl=3 * settings.cluster_heartbeat,
            command_timeout=settings.redis_command_timeout,
        )
        # The message this node is publishing right now: the memory broker delivers it
        # (this very object) inside ``publish``, and ``route``'s count for it is kept.
        self._inflight: object = None
        self._inflight_count: int | None = None
        # Closes local connections for the connection control API (set by the server).
        self.disconnect_local: Callable[[list[Session], int, str], int] | None = None
        # Hands a POSTed SSE body to the session here (None: not here); set by gateway/sse.py.
        self.sse_post_local: Callable[[list[Session], str], int | None] | None = None
        self.control_plane = ControlPlane(self)
        self._tasks = TaskSet(log, "node")
        # Last position delivered per history channel (cluster only), to recover from
        # after a broker outage.
        self._positions: dict[str, tuple[int, str]] = {}
        self._beat: asyncio.Task[None] | None = None
        self.broker_errors = 0

    def new_id(self, kind: str = "msg") -> str:
        return f"{kind}_{self._id_prefix}-{next(self._ids):x}"

    def now_iso(self) -> str:
        """``iso_timestamp(self.clock())``: every publication is stamped (formatted a
        second at a time, see ``iso_timestamp``)."""
        return iso_timestamp(self.clock())

    def envelope(
        self,
        msg_id: str,
        kind: str,
        data: Any,
        *,
        channel: str | None = None,
        reply_to: str | None = None,
    ) -> bytes:
        """Serialize one server message with a given id."""
        return protocol.envelope(
            msg_id, kind, self.now_iso(), data, channel=channel, reply_to=reply_to
        )

    def message(
        self, kind: str, data: Any, *, channel: str | None = None, reply_to: str | None = None
    ) -> tuple[str, Outbound]:
        """Serialize one server message; returns its id and the shared bytes."""
        msg_id = self.new_id()
        payload = protocol.envelope(
            msg_id, kind, self.now_iso(), data, channel=channel, reply_to=reply_to
        )
        return msg_id, Outbound(payload)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, kept referenced until it ends."""
        return self._tasks.spawn(coro)

    # --- the cluster --------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch a JWKS URL's keys, start the broker and, in a cluster, the heartbeat.

        Raises:
            BrokerError: Redis cannot be reached at start.
        """
        await self.verifier.start()
        broker = self.broker
        await broker.start(self._on_publication)
        await broker.subscribe(cluster.ALL)
        await broker.subscribe(cluster.topic("node", self.instance_id))
        broker.on_restored = self._restored
        if self.registry is not None:
            await self._heartbeat_once()
            self._beat = asyncio.get_running_loop().create_task(self._heartbeat())

    async def stop(self) -> None:
        """Leave the cluster: stop heartbeats, drop this instance's registry entries; stop
        refreshing JWKS keys; close the hooks' HTTP session."""
        await self.verifier.stop()
        await self.hooks.close()
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        await self._tasks.drain(self.settings.shutdown_timeout)
        await self.topics.settle()
        if self.registry is not None:
            await self.registry.leave()
            await self.registry.close()
        await self.broker.close()

    async def _heartbeat_once(self) -> None:
        assert self.registry is not None
        try:
            await self.registry.beat(self.stats())
        except Exception as exc:
            log.debug("heartbeat failed: %s", exc)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cluster_heartbeat)
            await self._heartbeat_once()

    def _restored(self) -> None:
        """The broker link is back: publications sent meanwhile may have been missed."""
        if self.inbox is not None:
            self.inbox.resync()
        self.spawn(self._recover_channels())

    async def _recover_channels(self) -> None:
        """Catch every local channel with history up from the last position this node
        delivered; where history no longer covers the gap, tell its subscribers with a
        ``subscribed`` whose ``recovered`` is false, as a failed client recovery is told."""
        live = self.hub.channel_counts()
        for channel, (offset, epoch) in list(self._positions.items()):
            if channel not in live:
                continue
            policy = self.access.policy(channel)
            since = StreamPosition(offset, epoch)
            for attempt in range(6):
                try:
                    result = await self.history(channel, since, policy.history_size)
                    break
                except BrokerError as exc:
                    # The first call on a pooled connection from before the outage fails.
                    log.info("recovering %s after the outage: %s", channel, exc)
                    await asyncio.sleep(0.05 * 2**attempt)
            else:
                log.warning("could not recover %s after the broker outage", channel)
                continue
            name = cluster.topic("ch", channel)
            if result.recoverable:
                for pub_offset, message in result.publications:
                    if pub_offset > self._positions.get(channel, (0, ""))[0]:
                        self.route(name, message, StreamPosition(pub_offset, result.position.epoch))
                continue
            top, new_epoch = result.position
            self._positions[channel] = (top, new_epoch)
            reason = "epoch" if new_epoch != epoch else "gone"
            told = protocol.Subscribed(
                channel=channel, recovered=False, reason=reason, offset=top, epoch=new_epoch
            )
            _, out = self.message(told.kind, told, channel=channel)
            self.hub.publish(channel, out, None)

    def _watch(self, kind: str, name: str, active: bool) -> None:
        if kind == "ch" and not active:
            self._positions.pop(name, None)
        self.topics.change(cluster.topic(kind, name), active)

    async def ready(self, kind: str, name: str) -> None:
        """Wait until this node listens on the broker for ``kind:name`` (if joining)."""
        pending = self.topics.pending(cluster.topic(kind, name))
        if pending is not None:
            await asyncio.shield(pending)

    def is_ready(self, kind: str, name: str) -> bool:
        return self.topics.pending(cluster.topic(kind, name)) is None

    async def join(self, session: Session) -> bool:
        """Count a new connection in the cluster; False if its user is over the cap.

        When Redis cannot be reached the connection is let in on the local cap alone.
        """
        if self.registry is None:
            return True
        await self.ready("user", session.user_id)
        try:
            count = await self.registry.add(
                session.user_id, session.client_id, self.settings.max_connections_per_user
            )
        except Exception as exc:
            log.warning("registry unreachable (%s): cap checked on this instance only", exc)
            return True
        return count >= 0

    def leave(self, session: Session) -> None:
        """Forget a closed connection in the cluster registry."""
        registry = self.registry
        if registry is not None and session.user_id:
            self.spawn(self._leave(registry, session.user_id, session.client_id))

    @staticmethod
    async def _leave(registry: Registry, user_id: str, client_id: str) -> None:
        try:
            await registry.remove(user_id, client_id)
        except Exception as exc:
            log.debug("registry remove failed (%s); it expires with the heartbeat", exc)

    # --- delivery: one handler for both modes -------------------------------------------

    def _on_publication(
        self, topic: str, message: cluster.NodeMessage, position: StreamPosition | None
    ) -> None:
        count = self.route(topic, message, position)
        if message is self._inflight:
            self._inflight_count = count

    def route(
        self, topic: str, message: cluster.NodeMessage, position: StreamPosition | None
    ) -> int:
        """Deliver one node message to this node's connections; returns how many took it.

        The broker calls this for every publication on a topic this node listens on.
        """
        hub = self.hub
        match message:
            case cluster.Deliver(envelope=envelope, data=data):
                kind, _, name = topic.partition(":")
                if kind == "ch":
                    offset = 0
                    if position is not None:
                        offset = position.offset
                        envelope = cluster.with_position(envelope, offset, position.epoch)
                        if self.clustered:
                            self._positions[name] = (offset, position.epoch)
                    if data is msgspec.UNSET:  # from the wire: decoded only if a filter needs it
                        data = (
                            _DATA_DECODER.decode(envelope).data if hub.has_filters(name) else None
                        )
                    count = hub.publish(name, Outbound(envelope, name, offset), data)
                    self.metrics.sent["channel"] += count
                    return count
                if kind == "user":
                    count = hub.send_to_user(name, Outbound(envelope))
                elif kind == "role":
                    count = hub.send_to_role(name, Outbound(envelope))
                else:
                    kind = "broadcast"
                    count = hub.broadcast(Outbound(envelope))
                self.metrics.sent[kind] += count
                return count
            case cluster.DeliverExcept(user=user, envelope=envelope):
                count = hub.broadcast(Outbound(envelope), user)
                self.metrics.sent["broadcast"] += count
                return count
            case (
                cluster.Committed()
                | cluster.CommittedMany()
                | cluster.Told()
                | cluster.Acknowledged()
            ) as event:
                return self.inbox.receive(event) if self.inbox is not None else 0
            case cluster.ControlRequest() as request:
                self.control_plane.on_request(request)
            case cluster.ControlReply() as reply:
                self.control_plane.on_reply(reply)
        return 0

    async def send(
        self, topic: str, message: cluster.NodeMessage, policy: NamespacePolicy | None = None
    ) -> tuple[int | None, StreamPosition | None]:
        """Deliver ``message`` on ``topic`` to every node (``route`` on each).

        Returns:
            This node's deliveries when the broker made them before returning (the
            memory broker of a single instance; None in a cluster), and the stream
            position when ``policy`` keeps history.
        Raises:
            BrokerError: the cluster cannot be reached; nothing was delivered.
        """
        size = policy.history_size if policy is not None else 0
        ttl = policy.history_ttl if policy is not None else 0.0
        started = self.monotonic() if self.clustered else 0.0
        # Only a broker that delivers inside publish (the memory one) can count here;
        # with Redis the handler gets a decoded copy, never this object.
        self._inflight, self._inflight_count = message, None
        try:
            # What has no recovery (no history, not an inbox event) is guarded: never an
            # answer that it was sent while a live instance's link is resubscribing.
            guarded = not size and isinstance(message, cluster.Deliver | cluster.DeliverExcept)
            position = await self.broker.publish(
                topic, message, history_size=size, history_ttl=ttl, guarded=guarded
            )
        except BrokerError:
            self.broker_errors += 1
            raise
        finally:
            count = self._inflight_count if self._inflight is message else None
            self._inflight, self._inflight_count = None, None
        if self.clustered:
            self.metrics.broker_publish_seconds.observe(self.monotonic() - started)
        return count, position

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        """The kept publications of ``channel`` after ``since`` (see ``Broker.history``).

        Raises:
            BrokerError: the cluster cannot be reached.
        """
        return await self.broker.history(cluster.topic("ch", channel), since, limit)

    # --- publish path (also the embedding API) -----------------------------------------

    @staticmethod
    def _check_type(kind: str) -> None:
        if not kind or len(kind) > 64:
            raise PublishError("type must be 1 to 64 characters")

    def _channel(self, channel: str) -> tuple[NamespacePolicy, str]:
        """A channel's policy and broker topic.

        Raises:
            PublishError: invalid channel name.
        """
        known = self._known_channels.get(channel)
        if known is None:
            if not is_valid_channel(channel):
                raise PublishError(f"invalid channel name {channel[:80]!r}")
            known = (self.access.policy(channel), cluster.topic("ch", channel))
            if len(self._known_channels) >= KNOWN_CHANNELS_KEPT:
                self._known_channels.clear()
            self._known_channels[channel] = known
        return known

    def _publication(self, channel: str, kind: str, data: Any) -> tuple[str, cluster.Deliver]:
        self._check_type(kind)
        msg_id = self.new_id()
        envelope = protocol.envelope(msg_id, kind, self.now_iso(), data, channel=channel)
        return msg_id, cluster.Deliver(envelope, data)

    async def publish(self, channel: str, kind: str, data: Any) -> Sent:
        """Publish to a channel's subscribers on every instance (their filters apply).

        On a single instance nothing is awaited that suspends: the publication is written
        to its subscribers' sockets before this returns.

        Raises:
            PublishError: invalid channel name or type.
            BrokerError: the cluster cannot be reached; nothing was published.
        """
        started = self.monotonic()
        policy, topic = self._channel(channel)
        msg_id, message = self._publication(channel, kind, data)
        count, position = await self.send(topic, message, policy)
        self.metrics.publish_seconds.observe(self.monotonic() - started)
        return Sent(msg_id, count, position)

    def _direct(self, kind: str, data: Any) -> tuple[str, bytes]:
        """A message for connections (no channel), serialized once."""
        self._check_type(kind)
        msg_id = self.new_id()
        return msg_id, self.envelope(msg_id, kind, data)

    async def send_to_user(self, user_id: str, kind: str, data: Any) -> Sent:
        """Send to every connection of one user, on every instance."""
        msg_id, envelope = self._direct(kind, data)
        count, _ = await self.send(cluster.topic("user", user_id), cluster.Deliver(envelope))
        if count is None and self.registry is not None:
            try:
                count = await self.registry.count(user_id)
            except Exception as exc:
                log.debug("registry count failed: %s", exc)
        return Sent(msg_id, count)

    async def send_to_role(self, role: str, kind: str, data: Any) -> Sent:
        """Send to every connection whose token holds ``role``."""
        msg_id, envelope = self._direct(kind, data)
        count, _ = await self.send(cluster.topic("role", role), cluster.Deliver(envelope))
        return Sent(msg_id, count)

    async def broadcast(self, kind: str, data: Any, *, exclude_user: str | None = None) -> Sent:
        """Send to every connection, optionally skipping one user's."""
        msg_id, envelope = self._direct(kind, data)
        message: cluster.NodeMessage = (
            cluster.Deliver(envelope)
            if exclude_user is None
            else cluster.DeliverExcept(exclude_user, envelope)
        )
        count, _ = await self.send(cluster.ALL, message)
        return Sent(msg_id, count)

    # --- connection control over the cluster -------------------------------------------

    def local_sessions(self, user_id: str, client_id: str | None = None) -> list[Session]:
        from .session import Session

        return [
            c
            for c in self.hub.user_connections(user_id)
            if isinstance(c, Session) and (client_id is None or c.client_id == client_id)
        ]

    async def control(self, op: cluster.Operation, *, wait: float = 2.0) -> list[Any]:
        """Run a control operation on every instance holding the user's connections
        (``control.ControlPlane.run``)."""
        return await self.control_plane.run(op, wait=wait)

    # --- stats --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Guide 001's ``getStats`` plus message counters and uptime."""
        hub = self.hub
        return {
            "instance": self.instance_id,
            "totalConnections": hub.connection_count(),
            "totalUsers": hub.user_count(),
            "channelCounts": hub.channel_counts(),
            "messagesIn": self.messages_in,
            "messagesOut": hub.messages_out,
            "uptimeSeconds": round(self.clock() - self.started_at, 3),
            "timestamp": self.now_iso(),
        }

    async def cluster_stats(self) -> dict[str, Any]:
        """Stats over every live instance, with each instance's own
        (``control.ControlPlane.cluster_stats``)."""
        return await self.control_plane.cluster_stats()

    async def cluster_events(self, after: dict[str, int], limit: int) -> ClusterEventsPage:
        """Every live instance's connection events after its position in ``after``
        (``control.ControlPlane.cluster_events``)."""
        return await self.control_plane.cluster_events(after, limit)
