"""This instance's connection event log: the last connects and disconnects, for operators.

Both transports report a connection when it opens (after the connect hook and the
welcome, where ``metrics.connects`` is counted) and when an open connection closes, with
its close code (where ``metrics.disconnects`` is counted). ``ConnectionEvents`` keeps the
newest ``size`` of them in a ring and wakes whoever follows it live (``GET
/api/events/stream``); it knows no sockets and reads time only through its ``clock``.

The hot path (a connect storm) pays for one small tuple per event and a ring append;
followers are woken, never handed a copy, and read the ring at their own pace, so an
operator's slow stream costs the server nothing but a gap in that stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Final, NamedTuple, Protocol

import msgspec

from .publication import iso_timestamp

__all__ = [
    "DEFAULT_SIZE",
    "ClusterEventsPage",
    "Connection",
    "ConnectionEvent",
    "ConnectionEventView",
    "ConnectionEvents",
    "EventsPage",
    "merge",
]

DEFAULT_SIZE: Final = 1000


class Connection(Protocol):
    """What an event records of a connection (``session.Session`` is one)."""

    @property
    def client_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def transport(self) -> str: ...
    @property
    def remote(self) -> str | None: ...


class ConnectionEvent(NamedTuple):
    """One connect (``code`` None) or disconnect; ``seq`` counts from 1 per instance run."""

    seq: int
    at: float
    kind: str  # "connect" or "disconnect"
    user_id: str
    client_id: str
    transport: str
    remote: str | None
    code: int | None


class ConnectionEventView(msgspec.Struct, kw_only=True):
    """One connect or disconnect as the API shows it (``code``: on a disconnect only)."""

    seq: int
    at: str
    event: str
    userId: str
    clientId: str
    transport: str
    remoteAddress: str | None
    code: int | None
    instance: str


class EventsPage(msgspec.Struct, kw_only=True):
    """One instance's events, oldest first; ``gap`` when some after the asked position
    were already dropped from its ring; ``lastSeq`` is its newest event's number."""

    instance: str
    lastSeq: int
    gap: bool
    events: list[ConnectionEventView]


class ClusterEventsPage(msgspec.Struct, kw_only=True):
    """Every answering instance's events, merged oldest first by time. ``positions`` is
    each instance's ``lastSeq``: send it back as ``after`` to get only newer ones."""

    events: list[ConnectionEventView]
    positions: dict[str, int]
    gap: bool


def merge(pages: Iterable[EventsPage]) -> ClusterEventsPage:
    """The instances' pages as one (time order across instances; each its own seqs)."""
    events: list[ConnectionEventView] = []
    positions: dict[str, int] = {}
    gap = False
    for page in pages:
        events.extend(page.events)
        positions[page.instance] = page.lastSeq
        gap = gap or page.gap
    events.sort(key=lambda e: (e.at, e.instance, e.seq))
    return ClusterEventsPage(events=events, positions=positions, gap=gap)


class ConnectionEvents:
    """A bounded ring of this instance's connection events, and its live followers.

    Args:
        clock: Unix time in seconds.
        size: how many events the ring keeps (the oldest are dropped).
    """

    __slots__ = ("_clock", "_followers", "_ring", "_seq")

    def __init__(self, clock: Callable[[], float], size: int = DEFAULT_SIZE) -> None:
        self._clock = clock
        # Plain tuples in ConnectionEvent's field order: a NamedTuple's __new__ is a
        # Python call, several times the cost of the tuple; readers get ConnectionEvents.
        self._ring: deque[tuple[int, float, str, str, str, str, str | None, int | None]] = deque(
            maxlen=size
        )
        self._seq = 0
        self._followers: list[Callable[[], None]] = []

    def connected(self, conn: Connection) -> None:
        """Record an opened connection."""
        self._record("connect", conn, None)

    def disconnected(self, conn: Connection, code: int) -> None:
        """Record the close of a connection that was open, with its close code."""
        self._record("disconnect", conn, code)

    def _record(self, kind: str, conn: Connection, code: int | None) -> None:
        self._seq += 1
        self._ring.append(
            (
                self._seq,
                self._clock(),
                kind,
                conn.user_id,
                conn.client_id,
                conn.transport,
                conn.remote,
                code,
            )
        )
        for wake in self._followers:
            wake()

    @property
    def last_seq(self) -> int:
        """The newest event's ``seq`` (0 before the first)."""
        return self._seq

    def after(self, seq: int, limit: int | None = None) -> tuple[list[ConnectionEvent], bool]:
        """The kept events newer than ``seq``, oldest first (at most ``limit``, the oldest
        of them), and whether any event after ``seq`` was dropped from the ring already."""
        ring = self._ring
        first = ring[0][0] if ring else self._seq + 1
        gap = seq + 1 < first and self._seq > seq
        # Sequence numbers in the ring are consecutive: index arithmetic, no scan.
        start = max(0, seq + 1 - first)
        stop = len(ring) if limit is None else min(len(ring), start + limit)
        return [ConnectionEvent._make(ring[i]) for i in range(start, stop)], gap

    def page(self, after: int | None, limit: int, instance: str) -> EventsPage:
        """The events after ``after`` (None: the newest ``limit``) as the API shows them.
        A position beyond the newest (from before a restart) reads as 0."""
        if after is None:
            after = max(0, self._seq - limit)
        elif after > self._seq:
            after = 0
        events, gap = self.after(after, limit)
        return EventsPage(
            instance=instance,
            lastSeq=self._seq,
            gap=gap,
            events=[view(e, instance) for e in events],
        )

    def follow(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` after each new event (it must not block); returns the undo."""
        self._followers.append(wake)
        return lambda: self._followers.remove(wake)


def view(event: ConnectionEvent, instance: str) -> ConnectionEventView:
    """An event as the API shows it."""
    return ConnectionEventView(
        seq=event.seq,
        at=iso_timestamp(event.at),
        event=event.kind,
        userId=event.user_id,
        clientId=event.client_id,
        transport=event.transport,
        remoteAddress=event.remote,
        code=event.code,
        instance=instance,
    )
