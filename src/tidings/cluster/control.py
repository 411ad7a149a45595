"""Connection control and cluster stats: requests every instance answers over the broker.

The connection control API (list a user's connections, disconnect them, unsubscribe
them) and ``GET /api/stats?scope=cluster`` need every instance's answer. A request goes
out once (``C`` on ``user:<id>`` to the instances holding the user's connections, or on
``all`` for stats); each instance answers on the asker's ``node:<id>`` topic (``R``), and
the asker waits until the answers account for every connection the registry knows of, or
two seconds. On a single instance the operation is simply applied locally.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from .. import cluster, protocol
from ..broker import BrokerError
from ..events import ClusterEventsPage, EventsPage, merge

if TYPE_CHECKING:
    from ..events import ConnectionEvents
    from ..registry import Registry
    from ..session import Session

log = logging.getLogger("tidings.control")


class ConnectionInfo(msgspec.Struct, kw_only=True):
    """One live connection as ``GET /api/users/{id}/connections`` lists it (each instance
    answers with its own, as plain JSON)."""

    clientId: str
    userId: str
    roles: list[str]
    connectedAt: str | None
    expiresAt: str | None
    subscriptions: list[protocol.SubscriptionInfo]
    transport: str  # "websocket" or "sse" (a string: more transports may come)
    remoteAddress: str | None
    instance: str


class RoomsControl(Protocol):
    def control(
        self, sessions: list[Session], op: cluster.RoomBlocks | cluster.RoomEvict
    ) -> int: ...


class Host(Protocol):
    """What the control plane needs of its node (``node.Node`` is one)."""

    @property
    def instance_id(self) -> str: ...
    @property
    def registry(self) -> Registry | None: ...
    @property
    def rooms(self) -> RoomsControl | None: ...
    @property
    def disconnect_local(self) -> Callable[[list[Session], int, str], int] | None: ...
    @property
    def sse_post_local(self) -> Callable[[list[Session], str], int | None] | None: ...
    @property
    def events(self) -> ConnectionEvents: ...

    def new_id(self, kind: str = "msg") -> str: ...

    def now_iso(self) -> str: ...

    def stats(self) -> dict[str, Any]: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def local_sessions(self, user_id: str, client_id: str | None = None) -> list[Session]: ...

    async def send(self, topic: str, message: cluster.NodeMessage) -> tuple[Any, Any]: ...


class ControlPlane:
    """One node's side of cluster-wide control requests."""

    def __init__(self, node: Host) -> None:
        self.node = node
        self._requests: dict[str, tuple[asyncio.Future[None], list[tuple[int, Any]]]] = {}

    def apply(self, op: cluster.Operation) -> Any:
        """Carry out one control operation on this node's connections of a user."""
        client = op.client if isinstance(op, cluster.Disconnect | cluster.SsePost) else None
        sessions = self.node.local_sessions(op.user, client)
        match op:
            case cluster.ListConnections():
                return [msgspec.to_builtins(self._info(s)) for s in sessions]
            case cluster.Disconnect(code=code, reason=reason):
                close = self.node.disconnect_local
                return close(sessions, code, reason) if close is not None else 0
            case cluster.UnsubscribeUser(channel=channel):
                return sum(s.unsubscribe(channel) for s in sessions)
            case cluster.SsePost(body=body):  # an SSE POST that reached another instance
                post = self.node.sse_post_local
                return post(sessions, body) if post is not None else None
            case cluster.RoomBlocks() | cluster.RoomEvict():  # rooms.Rooms.control
                rooms = self.node.rooms
                return rooms.control(sessions, op) if rooms is not None else 0
            case cluster.Stats():
                return self.node.stats()
            case cluster.RecentEvents(after=after, limit=limit):
                me = self.node.instance_id
                return msgspec.to_builtins(self.node.events.page(after.get(me), limit, me))

    def _info(self, s: Session) -> ConnectionInfo:
        status = s.status()
        return ConnectionInfo(
            clientId=status.clientId,
            userId=status.userId,
            roles=status.roles,
            connectedAt=status.connectedAt,
            expiresAt=status.expiresAt,
            subscriptions=status.subscriptions,
            transport=s.transport,
            remoteAddress=s.remote,
            instance=self.node.instance_id,
        )

    def on_request(self, request: cluster.ControlRequest) -> None:
        """Answer another instance's request on its node topic."""
        op = request.op
        whole = isinstance(op, cluster.Stats | cluster.RecentEvents)  # one answer per instance
        held = 1 if whole else len(self.node.local_sessions(op.user))
        reply = cluster.ControlReply(
            req=request.req, node=self.node.instance_id, held=held, result=self.apply(op)
        )
        self.node.spawn(self._send_reply(request.sender, reply))

    async def _send_reply(self, node_id: str, reply: cluster.ControlReply) -> None:
        try:
            await self.node.send(cluster.topic("node", node_id), reply)
        except BrokerError as exc:
            log.warning("control reply to %s lost: %s", node_id, exc)

    def on_reply(self, reply: cluster.ControlReply) -> None:
        """Record one instance's answer to a request of ours."""
        pending = self._requests.get(reply.req)
        if pending is not None:
            pending[1].append((reply.held, reply.result))
            if not pending[0].done():
                pending[0].set_result(None)

    async def run(self, op: cluster.Operation, *, wait: float = 2.0) -> list[Any]:
        """Run a control operation on every instance holding the user's connections.

        Returns each answering instance's result. On a single instance, only its own.

        Raises:
            BrokerError: the cluster cannot be reached.
        """
        if self.node.registry is None:
            return [self.apply(op)]
        try:
            expected = await self.node.registry.count(op.user)
        except Exception as exc:
            raise BrokerError(f"registry unreachable: {exc}") from exc
        return await self._gather(cluster.topic("user", op.user), op, expected, wait)

    async def _gather(
        self, topic: str, op: cluster.Operation, expected: int, wait: float
    ) -> list[Any]:
        """Send a control request on ``topic``; collect replies until they account for
        ``expected`` (connections, or instances for stats) or ``wait`` runs out."""
        if expected == 0:
            return []
        req = self.node.new_id("req")
        loop = asyncio.get_running_loop()
        results: list[tuple[int, Any]] = []
        self._requests[req] = (loop.create_future(), results)
        try:
            request = cluster.ControlRequest(req=req, sender=self.node.instance_id, op=op)
            await self.node.send(topic, request)
            async with asyncio.timeout(wait):
                while sum(held for held, _ in results) < expected:
                    fut = loop.create_future()
                    self._requests[req] = (fut, results)
                    await fut
        except TimeoutError:
            tag = type(op).__struct_config__.tag
            log.info("control %s: %d of %d answered in time", tag, len(results), expected)
        finally:
            del self._requests[req]
        return [result for _, result in results]

    async def cluster_events(self, after: dict[str, int], limit: int) -> ClusterEventsPage:
        """The connection events of every live instance after its position in ``after``.

        Raises:
            BrokerError: the cluster cannot be reached.
        """
        me = self.node.instance_id
        if self.node.registry is None:
            return merge([self.node.events.page(after.get(me), limit, me)])
        op = cluster.RecentEvents(after=after, limit=limit)
        try:
            _, known = await self.node.registry.instances()
        except Exception as exc:
            raise BrokerError(f"registry unreachable: {exc}") from exc
        answers = await self._gather(cluster.ALL, op, len(known), 2.0)
        return merge(msgspec.convert(answers, list[EventsPage]))

    async def cluster_stats(self) -> dict[str, Any]:
        """Stats over every live instance, with each instance's own.

        Raises:
            BrokerError: the cluster cannot be reached.
        """
        if self.node.registry is None:
            own = self.node.stats()
            return {**own, "instances": [own]}
        try:
            users, known = await self.node.registry.instances()
        except Exception as exc:
            raise BrokerError(f"registry unreachable: {exc}") from exc
        # Live figures from every instance; one that does not answer in time is shown
        # with its last heartbeat's.
        fresh = await self._gather(cluster.ALL, cluster.Stats(), len(known), 2.0)
        answered = {i.get("instance") for i in fresh}
        instances = fresh + [i for i in known if i.get("instance") not in answered]
        channels: dict[str, int] = {}
        for inst in instances:
            for name, n in inst.get("channelCounts", {}).items():
                channels[name] = channels.get(name, 0) + n
        return {
            "totalConnections": sum(i.get("totalConnections", 0) for i in instances),
            "totalUsers": users,
            "channelCounts": channels,
            "messagesIn": sum(i.get("messagesIn", 0) for i in instances),
            "messagesOut": sum(i.get("messagesOut", 0) for i in instances),
            "timestamp": self.node.now_iso(),
            "instances": sorted(instances, key=lambda i: str(i.get("instance"))),
        }
