"""What crosses the broker between nodes: topics, the node messages, and the topic set.

Every delivery to connections goes through the broker as one publication, whatever
the number of receiving instances; each node's handler fans it out to its own hub.
A payload is one node message (``decode`` turns it back into its type):

- ``Deliver`` (``M`` + envelope): a message for the connections listening on the topic.
- ``DeliverExcept`` (``E`` + user id + NUL + envelope): a broadcast that skips one user.
- the rest, JSON tagged by ``t``: ``Committed`` (``N``, a committed notification for the
  user's connections), ``CommittedMany`` (``B``, many users' committed notifications, on
  ``all``), ``Told`` (``T``, an inbox change told to the user's connections
  but the one that asked), ``Acknowledged`` (``A``, no tab redelivers these),
  ``ControlRequest`` (``C``, connection control for one user, or stats) answered with a
  ``ControlReply`` (``R``) on the asking node's topic.

Topics: ``ch:<channel>``, ``user:<id>``, ``role:<role>``, ``all``, ``node:<id>``. A node
subscribes to a channel, user or role topic while it has a local connection there
(``Hub`` tells it), so Redis sends each publication only to instances that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from ..broker import Broker
from ..store import Notification

log = logging.getLogger("tidings.cluster")

MESSAGE = ord("M")
EXCEPT_USER = ord("E")
TAGGED = ord("{")

ALL = "all"


def topic(kind: str, name: str) -> str:
    """The broker topic of a channel (``ch``), user, role or node."""
    return f"{kind}:{name}"


def with_position(envelope: bytes, offset: int, epoch: str, *, recovered: bool = False) -> bytes:
    """Add a publication's stream position to its serialized envelope (once per node)."""
    extra = b',"offset":%d,"epoch":"%s"' % (offset, epoch.encode())
    if recovered:
        extra += b',"recovered":true'
    return envelope[:-1] + extra + b"}"


# --- the node messages: one type per payload tag ------------------------------------------
#
# The two that carry connections' messages (``M``, ``E``) are framed by hand, a tag byte
# before the serialized envelope: they are the fan-out's hot path and the envelope is
# passed through untouched. The rest are msgspec structs tagged by ``t``, encoded as JSON
# (so their first byte is ``{``); an envelope inside one is embedded as raw JSON.


class Deliver(msgspec.Struct):
    """``M``: a message for the connections listening on the topic.

    ``data`` is the publication's data, carried only inside one process (the memory
    broker hands this very object over) so that filters need not parse the envelope;
    from the wire it is UNSET.
    """

    envelope: bytes
    data: Any = msgspec.UNSET


class DeliverExcept(msgspec.Struct):
    """``E``: a broadcast that skips one user's connections."""

    user: str
    envelope: bytes


class ControlOp(msgspec.Struct, tag_field="op", kw_only=True):
    """Base of a connection control operation on one user's connections."""

    user: str


class ListConnections(ControlOp, tag="list", kw_only=True):
    pass


class Disconnect(ControlOp, tag="disconnect", kw_only=True):
    client: str | None = None
    code: int
    reason: str


class UnsubscribeUser(ControlOp, tag="unsubscribe", kw_only=True):
    channel: str


class SsePost(ControlOp, tag="sse_post", kw_only=True):
    """An SSE client's POST that reached an instance not holding its stream."""

    client: str
    body: str


class RoomBlocks(ControlOp, tag="room_blocks", kw_only=True):
    """The user's new block list: their room subscriptions get new filters."""

    blocked: list[str]


class RoomEvict(ControlOp, tag="room_evict", kw_only=True):
    """The user left (or lost) a room: their subscriptions to it end."""

    room: str


class Stats(ControlOp, tag="stats", kw_only=True):
    """Every instance's stats (``user`` is empty: the request goes to ``all``)."""

    user: str = ""


class RecentEvents(ControlOp, tag="events", kw_only=True):
    """Every instance's connection events after its own position in ``after`` (the
    newest ``limit`` for one not named); ``user`` is empty: the request goes to ``all``."""

    user: str = ""
    after: dict[str, int] = msgspec.field(default_factory=dict)
    limit: int = 100


Operation = (
    ListConnections
    | Disconnect
    | UnsubscribeUser
    | SsePost
    | RoomBlocks
    | RoomEvict
    | Stats
    | RecentEvents
)


class Committed(msgspec.Struct, tag="N", tag_field="t"):
    """``N``: a committed notification for its user's connections."""

    notification: Notification


class CommittedMany(msgspec.Struct, tag="B", tag_field="t"):
    """``B``: committed notifications of many users (a batch, a role or everyone), sent
    once on ``all``; each instance pushes those of users connected to it."""

    notifications: list[Notification]


class Told(msgspec.Struct, tag="T", tag_field="t", kw_only=True):
    """``T``: an inbox change (read, archived, deleted) for the user's connections but
    ``skip`` (the one that asked, which had its own reply); ``pop`` ends redelivery."""

    user: str
    skip: str | None = None
    pop: list[str] = msgspec.field(default_factory=list)
    envelope: msgspec.Raw


class Acknowledged(msgspec.Struct, tag="A", tag_field="t", kw_only=True):
    """``A``: notifications acknowledged; no tab of the user redelivers them."""

    user: str
    pop: list[str]


class ControlRequest(msgspec.Struct, tag="C", tag_field="t", kw_only=True):
    """``C``: a control operation; answered with a ``ControlReply`` on ``node:<sender>``."""

    req: str
    sender: str
    op: Operation


class ControlReply(msgspec.Struct, tag="R", tag_field="t", kw_only=True):
    """``R``: one instance's answer: its result and how many of the connections (or, for
    stats, instances) it accounts for."""

    req: str
    node: str
    held: int
    result: Any


Tagged = Committed | CommittedMany | Told | Acknowledged | ControlRequest | ControlReply
NodeMessage = Deliver | DeliverExcept | Tagged

_TAGGED_DECODER: Final = msgspec.json.Decoder(Tagged)
_ENCODER: Final = msgspec.json.Encoder()


def encode(message: NodeMessage) -> bytes:
    """The payload of one node message, as it crosses the broker."""
    match message:
        case Deliver(envelope=envelope):
            return b"M" + envelope
        case DeliverExcept(user=user, envelope=envelope):
            return b"E" + user.encode() + b"\0" + envelope
        case _:
            return _ENCODER.encode(message)


def decode(payload: bytes) -> NodeMessage:
    """Undo ``encode``.

    Raises:
        msgspec.DecodeError: not a payload ``encode`` made.
    """
    tag = payload[0]
    if tag == MESSAGE:
        return Deliver(payload[1:])
    if tag == EXCEPT_USER:
        user, _, envelope = payload[1:].partition(b"\0")
        return DeliverExcept(user.decode(), envelope)
    if tag == TAGGED:
        return _TAGGED_DECODER.decode(payload)
    raise msgspec.DecodeError(f"unknown node message tag {tag!r}")


class Topics:
    """The broker topics a node listens on, following its hub.

    Subscribe and unsubscribe calls for one topic run one after another in the order
    they were asked (each waits for the one before), so a channel left and joined again
    quickly ends subscribed. ``ready(topic)`` waits until the latest call has been made.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._pending: dict[str, asyncio.Task[None]] = {}

    def change(self, name: str, active: bool) -> None:
        before = self._pending.get(name)
        op = self._broker.subscribe if active else self._broker.unsubscribe
        task = asyncio.get_running_loop().create_task(self._run(before, op, name))
        self._pending[name] = task
        task.add_done_callback(lambda t: self._done(name, t))

    async def _run(
        self,
        before: asyncio.Task[None] | None,
        op: Callable[[str], Awaitable[None]],
        name: str,
    ) -> None:
        if before is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await before
        try:
            await op(name)
        except Exception:
            log.exception("broker (un)subscribe of %s failed", name)

    def _done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._pending.get(name) is task:
            del self._pending[name]

    def pending(self, name: str) -> asyncio.Task[None] | None:
        """The (un)subscription of ``name`` still in progress, if any."""
        return self._pending.get(name)

    async def settle(self) -> None:
        """Wait for every pending (un)subscription (shutdown, tests)."""
        while self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)
