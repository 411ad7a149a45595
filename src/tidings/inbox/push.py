"""Pushing committed notifications: across the cluster, to this instance's connections in
``seq`` order, redelivery to connections that acknowledge, and the ``delivered_at`` marks;
and the inbox's state for each connection (``Reader``), which all of that reads.

A create hands its committed rows to ``Pusher.dispatch`` and returns: one task sends them
over the broker in commit order, so a hung broker delays the pushes, never the create's
answer. When the broker fails, this instance's connections get them at once and the
others' catch up when their link is back (``Inbox.resync``) or when their clients
reconnect.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from .. import cluster, protocol
from ..broker import BrokerError
from ..hub import Outbound
from ..session import Session, State
from ..store import Notification, Store, failure_status
from ..tasks import TaskSet
from .host import Host
from .requests import view

log = logging.getLogger("tidings.inbox")

# Longest a notification waits for an earlier one still crossing the cluster (seconds).
REORDER_WINDOW: Final = 1.0
# Committed notifications waiting for the broker, at most; beyond, they are pushed here
# only and the other instances catch up (the broker is too slow or gone).
MAX_OUTGOING: Final = 1_000_000
# Waiting notifications beyond this many cross the broker together, as one message on
# ``all`` of at most BATCH_MAX of them (a batch create, a role or everyone), instead of
# one message per user.
BATCH_MIN: Final = 16
BATCH_MAX: Final = 5000


class Reader:
    """The inbox's state for one connection: where its catch-up stands, what it was sent,
    what it has yet to acknowledge. The inbox owns it (``Inbox.attach`` / ``detach``);
    the session knows nothing of it.

    Args:
        last_seq: the inbox position the client resumes from (None: every unacknowledged
            or unread one).
        ack_mode: the client acknowledges (``?ack=1``, or once it sends ``ack``), so it
            gets unacknowledged notifications again after a timeout.
    """

    __slots__ = ("ack_mode", "awaiting", "held", "last_seq", "seen_seq")

    def __init__(self, last_seq: int | None = None, ack_mode: bool = False) -> None:
        self.last_seq = last_seq
        self.ack_mode = ack_mode
        # Until its catch-up is over, live notifications for the connection wait here:
        # from the moment it joins the hub, so none overtakes the ones it missed.
        self.held: list[Notification] | None = []
        # Sent and not yet acknowledged: id -> [notification, attempts, due time].
        self.awaiting: dict[str, list[Any]] = {}
        # The highest inbox seq pushed to this connection, or taken by one with in-app
        # off (a resync resumes after it; reordering waits for the one after it).
        self.seen_seq = 0


def _no_refill(session: Session, last_seq: int | None) -> None:
    raise RuntimeError("Pusher.refill is set by Inbox")


class Pusher:
    """Pushes for one node's inbox.

    Args:
        node: the node whose connections receive pushes.
        store: where ``delivered_at`` is recorded.
        tasks: where background work is kept (the inbox's, drained at shutdown).
    """

    def __init__(self, node: Host, store: Store, tasks: TaskSet) -> None:
        self.node = node
        self.store = store
        self._tasks = tasks
        self._outgoing: deque[Notification] = deque()
        self._sending: asyncio.Task[None] | None = None
        self._delivered: dict[str, list[str]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._readers: dict[Session, Reader] = {}
        # Connections holding notifications that await an acknowledgement.
        self.awaiting: set[Session] = set()
        # Notifications held back per connection until the one before them arrives.
        self._reorder: dict[Session, list[Notification]] = {}
        # Catches a connection up from a seq in the background (``Opening``'s, set by
        # ``Inbox``: the opening side is built on this one).
        self.refill: Callable[[Session, int | None], None] = _no_refill

    # --- per connection -----------------------------------------------------------------

    def attach(self, session: Session, *, last_seq: int | None, ack_mode: bool) -> None:
        """Keep inbox state for a new connection (before it can join the hub)."""
        self._readers[session] = Reader(last_seq, ack_mode)

    def detach(self, session: Session) -> None:
        """Forget a closed connection."""
        self._readers.pop(session, None)
        self.awaiting.discard(session)
        self._reorder.pop(session, None)

    def reader(self, session: Session) -> Reader:
        """The inbox state of ``session``."""
        reader = self._readers.get(session)
        if reader is None:
            # Not attached (closed already, or never opened through a gateway): a blank
            # state that is not kept, so nothing is held for it and nothing leaks.
            reader = Reader()
            reader.held = None
        return reader

    def attached(self, session: Session) -> Reader | None:
        """The inbox state of ``session`` if it is attached (open on this instance)."""
        return self._readers.get(session)

    # --- across the cluster -------------------------------------------------------------

    def dispatch(self, notifications: Sequence[Notification]) -> None:
        """Push committed notifications to their users' connections on every instance,
        in the background and in the order given (each crosses the broker once)."""
        if len(self._outgoing) + len(notifications) > MAX_OUTGOING:
            log.warning(
                "%d notifications wait for the broker: pushing %d here only",
                len(self._outgoing),
                len(notifications),
            )
            self.deliver_many(notifications)
            return
        self._outgoing.extend(notifications)
        if self._sending is None:
            self._sending = self._tasks.spawn(self._send())

    async def _send(self) -> None:
        try:
            while self._outgoing:
                waiting = len(self._outgoing)
                try:
                    # A single instance has no per-user topics to spare other instances
                    # from: whatever is waiting goes as one message, one broker call.
                    if waiting >= BATCH_MIN or (waiting > 1 and not self.node.clustered):
                        count = min(waiting, BATCH_MAX)
                        many = list(itertools.islice(self._outgoing, count))
                        await self.node.send(cluster.ALL, cluster.CommittedMany(many))
                        for _ in range(count):
                            self._outgoing.popleft()
                        continue
                    n = self._outgoing[0]
                    await self.node.send(cluster.topic("user", n.user_id), cluster.Committed(n))
                except BrokerError as exc:
                    # Every one waiting would wait as long: this instance's connections
                    # get them now, the others catch up.
                    failed = list(self._outgoing)
                    self._outgoing.clear()
                    log.warning("%d notifications not sent over the cluster: %s", len(failed), exc)
                    self.deliver_many(failed)
                    break
                self._outgoing.popleft()
        finally:
            self._sending = None

    async def settled(self) -> None:
        """Wait until what was dispatched has been pushed and its marks written."""
        while self._sending is not None or self._flushing is not None:
            await asyncio.wait([t for t in (self._sending, self._flushing) if t is not None])

    # --- this instance's connections ----------------------------------------------------

    def message(
        self,
        n: Notification,
        *,
        recovered: bool = False,
        redelivered: bool = False,
        stamp: str | None = None,
    ) -> Outbound:
        """The frame that pushes ``n``; ``stamp``: its envelope's timestamp, when the
        caller formatted one for a whole round of pushes (else the node's clock, now)."""
        data = view(n)
        if recovered:
            data.recovered = True
        if redelivered:
            data.redelivered = True
        if stamp is None:
            return Outbound(self.node.envelope(n.id, data.kind, data))
        return Outbound(protocol.envelope(n.id, data.kind, stamp, data))

    def deliver(self, n: Notification, stamp: str | None = None) -> int:
        """Push a committed notification to its user's open connections (``stamp``: as
        in ``message``)."""
        out: Outbound | None = None
        count = 0
        # In a cluster, notifications committed through different instances race each
        # other over the broker; a connection gets them in seq order (seqs are gapless
        # per user) unless the missing one is later than REORDER_WINDOW.
        reorder = self.node.clustered
        for conn in self.node.hub.user_connections(n.user_id):
            if not isinstance(conn, Session):
                if not n.in_app:
                    continue
                out = out or self.message(n, stamp=stamp)
                count += conn.push(out)
                continue
            reader = self.reader(conn)
            if reader.held is not None:  # still catching up: keep the seq order
                reader.held.append(n)
                continue
            # seen_seq is exact once catch-up is over (0: the user had none yet).
            if reorder and n.seq > reader.seen_seq + 1:
                self._hold_back(conn, n)
                continue
            if n.in_app:
                out = out or self.message(n, stamp=stamp)
            if self._push_live(conn, n, out):
                count += 1
            count += self._release(conn)
        if count:
            self.note_delivered(n.user_id, n.id)
            self.node.hub.messages_out += count
            self.node.metrics.sent["notification"] += count
        return count

    def deliver_many(self, notifications: Sequence[Notification]) -> int:
        """``deliver`` each, in order; users with no connection here cost a lookup."""
        hub = self.node.hub
        # One round of pushes, one instant: its timestamp is formatted once, not per frame.
        stamp = self.node.now_iso()
        return sum(self.deliver(n, stamp) for n in notifications if hub.user_connections(n.user_id))

    def _push_live(self, session: Session, n: Notification, out: Outbound | None = None) -> bool:
        """Push ``n`` and count it seen; one with in-app off is only counted seen (its seq
        is taken, so the next one is not held back waiting for it)."""
        if not n.in_app:
            reader = self.reader(session)
            reader.seen_seq = max(reader.seen_seq, n.seq)
            return False
        if not session.push(out or self.message(n)):
            return False
        reader = self.track(session, n)
        reader.seen_seq = max(reader.seen_seq, n.seq)
        return True

    def _hold_back(self, session: Session, n: Notification) -> None:
        held = self._reorder.get(session)
        if held is None:
            held = self._reorder[session] = []
            loop = asyncio.get_running_loop()
            loop.call_later(REORDER_WINDOW, self._flush_held, session)
        held.append(n)

    def _release(self, session: Session) -> int:
        """Push held-back notifications that are next in seq order."""
        held = self._reorder.get(session)
        count = 0
        reader = self.reader(session)
        while held:
            nxt = min(held, key=lambda x: x.seq)
            if nxt.seq != reader.seen_seq + 1:
                break
            held.remove(nxt)
            if self._push_live(session, nxt):
                count += 1
                self.note_delivered(nxt.user_id, nxt.id)
        if held is not None and not held:
            del self._reorder[session]
        return count

    def _flush_held(self, session: Session) -> None:
        """The window is over and the notifications before the held ones never came over
        the broker (this instance's link was down when they were published): read them,
        and the held ones after them, from the store, in seq order. Pushing the held ones
        alone would move ``seen_seq`` past the missing ones, and neither the resync after
        the outage nor the client's ``lastSeq`` would ever send them."""
        held = self._reorder.pop(session, None) or []
        if not held or session.state is not State.OPEN:
            return
        reader = self.reader(session)
        if reader.held is not None:  # a catch-up is running: it sends these too
            reader.held.extend(held)
            return
        reader.held = held
        # The catch-up reads from seen_seq and then releases what is held (also when the
        # store fails: then what is here goes out in order, and the client pages the rest).
        self.refill(session, reader.seen_seq)

    def track(self, session: Session, n: Notification) -> Reader:
        """Expect an acknowledgement of ``n`` from ``session`` if it acknowledges; returns
        the connection's state."""
        reader = self.reader(session)
        if reader.ack_mode:
            due = self.node.clock() + self.node.settings.ack_timeout
            reader.awaiting[n.id] = [n, 1, due]
            self.awaiting.add(session)
        return reader

    async def redeliver_due(self) -> int:
        """Push again what acknowledging connections have not acked in time; returns count.

        Each retry waits twice as long as the one before; after ``max_delivery_attempts``
        pushes a notification is left for the next connection (it stays unacked).
        """
        s = self.node.settings
        now = self.node.clock()
        pushed: dict[str, list[str]] = {}
        for session in list(self.awaiting):
            awaiting = self.reader(session).awaiting
            if awaiting and session.state is State.OPEN:
                for nid, entry in list(awaiting.items()):
                    n, attempts, due = entry
                    if due > now:
                        continue
                    expired = n.expires_at is not None and n.expires_at <= now
                    if attempts >= s.max_delivery_attempts or expired:
                        del awaiting[nid]
                        continue
                    session.push(self.message(n, redelivered=True))
                    entry[1] = attempts + 1
                    entry[2] = now + s.ack_timeout * 2**attempts
                    pushed.setdefault(n.user_id, []).append(nid)
            if not awaiting or session.state is not State.OPEN:
                self.awaiting.discard(session)
        if pushed:
            await self.store.mark_delivered(pushed, now=now)
        return sum(map(len, pushed.values()))

    # --- delivered_at -------------------------------------------------------------------

    def note_delivered(self, user_id: str, nid: str) -> None:
        """Record, soon and batched, that ``nid`` reached a connection of ``user_id``."""
        self._delivered.setdefault(user_id, []).append(nid)
        if self._flushing is None:
            self._flushing = self._tasks.spawn(self.flush_delivered())

    async def flush_delivered(self) -> None:
        """Write the pending ``delivered_at`` marks (``settled`` waits for this)."""
        # Pushes that happen while a flush is being written wait for the next one: one
        # transaction per round, however many pushes it covers.
        try:
            while self._delivered:
                pending, self._delivered = self._delivered, {}
                try:
                    await self.store.mark_delivered(pending, now=self.node.clock())
                except Exception as exc:
                    if failure_status(exc) is None:
                        raise
                    # Only a record (metrics, escalation's "unless delivered"): the
                    # notifications themselves reached their connections.
                    self.node.metrics.store_errors += 1
                    log.warning("delivery marks of %d users not written: %s", len(pending), exc)
        finally:
            if self._flushing is asyncio.current_task():
                self._flushing = None
