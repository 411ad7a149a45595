"""Who is connected and who listens where: the routing tables of one node.

The hub maps channels, users and roles to connections and fans a serialized message
out to them. It never blocks and never awaits: each connection's ``push`` hands the
bytes to a bounded outbox and returns, so one slow client cannot delay the others
(it is closed by its transport when its outbox overflows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .filters import Filter


class Outbound:
    """One serialized server message, shared by every recipient.

    ``wire`` is a cache a transport may fill with the framed bytes (a WebSocket frame
    header plus ``payload``), so framing, like serialization, happens once per message
    rather than once per recipient. ``channel`` and ``offset`` are set on channel
    publications (``offset`` only when the channel keeps history), so a connection
    that is still being caught up on a channel can hold them back and drop repeats.
    """

    __slots__ = ("channel", "offset", "payload", "wire")

    def __init__(self, payload: bytes, channel: str | None = None, offset: int = 0) -> None:
        self.payload = payload
        self.wire: bytes | None = None
        self.channel = channel
        self.offset = offset


Watcher = Callable[[str, str, bool], None]
"""Called as ``watcher(kind, name, active)`` when a channel (``"ch"``), user (``"user"``)
or role (``"role"``) gains its first local connection (``active``) or loses its last:
what a node subscribes to on the broker follows it."""


class Connection(Protocol):
    """A connected, authenticated client as the hub sees it."""

    @property
    def client_id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def roles(self) -> tuple[str, ...]: ...

    def push(self, message: Outbound) -> bool:
        """Queue ``message`` without blocking; False if the connection is closing."""
        ...


class _ChannelSubscribers:
    """Subscribers of one channel, grouped by filter so each filter runs once.

    ``snapshot`` is the plain subscribers as a tuple, built on the first publication
    after a change and reused until the next: a push may close a slow consumer, which
    removes it from ``plain``, so the fan-out must walk a copy, and copying the set
    once per change instead of once per publication is what makes a channel's
    steady publications cheap. Every change to ``plain`` goes through ``add`` and
    ``discard``, which drop it.
    """

    __slots__ = ("filtered", "plain", "snapshot")

    def __init__(self) -> None:
        self.plain: set[Connection] = set()
        self.filtered: dict[str, tuple[Filter, set[Connection]]] = {}
        self.snapshot: tuple[Connection, ...] | None = None

    def __len__(self) -> int:
        return len(self.plain) + sum(len(conns) for _, conns in self.filtered.values())

    def plain_now(self) -> tuple[Connection, ...]:
        """The plain subscribers as they are now (the cached copy when still exact)."""
        snapshot = self.snapshot
        if snapshot is None:
            snapshot = self.snapshot = tuple(self.plain)
        return snapshot

    def add(self, conn: Connection) -> None:
        self.plain.add(conn)
        self.snapshot = None

    def discard(self, conn: Connection, filter_key: str | None) -> None:
        if filter_key is None:
            self.plain.discard(conn)
            self.snapshot = None
            return
        group = self.filtered.get(filter_key)
        if group is not None:
            group[1].discard(conn)
            if not group[1]:
                del self.filtered[filter_key]


class Hub:
    """Routing tables and fan-out for the connections of one node."""

    def __init__(self, watcher: Watcher | None = None) -> None:
        self.watcher = watcher
        self._conns: dict[str, Connection] = {}
        self._users: dict[str, set[Connection]] = {}
        self._roles: dict[str, set[Connection]] = {}
        self._channels: dict[str, _ChannelSubscribers] = {}
        # conn -> {channel: filter key or None}; the hub owns it so removal is complete.
        self._subs: dict[Connection, dict[str, str | None]] = {}
        self.messages_out = 0
        self.dropped = 0  # pushes refused by a closing connection

    # --- membership ---------------------------------------------------------------------

    def add(self, conn: Connection) -> None:
        """Register an authenticated connection."""
        self._conns[conn.client_id] = conn
        _add(self._users, conn.user_id, conn, "user", self.watcher)
        for role in conn.roles:
            _add(self._roles, role, conn, "role", self.watcher)
        self._subs[conn] = {}

    def remove(self, conn: Connection) -> None:
        """Forget a connection and all its subscriptions; safe to call twice."""
        if self._conns.pop(conn.client_id, None) is None:
            return
        _discard(self._users, conn.user_id, conn, "user", self.watcher)
        for role in conn.roles:
            _discard(self._roles, role, conn, "role", self.watcher)
        for channel, key in self._subs.pop(conn, {}).items():
            self._unlink(conn, channel, key)

    def _unlink(self, conn: Connection, channel: str, key: str | None) -> None:
        subs = self._channels.get(channel)
        if subs is not None:
            subs.discard(conn, key)
            if not subs.plain and not subs.filtered:
                del self._channels[channel]
                if self.watcher is not None:
                    self.watcher("ch", channel, False)

    def subscribe(self, conn: Connection, channel: str, flt: Filter | None) -> bool:
        """Subscribe, replacing any earlier filter on the same channel.

        Returns True if this is a new subscription (False if it replaced one).
        """
        mine = self._subs[conn]
        new = channel not in mine
        if not new:
            self._unlink(conn, channel, mine[channel])
        subs = self._channels.get(channel)
        if subs is None:
            subs = self._channels[channel] = _ChannelSubscribers()
            if self.watcher is not None:
                self.watcher("ch", channel, True)
        if flt is None:
            subs.add(conn)
            mine[channel] = None
        else:
            group = subs.filtered.get(flt.key)
            if group is None:
                group = subs.filtered[flt.key] = (flt, set())
            group[1].add(conn)
            mine[channel] = flt.key
        return new

    def unsubscribe(self, conn: Connection, channel: str) -> bool:
        """Remove one subscription; False if there was none."""
        mine = self._subs.get(conn)
        if mine is None or channel not in mine:
            return False
        self._unlink(conn, channel, mine.pop(channel))
        return True

    def is_subscribed(self, conn: Connection, channel: str) -> bool:
        return channel in self._subs.get(conn, ())

    def has_filters(self, channel: str) -> bool:
        """True if some subscriber of ``channel`` has a filter (publish needs the data)."""
        subs = self._channels.get(channel)
        return subs is not None and bool(subs.filtered)

    def subscription_count(self, conn: Connection) -> int:
        return len(self._subs.get(conn, ()))

    # --- queries ------------------------------------------------------------------------

    def connections(self) -> Iterable[Connection]:
        return self._conns.values()

    def user_connections(self, user_id: str) -> set[Connection]:
        return self._users.get(user_id, set())

    def connection_count(self) -> int:
        return len(self._conns)

    def user_count(self) -> int:
        return len(self._users)

    def channel_counts(self) -> dict[str, int]:
        """Subscribers per channel (guide 001 ``channelCounts``)."""
        return {name: len(subs) for name, subs in self._channels.items()}

    # --- fan-out ------------------------------------------------------------------------

    def publish(self, channel: str, message: Outbound, data: Any) -> int:
        """Queue ``message`` to the subscribers of ``channel`` whose filter matches ``data``."""
        subs = self._channels.get(channel)
        if subs is None:
            return 0
        count = self._push_all(subs.plain_now(), message)
        if subs.filtered:
            # Pushing may close a slow consumer and drop its filter group: iterate a copy.
            for flt, conns in tuple(subs.filtered.values()):
                if flt.matches(data):
                    count += self._push_all(tuple(conns), message)
        self.messages_out += count
        return count

    def _push_all(self, conns: tuple[Connection, ...], message: Outbound) -> int:
        """Push to each of ``conns``, a copy: a push may close a slow consumer, which
        removes it from the hub's sets. The per-delivery loop of the fan-out, so it
        counts only what was taken and works out the refusals once at the end."""
        count = 0
        for conn in conns:
            if conn.push(message):
                count += 1
        self.dropped += len(conns) - count
        return count

    def send_to_user(self, user_id: str, message: Outbound) -> int:
        count = self._push_all(tuple(self._users.get(user_id, ())), message)
        self.messages_out += count
        return count

    def send_to_role(self, role: str, message: Outbound) -> int:
        count = self._push_all(tuple(self._roles.get(role, ())), message)
        self.messages_out += count
        return count

    def broadcast(self, message: Outbound, exclude_user: str | None = None) -> int:
        if exclude_user is None:
            count = self._push_all(tuple(self._conns.values()), message)
        else:
            count = self._push_all(
                tuple(c for c in self._conns.values() if c.user_id != exclude_user), message
            )
        self.messages_out += count
        return count


def _add(
    index: dict[str, set[Connection]],
    key: str,
    conn: Connection,
    kind: str,
    watcher: Watcher | None,
) -> None:
    conns = index.get(key)
    if conns is None:
        conns = index[key] = set()
        if watcher is not None:
            watcher(kind, key, True)
    conns.add(conn)


def _discard(
    index: dict[str, set[Connection]],
    key: str,
    conn: Connection,
    kind: str,
    watcher: Watcher | None,
) -> None:
    conns = index.get(key)
    if conns is not None:
        conns.discard(conn)
        if not conns:
            del index[key]
            if watcher is not None:
                watcher(kind, key, False)
