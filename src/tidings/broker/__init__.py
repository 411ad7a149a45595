"""Messages between nodes: the ``Broker`` interface, stream positions and history.

Implementations: ``memory.MemoryBroker`` (the default: one process; several brokers
sharing one ``memory.MemoryExchange`` act as a cluster inside one process) and
``redis.RedisBroker`` (a ``redis://`` URL: many processes on one Redis). Both pass one
contract suite (``tests/test_broker_contract.py``); the contract is the ``Broker``
docstring below.

``backends.open_broker`` builds the one a ``broker_url`` names: a single instance runs on a
``MemoryBroker`` through the same interface, so it runs the cluster's code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol


class StreamPosition(NamedTuple):
    """Where a topic's history stream stands.

    ``offset`` is the last publication's offset (0: none yet). ``epoch`` names one
    lifetime of the stream: when the stream is lost (expired, Redis flushed) and
    started again its offsets restart from 1 under a new epoch, so a client holding a
    position from the old lifetime can tell it cannot resume from it.
    """

    offset: int
    epoch: str


class HistoryResult(NamedTuple):
    """The answer of ``Broker.history``.

    ``publications`` are ``(offset, message)`` pairs, oldest first. ``position`` is the
    stream's current top. ``recoverable`` is False when the publications after the
    asked position can no longer all be returned; ``publications`` is then empty and
    the caller must reload from its source of truth.
    """

    publications: list[tuple[int, Any]]
    position: StreamPosition
    recoverable: bool


Handler = Callable[[str, Any, StreamPosition | None], None]
"""Called as ``handler(topic, message, position)`` for each delivered publication.

``position`` is the publication's own stream position when it was published with
history, else None. The handler runs on the event loop and must not block; it should
hand the message to the hub and return. An exception it raises is logged and the
next publication is delivered as usual.
"""


class BrokerError(Exception):
    """The broker could not be reached: the publication was not sent (or not known to be)."""


class Broker(Protocol):
    """Publish/subscribe between the nodes of a cluster, with per-topic history.

    A *topic* is a string the node chooses (``ch:<channel>``, ``user:<id>``,
    ``role:<r>``, ``all``); a *message* is what the node publishes. A broker that
    crosses a network serializes it once per publication with the codec it was built
    with (``encode``/``decode``; bytes pass through by default): bus encoding lives in the
    adapter. The in-process broker hands the very object to every handler, with no
    encoding and no copy. Contract, for every implementation:

    * **Delivery.** After ``start(handler)``, ``handler`` is called once for every
      publication made, by any node, to a topic this node is subscribed to, including
      its own publications: a node delivers to its local connections only through its
      handler, so every node sees the same stream. Delivery is at most once; a
      publication made while this node's link to the broker is down is missed (that
      is what ``history`` is for). When it delivers (during ``publish`` or later) is the
      implementation's: ``MemoryBroker`` calls the handlers before ``publish`` returns.
    * **Order.** Per topic, every node receives publications in the order the broker
      accepted them, which for history topics is offset order; and the broker accepts
      one node's publications in the order its ``publish`` calls were made, even when
      they run concurrently. No order is promised between different topics.
    * **Once per publication.** ``publish`` crosses the broker once, whatever the
      number of receiving nodes and connections; fan-out to connections is the hub's.
    * **Subscriptions.** ``subscribe`` and ``unsubscribe`` are idempotent. When
      ``subscribe`` returns on a healthy broker, every later publication to the topic
      is delivered; while unhealthy the topic is recorded and subscribed again as soon
      as the link is back. After ``unsubscribe`` returns nothing more is delivered for
      that topic, even a publication already in flight.
    * **History.** ``publish`` with ``history_size > 0`` appends the message to the
      topic's stream and publishes it in one atomic step: offsets are 1, 2, 3, … per
      epoch with no gaps or repeats, and delivery order equals offset order. The
      stream keeps at most ``history_size`` newest publications; it is dropped when
      the topic has had no publication for ``history_ttl`` seconds. The epoch and last
      offset outlive the stream for ``meta_ttl`` (an implementation setting, at least
      ``history_ttl``), so a client that was away too long is told recovery is
      impossible rather than being silently handed a restarted stream; once they are
      gone too, the next publication or ``history`` call starts a new epoch.
    * **Recovery.** ``history(topic, since=pos)`` returns the publications after
      ``pos.offset`` (up to ``limit``) with ``recoverable=True`` only if ``pos.epoch``
      is the stream's epoch and every publication after ``pos.offset`` is still kept;
      otherwise none and ``recoverable=False`` (see ``history_result``).
    * **Guarded publications.** ``publish(..., guarded=True)`` is made only if every
      live node's link is subscribed to all its topics when the broker takes it; else
      it raises ``BrokerError`` and nothing is sent. A node counts as live until it
      leaves (``close``) or stops beating for two ping intervals (killed, or
      cut off from the broker that long), so after the broker comes back from an outage
      a guarded publication is refused until every live node has resubscribed. Use it
      for what no one can recover (no history, no inbox): the sender may then answer
      that it was delivered everywhere.
    * **Health.** ``healthy`` is True while publications can be sent and received; it
      turns False when the link is lost and True again once every subscription is
      restored. A publication the broker cannot take raises ``BrokerError``: it is
      never reported as sent when it was not.
    * Two brokers may run in one process: no module-level state.

    ``on_restored``, when set, is called after a lost link is back (publications were
    missed meanwhile: the node catches its channels up from history).
    """

    on_restored: Callable[[], None] | None

    @property
    def healthy(self) -> bool:
        """True while the broker link is up and every subscription is active."""
        ...

    @property
    def members(self) -> int:
        """The live nodes (this one included) whose links a guarded publication checks."""
        ...

    async def start(self, handler: Handler) -> None:
        """Connect and start delivering to ``handler``.

        Raises:
            BrokerError: the broker cannot be reached at all.
        """
        ...

    async def close(self) -> None:
        """Stop delivering and release connections; safe to call twice."""
        ...

    async def subscribe(self, topic: str) -> None:
        """Receive publications to ``topic`` from now on."""
        ...

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving publications to ``topic``."""
        ...

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        history_size: int = 0,
        history_ttl: float = 0.0,
        guarded: bool = False,
    ) -> StreamPosition | None:
        """Deliver ``message`` to every node subscribed to ``topic``.

        Args:
            topic: Where to publish.
            message: What to deliver (bytes, or what the broker's codec encodes).
            history_size: Keep this many newest publications of the topic (0: none).
            history_ttl: Seconds the history is kept after the last publication;
                required (> 0) when ``history_size`` is.
            guarded: Refuse unless every live node's link is subscribed (see the
                contract above).

        Returns:
            The publication's stream position when history is kept, else None.

        Raises:
            BrokerError: the broker could not be reached, or (guarded) a live node's
                link is not subscribed; nothing was sent.
            ValueError: ``history_size`` without a positive ``history_ttl``.
        """
        ...

    async def history(
        self, topic: str, since: StreamPosition | None = None, limit: int = 100
    ) -> HistoryResult:
        """Publications kept for ``topic`` after ``since``, oldest first.

        ``since=None`` returns the oldest ``limit`` kept publications; ``limit=0``
        returns only the current position. A topic without a stream gets one (offset
        0, a fresh epoch), so a position read before the first publication stays
        valid for recovery.

        Raises:
            BrokerError: the broker could not be reached.
        """
        ...


def check_history(history_size: int, history_ttl: float) -> bool:
    """Validate ``publish``'s history arguments; True if history is kept."""
    if history_size < 0 or history_ttl < 0:
        raise ValueError("history_size and history_ttl must not be negative")
    if history_size and not history_ttl:
        raise ValueError("history_size needs a positive history_ttl")
    return history_size > 0


def history_result(
    since: StreamPosition | None,
    position: StreamPosition,
    kept: Sequence[tuple[int, Any]],
    limit: int,
) -> HistoryResult:
    """The recovery rule every broker applies to what its stream returned.

    Args:
        since: The position the caller asks to resume from (None: no resume).
        position: The stream's current top.
        kept: Kept publications with offsets above ``since.offset`` (all kept ones when
            ``since`` is None), oldest first; at least the first of them if any.
        limit: The most publications to return.
    """
    if since is None:
        return HistoryResult(list(kept[:limit]), position, True)
    if since.epoch != position.epoch or since.offset > position.offset:
        return HistoryResult([], position, False)
    if since.offset == position.offset:
        return HistoryResult([], position, True)
    if not kept or kept[0][0] != since.offset + 1:
        return HistoryResult([], position, False)
    return HistoryResult(list(kept[:limit]), position, True)
