"""Opening a connection's inbox: the welcome's unread count, the catch-up of what it
missed (before anything live, in ``seq`` order), and recording the user for role and
``all`` targets.

Only the welcome is awaited by the transport; the catch-up and the record run in the
background, beside the connection's messages, so a store that stalls delays them, never
a ``ping``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Final

from ..session import Session, State
from ..store import Store, failure_status
from ..tasks import TaskSet
from .host import Host
from .push import Pusher

log = logging.getLogger("tidings.inbox")

CATCH_UP_PAGE: Final = 500
MAX_CATCH_UP: Final = 10_000


class Opening:
    """What the inbox does for connections that open (and after a broker outage).

    Args:
        node: the node whose connections these are.
        store: where the missed notifications are read.
        pusher: how they are framed and tracked for redelivery.
        tasks: where the background work is kept (the inbox's).
    """

    def __init__(self, node: Host, store: Store, pusher: Pusher, tasks: TaskSet) -> None:
        self.node = node
        self.store = store
        self.pusher = pusher
        self._tasks = tasks
        # Catch-ups and user records running (``settled`` waits for them).
        self._running: set[asyncio.Task[None]] = set()
        self._catch_ups: dict[Session, asyncio.Task[None]] = {}

    def resync(self) -> None:
        """Catch every local connection up from the last notification it was sent: after
        a broker outage, notifications committed on other instances were not pushed."""
        for conn in list(self.node.hub.connections()):
            if not isinstance(conn, Session) or conn.state is not State.OPEN:
                continue
            reader = self.pusher.reader(conn)
            if reader.held is None:
                reader.held = []
                self._start_catch_up(conn, reader.seen_seq)

    async def settled(self) -> None:
        """Wait for the catch-ups and user records started so far."""
        while self._running:
            await asyncio.wait(list(self._running))

    async def catch_up(
        self, session: Session, last_seq: int | None, *, unread: int | None = None
    ) -> None:
        """Send a newly opened connection what it missed, then release held live ones.

        The connection's ``Reader.held`` must be a list when this starts (it is from
        ``Inbox.attach``); live notifications for the session collect there meanwhile.
        Missed notifications are read a page at a time, up to ``MAX_CATCH_UP``; beyond
        that, clients page with ``get_notifications``. ``unread``: the user's unread count,
        read after ``held`` was set; when it is 0 a client that catches up on unread ones
        has nothing to read (anything newer is held), which spares a reconnect storm a
        query per connection.
        """
        now = self.node.clock()
        user = session.user_id
        reader = self.pusher.reader(session)
        try:
            sent = last_seq or 0
            top = sent
            if self.node.clustered:
                # The user's newest seq now: live ones after it are ordered against it.
                newest = await self.store.page(user, include_archived=True, limit=1)
                top = max(top, newest[0].seq if newest else 0)
            delivered: list[str] = []
            while len(delivered) < MAX_CATCH_UP and session.state is State.OPEN:
                if last_seq is not None:
                    page = await self.store.since(user, sent, now=now, limit=CATCH_UP_PAGE)
                elif reader.ack_mode:
                    page = await self.store.unacked(
                        user, now=now, after_seq=sent, limit=CATCH_UP_PAGE
                    )
                elif unread == 0:
                    page = []
                else:
                    # A client that neither acks nor says where it stopped gets every
                    # unread one: what a notification centre shows on (re)connect.
                    page = await self.store.unread(
                        user, now=now, after_seq=sent, limit=CATCH_UP_PAGE
                    )
                for n in page:
                    if session.push(self.pusher.message(n, recovered=True)):
                        self.pusher.track(session, n)
                        delivered.append(n.id)
                    sent = max(sent, n.seq)
                    reader.seen_seq = max(reader.seen_seq, n.seq)
                if len(page) < CATCH_UP_PAGE:
                    break
            held = reader.held or []
            reader.held = None
            for n in sorted(held, key=lambda x: x.seq):
                if n.seq <= sent:
                    continue
                if not n.in_app:
                    # Never pushed, but its seq is taken: the next one need not wait.
                    reader.seen_seq = max(reader.seen_seq, n.seq)
                elif session.push(self.pusher.message(n)):
                    self.pusher.track(session, n)
                    delivered.append(n.id)
                    sent = n.seq
                    reader.seen_seq = max(reader.seen_seq, n.seq)
            reader.seen_seq = max(reader.seen_seq, top)
            if delivered:
                await self.store.mark_delivered({user: delivered}, now=now)
        finally:
            # Failed midway: what was held still goes out, after what was caught up.
            self.release_held(session)

    def refill(self, session: Session, last_seq: int | None) -> None:
        """Catch a connection up from ``last_seq`` again (notifications that never came
        over the broker); its ``Reader.held`` must already be a list."""
        self._start_catch_up(session, last_seq)

    def _start_catch_up(
        self, session: Session, last_seq: int | None, unread: int | None = None
    ) -> None:
        """Catch ``session`` up in the background: the connection's other messages are
        answered meanwhile, and live notifications wait in its ``Reader.held``."""
        task = self._track_opening(self._catch_up_or_warn(session, last_seq, unread))
        self._catch_ups[session] = task
        task.add_done_callback(
            lambda done: (
                self._catch_ups.pop(session) if self._catch_ups.get(session) is done else None
            )
        )

    async def caught_up(self, session: Session) -> None:
        """Wait for the catch-up of ``session``, if one runs: inbox messages the client
        sends meanwhile are answered after it, as the protocol says (a count asked for
        right after the welcome counts what the catch-up sent)."""
        task = self._catch_ups.get(session)
        if task is not None:
            await asyncio.wait([task])

    def _track_opening(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = self._tasks.spawn(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def _catch_up_or_warn(
        self, session: Session, last_seq: int | None, unread: int | None
    ) -> None:
        try:
            await self.catch_up(session, last_seq, unread=unread)
        except Exception as exc:
            if failure_status(exc) is None:
                raise
            # Read but not written (a full disk), or stalled: live traffic still flows.
            self.store_failed("catch-up", session, exc)

    async def _remember(self, session: Session) -> None:
        """Record the user and their token's roles (role and ``all`` targets)."""
        try:
            await self.store.remember_user(session.user_id, session.roles, now=self.node.clock())
        except Exception as exc:
            if failure_status(exc) is None:
                raise
            self.store_failed("recording the user", session, exc)

    async def open_session(self, session: Session) -> None:
        """Welcome a newly authenticated connection with its unread count, then catch up.

        Anything the hub sent the connection meanwhile was held by the session and follows
        the welcome, so the welcome is always the first message.
        """
        try:
            unread = await self.store.unread_count(session.user_id, now=self.node.clock())
        except Exception as exc:
            if failure_status(exc) is None:
                raise
            # The store is down: open anyway, for live traffic, and say the inbox is not.
            self.store_failed("welcome", session, exc)
            if session.state is State.OPEN:
                session.send_welcome(None, session.welcome_reply_to, inbox=False)
                self.release_held(session)
            return
        if session.state is not State.OPEN:  # closed while the count was read
            return
        session.send_welcome(unread, session.welcome_reply_to)
        reader = self.pusher.reader(session)
        if (
            unread == 0
            and not reader.held
            and reader.last_seq is None
            and not reader.ack_mode
            and not self.node.clustered
        ):
            # Nothing to catch up, provably: the client catches up on unread ones, it has
            # none (counted after ``held`` was set), and nothing live arrived meanwhile.
            # ``catch_up`` would read nothing and send nothing; live ones now go straight
            # out. Spares a connect storm a task per connection.
            reader.held = None
        else:
            # Neither waits for the other nor holds up the connection's messages: a store
            # stall (a write lock held elsewhere) delays the catch-up, never a ping.
            self._start_catch_up(session, reader.last_seq, unread)
        self._track_opening(self._remember(session))

    def store_failed(self, what: str, session: Session, exc: BaseException) -> None:
        self.node.metrics.store_errors += 1
        log.warning("%s for %s: store unavailable: %s", what, session.client_id, exc)

    def release_held(self, session: Session) -> None:
        """Push the live notifications held back for a catch-up that ended or will not
        happen."""
        reader = self.pusher.reader(session)
        held, reader.held = reader.held or [], None
        for n in sorted(held, key=lambda x: x.seq):
            if n.in_app:
                if not session.push(self.pusher.message(n)):
                    continue
                self.pusher.track(session, n)
            # One with in-app off is never pushed, but its seq counts as seen all the same.
            reader.seen_seq = max(reader.seen_seq, n.seq)
