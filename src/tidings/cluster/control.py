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
from typing import TYPE_CHECKING, Any

import msgspec

from .. import cluster
from ..broker import BrokerError

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger("tidings.control")


class ControlPlane:
    """One node's side of cluster-wide control requests."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._requests: dict[str, tuple[asyncio.Future[None], list[tuple[int, Any]]]] = {}

    def apply(self, op: dict[str, Any]) -> Any:
        """Carry out one control operation on this node's connections of a user."""
        sessions = self.node.local_sessions(op["user"], op.get("client"))
        kind = op["op"]
        if kind == "list":
            return [
                {
                    **msgspec.to_builtins(s.status()),
                    "remoteAddress": s.remote,
                    "instance": self.node.instance_id,
                }
                for s in sessions
            ]
        if kind == "disconnect":
            close = self.node.disconnect_local
            return close(sessions, op["code"], op["reason"]) if close is not None else 0
        if kind == "unsubscribe":
            return sum(s.unsubscribe(op["channel"]) for s in sessions)
        if kind == "sse_post":  # an SSE client's POST that reached another instance
            post = self.node.sse_post_local
            return post(sessions, op["body"]) if post is not None else None
        if kind.startswith("room_"):  # rooms.Rooms.control: blocks, evictions
            rooms = self.node.rooms
            return rooms.control(sessions, op) if rooms is not None else 0
        raise ValueError(f"unknown control operation {kind!r}")

    def on_request(self, payload: bytes) -> None:
        """Answer another instance's request (a ``C`` payload) on its node topic."""
        header, _ = cluster.split_header(payload)
        if header["op"] == "stats":
            held, result = 1, self.node.stats()
        else:
            held = len(self.node.local_sessions(header["user"]))
            result = self.apply(header)
        reply = cluster.with_header(
            cluster.REPLY,
            {"req": header["req"], "node": self.node.instance_id, "held": held, "result": result},
        )
        self.node.spawn(self._send_reply(header["from"], reply))

    async def _send_reply(self, node_id: str, reply: bytes) -> None:
        try:
            await self.node.send(cluster.topic("node", node_id), reply)
        except BrokerError as exc:
            log.warning("control reply to %s lost: %s", node_id, exc)

    def on_reply(self, payload: bytes) -> None:
        """Record one instance's answer (an ``R`` payload) to a request of ours."""
        header, _ = cluster.split_header(payload)
        pending = self._requests.get(header["req"])
        if pending is not None:
            pending[1].append((header["held"], header["result"]))
            if not pending[0].done():
                pending[0].set_result(None)

    async def run(self, op: dict[str, Any], *, wait: float = 2.0) -> list[Any]:
        """Run a control operation on every instance holding the user's connections.

        Returns each answering instance's result. On a single instance, only its own.

        Raises:
            BrokerError: the cluster cannot be reached.
        """
        if self.node.broker is None or self.node.registry is None:
            return [self.apply(op)]
        try:
            expected = await self.node.registry.count(op["user"])
        except Exception as exc:
            raise BrokerError(f"registry unreachable: {exc}") from exc
        return await self._gather(cluster.topic("user", op["user"]), op, expected, wait)

    async def _gather(
        self, topic: str, op: dict[str, Any], expected: int, wait: float
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
            header = {**op, "req": req, "from": self.node.instance_id}
            await self.node.send(topic, cluster.with_header(cluster.CONTROL, header))
            async with asyncio.timeout(wait):
                while sum(held for held, _ in results) < expected:
                    fut = loop.create_future()
                    self._requests[req] = (fut, results)
                    await fut
        except TimeoutError:
            log.info("control %s: %d of %d answered in time", op["op"], len(results), expected)
        finally:
            del self._requests[req]
        return [result for _, result in results]

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
        fresh = await self._gather(cluster.ALL, {"op": "stats"}, len(known), 2.0)
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
