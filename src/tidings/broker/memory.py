"""The in-process broker: the single-node default, and a cluster inside one process.

A ``MemoryExchange`` plays the part Redis plays for ``RedisBroker``: it holds the
history streams and routes publications. Each ``MemoryBroker`` is one node's link to
it. ``MemoryBroker()`` makes an exchange of its own (one node); brokers built on one
shared exchange are several nodes in one process, which is what the contract suite
and in-process cluster tests use. Messages are objects handed over as they are: no
encoding, no copy, and delivery happens inside ``publish`` (no task switch).
"""

from __future__ import annotations

import collections
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from . import Handler, HistoryResult, StreamPosition, check_history, history_result

logger = logging.getLogger("tidings.broker")

DEFAULT_META_TTL = 30 * 24 * 3600.0


class _Stream:
    """One topic's history: its epoch, last offset and newest publications."""

    __slots__ = ("entries", "epoch", "expires_at", "meta_expires_at", "offset")

    def __init__(self, epoch: str, meta_expires_at: float) -> None:
        self.epoch = epoch
        self.offset = 0
        self.entries: collections.deque[tuple[int, Any]] = collections.deque()
        self.expires_at = meta_expires_at
        self.meta_expires_at = meta_expires_at


class MemoryExchange:
    """Routing and history shared by the ``MemoryBroker`` nodes of one process.

    Args:
        clock: Seconds, monotonic; history TTLs are measured with it.
        meta_ttl: Seconds a stream's epoch and offset outlive its last publication.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        meta_ttl: float = DEFAULT_META_TTL,
    ) -> None:
        self._clock = clock
        self._meta_ttl = meta_ttl
        self._brokers: list[MemoryBroker] = []
        self._streams: dict[str, _Stream] = {}

    def attach(self, broker: MemoryBroker) -> None:
        if broker not in self._brokers:
            self._brokers.append(broker)

    @property
    def members(self) -> int:
        """The brokers attached (started and not closed)."""
        return len(self._brokers)

    def detach(self, broker: MemoryBroker) -> None:
        if broker in self._brokers:
            self._brokers.remove(broker)

    def _stream(self, topic: str, now: float) -> _Stream:
        """The topic's live stream, expired parts dropped; a new epoch if it had none."""
        stream = self._streams.get(topic)
        if stream is not None and now >= stream.meta_expires_at:
            stream = None
        if stream is None:
            stream = _Stream(secrets.token_hex(8), now + self._meta_ttl)
            self._streams[topic] = stream
        elif now >= stream.expires_at:
            stream.entries.clear()
        return stream

    def publish(
        self, topic: str, message: Any, history_size: int, history_ttl: float
    ) -> StreamPosition | None:
        position = None
        if check_history(history_size, history_ttl):
            now = self._clock()
            stream = self._stream(topic, now)
            stream.offset += 1
            stream.entries.append((stream.offset, message))
            while len(stream.entries) > history_size:
                stream.entries.popleft()
            stream.expires_at = now + history_ttl
            stream.meta_expires_at = now + max(self._meta_ttl, history_ttl)
            position = StreamPosition(stream.offset, stream.epoch)
        for broker in list(self._brokers):
            broker.deliver(topic, message, position)
        return position

    def history(self, topic: str, since: StreamPosition | None, limit: int) -> HistoryResult:
        stream = self._stream(topic, self._clock())
        position = StreamPosition(stream.offset, stream.epoch)
        after = since.offset if since is not None else 0
        kept = [entry for entry in stream.entries if entry[0] > after]
        return history_result(since, position, kept, limit)


class MemoryBroker:
    """One node's link to a ``MemoryExchange`` (its own when none is given).

    Delivery is synchronous: ``publish`` calls every subscribed node's handler, in
    attach order, before it returns, which keeps per-topic order and is the single
    instance's fast path (the API request reaches the socket writes with no await).

    Args:
        exchange: The exchange shared by the nodes of one in-process cluster.
        alone: This node is the only one (a single instance): it gets every
            publication, subscribed or not, since there is no other node to choose
            between; its hub needs no broker subscriptions at all.
    """

    def __init__(self, exchange: MemoryExchange | None = None, *, alone: bool = False) -> None:
        self.exchange = exchange if exchange is not None else MemoryExchange()
        self._alone = alone
        self._handler: Handler | None = None
        self._topics: set[str] = set()
        self.on_restored: Callable[[], None] | None = None  # a memory link is never lost

    @property
    def healthy(self) -> bool:
        return self._handler is not None

    @property
    def members(self) -> int:
        return self.exchange.members

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self.exchange.attach(self)

    async def close(self) -> None:
        self.exchange.detach(self)
        self._handler = None
        self._topics.clear()

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        history_size: int = 0,
        history_ttl: float = 0.0,
        guarded: bool = False,
    ) -> StreamPosition | None:
        # Guarded needs nothing more: every node of an exchange is in this process and
        # its link cannot be down.
        return self.exchange.publish(topic, message, history_size, history_ttl)

    async def history(
        self, topic: str, since: StreamPosition | None = None, limit: int = 100
    ) -> HistoryResult:
        return self.exchange.history(topic, since, limit)

    def deliver(self, topic: str, message: Any, position: StreamPosition | None) -> None:
        """Hand one publication to this node's handler if it listens on ``topic``."""
        handler = self._handler
        if handler is None or not (self._alone or topic in self._topics):
            return
        try:
            handler(topic, message, position)
        except Exception:
            logger.exception("broker handler failed on topic %s", topic)
