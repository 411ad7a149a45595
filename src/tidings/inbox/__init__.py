"""The notification inbox: create, deliver, resume on connect, acknowledge, read, query.

A create is committed to the store first (a 2xx means every recipient's row is in the
database), then pushed to each recipient's open connections. A connection that opens
gets what it missed before anything live: either everything after the ``lastSeq`` it
names, or every unacknowledged notification. Live notifications that arrive while that
catch-up query runs are held back and sent after it, so each connection sees ``seq``
strictly increasing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final

import msgspec

from .. import cluster, protocol
from ..broker import BrokerError
from ..hub import Outbound
from ..protocol import ErrorCode
from ..session import Session, State
from ..store import Created, NewNotification, Store, StoreError, failure_status
from ..tasks import TaskSet
from .host import Host
from .push import Pusher
from .requests import (
    MAX_BATCH,
    MAX_PAGE,
    MAX_RECIPIENTS,
    BatchItem,
    BatchRequest,
    CreateRequest,
    InboxError,
    Planner,
    check_target,
    content,
    decode_cursor,
    encode_cursor,
    fingerprint,
    no_plan,
    view,
)
from .webhooks import WebhookSender

__all__ = [
    "BatchItem",
    "BatchRequest",
    "CreateRequest",
    "Host",
    "Inbox",
    "InboxError",
    "view",
]

log = logging.getLogger("tidings.inbox")


# Seconds a batch of due webhooks stays claimed by the instance sending it.
WEBHOOK_LEASE: Final = 300.0
PURGE_BATCH: Final = 1000
# A batch result not known yet (replaced before ``create_many`` returns).
_PENDING: Final = InboxError("not created")
CATCH_UP_PAGE: Final = 500
MAX_CATCH_UP: Final = 10_000


class Inbox:
    """The inbox of one node, over a store.

    Args:
        node: the node whose connections receive pushes.
        store: where notifications live.
        plan: the deliveries on other channels a new notification gets (escalation).
    """

    def __init__(self, node: Host, store: Store, *, plan: Planner = no_plan) -> None:
        self.node = node
        self.store = store
        self._plan = plan
        self._tasks = TaskSet(log, "inbox")
        self.pusher = Pusher(node, store, self._tasks)
        # Catch-ups and user records of opened connections (``settled`` waits for them).
        self._catching_up: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        s = node.settings
        self.webhooks = WebhookSender(s.webhook_url, s.webhook_secret) if s.webhook_url else None

    def start(self) -> None:
        """Start the redelivery and retention loops (the server calls this)."""
        s = self.node.settings
        loop = asyncio.get_running_loop()
        tick = min(5.0, max(0.05, s.ack_timeout / 4))
        self._loops.append(loop.create_task(self._every(tick, self.redeliver_due)))
        if s.purge_interval > 0:
            self._loops.append(loop.create_task(self._every(s.purge_interval, self.purge)))
        if self.webhooks is not None:
            tick = min(30.0, max(0.05, s.webhook_delay / 4))
            self._loops.append(loop.create_task(self._every(tick, self.send_webhooks)))

    async def _every(self, seconds: float, job: Callable[[], Awaitable[int]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.exception("inbox background job failed; retrying next time")

    # --- background work ----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, kept referenced until it ends."""
        self._tasks.spawn(coro)

    async def drain(self) -> None:
        """Stop the loops and wait for background work (shutdown)."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        await self._tasks.drain(self.node.settings.shutdown_timeout)
        await self.pusher.flush_delivered()
        if self.webhooks is not None:
            await self.webhooks.close()

    # --- create -------------------------------------------------------------------------

    async def _store(
        self, new: NewNotification, req: CreateRequest, key: str | None, now: float
    ) -> Created:
        """Commit one request: named users through ``create`` (group commit), a role or
        everyone through ``create_for_role`` (set-wise, however many they are)."""
        fp = fingerprint(req)
        if req.userId is not None:
            users = [req.userId]
        elif req.userIds is not None:
            users = req.userIds
        else:
            return await self.store.create_for_role(
                new, req.role, now=now, idempotency_key=key, fingerprint=fp
            )
        return await self.store.create(new, users, now=now, idempotency_key=key, fingerprint=fp)

    async def notify(self, idempotency_key: str | None = None, **fields: Any) -> Created:
        """The embedding API: ``await inbox.notify(userId="u1", title="Hi", priority="HIGH")``
        with the fields of ``POST /api/notifications``, validated the same way.

        Raises:
            InboxError: an invalid request (nothing is stored).
            IdempotencyConflict: the key was used for a different request.
        """
        try:
            req = msgspec.convert(fields, CreateRequest)
        except msgspec.ValidationError as exc:
            raise InboxError(str(exc)) from None
        return await self.create(req, idempotency_key=idempotency_key)

    async def create(self, req: CreateRequest, *, idempotency_key: str | None = None) -> Created:
        """Commit one notification per recipient, then push to those online.

        Raises:
            InboxError: an invalid request (nothing is stored).
            IdempotencyConflict: the key was used for a different request.
        """
        now = self.node.clock()
        new = content(req, now=now, plan=self._plan)
        check_target(req)
        started = self.node.monotonic()
        try:
            created = await self._store(new, req, idempotency_key, now)
        except StoreError:
            self.node.metrics.store_errors += 1
            raise
        self.node.metrics.store_create_seconds.observe(self.node.monotonic() - started)
        if not created.replayed:
            # Committed: the answer does not wait for the broker (see ``Pusher``).
            self.pusher.dispatch(created.notifications)
        return created

    async def create_many(
        self, requests: Sequence[tuple[CreateRequest, str | None]]
    ) -> list[Created | Exception]:
        """Several creates, each with its own idempotency key, committed together (one
        group commit), then pushed; one result per request, in order: its ``Created``, or
        the exception that failed it alone (``InboxError``, ``IdempotencyConflict``).

        Raises:
            InboxError: the batch as a whole is refused (too many requests or recipients).
            StoreError: the store failed: nothing of the batch is committed.
        """
        if not 0 < len(requests) <= MAX_BATCH:
            raise InboxError(f"give 1 to {MAX_BATCH} notifications")
        now = self.node.clock()
        prepared: list[tuple[int, NewNotification, CreateRequest, str | None]] = []
        results: list[Created | Exception] = []
        total = 0
        for i, (req, key) in enumerate(requests):
            try:
                if key is not None and not 0 < len(key) <= 255:
                    raise InboxError("idempotencyKey must be 1 to 255 characters")
                new = content(req, now=now, plan=self._plan)
                check_target(req)
            except InboxError as exc:
                results.append(exc)
                continue
            total += 1 if req.userId is not None else len(req.userIds or ())
            prepared.append((i, new, req, key))
            results.append(_PENDING)
        if total > MAX_RECIPIENTS:
            raise InboxError(f"at most {MAX_RECIPIENTS} named recipients per batch")
        started = self.node.monotonic()
        # Started together, so the store's group commit takes them in one transaction.
        outcomes = await asyncio.gather(
            *(self._store(new, req, key, now) for _, new, req, key in prepared),
            return_exceptions=True,
        )
        failed = [o for o in outcomes if isinstance(o, StoreError)]
        if failed and len(failed) == len(outcomes):
            self.node.metrics.store_errors += 1
            raise failed[0]
        self.node.metrics.store_create_seconds.observe(self.node.monotonic() - started)
        for (i, *_), outcome in zip(prepared, outcomes, strict=True):
            if isinstance(outcome, Exception):
                results[i] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results[i] = outcome
                if not outcome.replayed:
                    self.pusher.dispatch(outcome.notifications)
        return results

    async def settled(self) -> None:
        """Wait until background work started so far is done: catch-ups of opened
        connections, pushes waiting for the broker, and ``delivered_at`` marks."""
        while self._catching_up:
            await asyncio.wait(list(self._catching_up))
        await self.pusher.settled()

    def receive(
        self,
        event: cluster.Committed | cluster.CommittedMany | cluster.Told | cluster.Acknowledged,
    ) -> int:
        """Carry out an inbox event another instance (or this one) sent over the broker."""
        if isinstance(event, cluster.Committed):
            return self.pusher.deliver(event.notification)
        if isinstance(event, cluster.CommittedMany):
            return self.pusher.deliver_many(event.notifications)
        sessions = self.node.local_sessions(event.user)
        for session in sessions:
            for nid in event.pop:
                session.awaiting.pop(nid, None)
        if isinstance(event, cluster.Acknowledged):
            return 0
        out = Outbound(bytes(event.envelope))
        count = 0
        for session in sessions:
            if session.client_id != event.skip and session.push(out):
                count += 1
        self.node.hub.messages_out += count
        self.node.metrics.sent["inbox_event"] += count
        return count

    def resync(self) -> None:
        """Catch every local connection up from the last notification it was sent: after
        a broker outage, notifications committed on other instances were not pushed."""
        for conn in list(self.node.hub.connections()):
            if isinstance(conn, Session) and conn.state is State.OPEN and conn.inbox_held is None:
                conn.inbox_held = []
                self._start_catch_up(conn, conn.seen_seq)

    async def redeliver_due(self) -> int:
        """Push again what acknowledging connections have not acked in time (see
        ``Pusher.redeliver_due``); returns how many."""
        return await self.pusher.redeliver_due()

    async def send_webhooks(self) -> int:
        """POST ``notification.unacked`` for what nobody acknowledged within
        ``webhook_delay``; failures retry with doubling waits (30 s, 60 s, … capped at an
        hour) until ``webhook_max_attempts``. Returns how many were delivered."""
        if self.webhooks is None:
            return 0
        s = self.node.settings
        now = self.node.clock()
        # Claimed for WEBHOOK_LEASE seconds: instances sharing the store never send the
        # same one at once, and a claim lost with its instance comes back after the lease.
        due = await self.store.webhook_due(
            created_before=now - s.webhook_delay, now=now, limit=100, lease=WEBHOOK_LEASE
        )
        sent = 0
        for n, attempts in due:
            payload = {"userId": n.user_id, "notification": view(n)}
            ok = await self.webhooks.send(
                "notification.unacked", payload, now=now, msg_id=f"{n.id}.unacked"
            )
            tries = attempts + 1
            next_at = (
                None
                if ok or tries >= s.webhook_max_attempts
                else (now + min(3600.0, 30.0 * 2**attempts))
            )
            await self.store.webhook_result(n.user_id, n.id, sent=ok, next_at=next_at)
            sent += ok
        return sent

    async def purge(self) -> int:
        """Delete expired notifications and those past retention, in bounded batches."""
        s = self.node.settings
        now = self.node.clock()
        cutoff = now - s.retention_days * 86400
        total = 0
        while True:
            n = await self.store.purge(created_before=cutoff, now=now, limit=PURGE_BATCH)
            total += n
            if n < PURGE_BATCH:
                break
            await asyncio.sleep(0)  # let other work in between batches
        if total:
            log.info("retention removed %d notifications", total)
        return total

    async def catch_up(
        self, session: Session, last_seq: int | None, *, unread: int | None = None
    ) -> None:
        """Send a newly opened connection what it missed, then release held live ones.

        ``session.inbox_held`` must be a list when this starts (set at open); live
        notifications for the session collect there meanwhile. Missed notifications are
        read a page at a time, up to ``MAX_CATCH_UP``; beyond that, clients page with
        ``get_notifications``. ``unread``: the user's unread count, read after
        ``inbox_held`` was set; when it is 0 a client that catches up on unread ones has
        nothing to read (anything newer is held), which spares a reconnect storm a query
        per connection.
        """
        now = self.node.clock()
        user = session.user_id
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
                elif session.ack_mode:
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
                    session.seen_seq = max(session.seen_seq, n.seq)
                if len(page) < CATCH_UP_PAGE:
                    break
            held = session.inbox_held or []
            session.inbox_held = None
            for n in sorted(held, key=lambda x: x.seq):
                if n.seq > sent and session.push(self.pusher.message(n)):
                    self.pusher.track(session, n)
                    delivered.append(n.id)
                    sent = n.seq
                    session.seen_seq = max(session.seen_seq, n.seq)
            session.seen_seq = max(session.seen_seq, top)
            if delivered:
                await self.store.mark_delivered({user: delivered}, now=now)
        finally:
            # Failed midway: what was held still goes out, after what was caught up.
            self._release_held(session)

    def _start_catch_up(
        self, session: Session, last_seq: int | None, unread: int | None = None
    ) -> None:
        """Catch ``session`` up in the background: the connection's other messages are
        answered meanwhile, and live notifications wait in ``inbox_held``."""
        self._track_opening(self._catch_up_or_warn(session, last_seq, unread))

    def _track_opening(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._tasks.spawn(coro)
        self._catching_up.add(task)
        task.add_done_callback(self._catching_up.discard)

    async def _catch_up_or_warn(
        self, session: Session, last_seq: int | None, unread: int | None
    ) -> None:
        try:
            await self.catch_up(session, last_seq, unread=unread)
        except Exception as exc:
            if failure_status(exc) is None:
                raise
            # Read but not written (a full disk), or stalled: live traffic still flows.
            self._store_failed("catch-up", session, exc)

    async def _remember(self, session: Session) -> None:
        """Record the user and their token's roles (role and ``all`` targets)."""
        try:
            await self.store.remember_user(session.user_id, session.roles, now=self.node.clock())
        except Exception as exc:
            if failure_status(exc) is None:
                raise
            self._store_failed("recording the user", session, exc)

    async def open_session(self, session: Session) -> None:
        """Welcome a newly authenticated connection with its unread count, then catch up.

        Anything the hub sent the connection meanwhile was held by the session and follows
        the welcome, so the welcome is always the first message.
        """
        try:
            unread = await self.unread_count(session.user_id)
        except Exception as exc:
            if failure_status(exc) is None:
                raise
            # The store is down: open anyway, for live traffic, and say the inbox is not.
            self._store_failed("welcome", session, exc)
            if session.state is State.OPEN:
                session.send_welcome(None, session.welcome_reply_to, inbox=False)
                self._release_held(session)
            return
        if session.state is not State.OPEN:  # closed while the count was read
            return
        session.send_welcome(unread, session.welcome_reply_to)
        # Neither waits for the other nor holds up the connection's messages: a store
        # stall (a write lock held elsewhere) delays the catch-up, never a ping.
        self._start_catch_up(session, session.last_seq, unread)
        self._track_opening(self._remember(session))

    def _store_failed(self, what: str, session: Session, exc: BaseException) -> None:
        self.node.metrics.store_errors += 1
        log.warning("%s for %s: store unavailable: %s", what, session.client_id, exc)

    def _release_held(self, session: Session) -> None:
        """Push the live notifications held back for a catch-up that ended or will not
        happen."""
        held, session.inbox_held = session.inbox_held or [], None
        for n in sorted(held, key=lambda x: x.seq):
            if session.push(self.pusher.message(n)):
                self.pusher.track(session, n)

    async def command(self, session: Session, cmd: protocol.Command) -> None:
        """Carry out an inbox command from a client and reply to it."""
        try:
            if isinstance(cmd, protocol.Ack):
                session.ack_mode = True
                acked = await self.ack(session.user_id, cmd.id_list())
                session.send(protocol.Acked(ids=acked), reply_to=cmd.id)
            elif isinstance(cmd, protocol.MarkRead):
                ids = None if cmd.all else cmd.id_list()
                await self.mark_read(session.user_id, ids, reply=session, reply_to=cmd.id)
            elif isinstance(cmd, protocol.Archive | protocol.Delete):
                await self.remove(
                    session.user_id,
                    cmd.id_list(),
                    delete=isinstance(cmd, protocol.Delete),
                    reply=session,
                    reply_to=cmd.id,
                )
            elif isinstance(cmd, protocol.GetNotifications):
                page = await self.list(
                    session.user_id, unread_only=cmd.unreadOnly, limit=cmd.limit, cursor=cmd.cursor
                )
                session.send(page, reply_to=cmd.id)
        except InboxError as exc:
            session.error(ErrorCode.INVALID_MESSAGE, str(exc), reply_to=cmd.id)
        except Exception as exc:
            if failure_status(exc) is None:
                log.exception("inbox %s failed for %s", cmd.name, session.client_id)
                session.error(ErrorCode.SERVER_ERROR, "internal error", reply_to=cmd.id)
                return
            self._store_failed(cmd.name, session, exc)
            session.error(
                ErrorCode.UNAVAILABLE,
                "the notification store is unavailable; try again",
                reply_to=cmd.id,
            )

    async def unread_count(self, user_id: str) -> int:
        return await self.store.unread_count(user_id, now=self.node.clock())

    # --- read state and queries ---------------------------------------------------------

    async def mark_read(
        self,
        user_id: str,
        ids: Sequence[str] | None,
        *,
        reply: Session | None = None,
        reply_to: str | None = None,
    ) -> tuple[list[str], int]:
        """Mark read and tell every connection of the user; returns (changed ids, unread).

        ``reply`` (the asking connection) gets its copy with ``replyTo`` even when
        nothing changed; the user's other connections hear only of changes.
        """
        changed = await self.store.mark_read(user_id, ids, now=self.node.clock())
        unread = await self.unread_count(user_id)
        data = protocol.NotificationRead(ids=changed, unreadCount=unread)
        await self._tell_user(user_id, data, changed, reply, reply_to)
        return changed, unread

    async def remove(
        self,
        user_id: str,
        ids: Sequence[str],
        *,
        delete: bool,
        reply: Session | None = None,
        reply_to: str | None = None,
    ) -> tuple[list[str], int]:
        """Archive (or delete) and tell every connection of the user, as ``mark_read`` does:
        ``notification_archived`` / ``notification_deleted`` with the ids and unread count."""
        if delete:
            changed = await self.store.delete(user_id, ids)
        else:
            changed = await self.store.archive(user_id, ids, now=self.node.clock())
        unread = await self.unread_count(user_id)
        told = protocol.NotificationDeleted if delete else protocol.NotificationArchived
        # Gone from the inbox: no tab on any instance redelivers them.
        await self._tell_user(
            user_id,
            told(ids=changed, unreadCount=unread),
            changed,
            reply,
            reply_to,
            pop=True,
        )
        return changed, unread

    async def _tell_user(
        self,
        user_id: str,
        data: protocol.NotificationRead,
        changed: list[str],
        reply: Session | None,
        reply_to: str | None,
        *,
        pop: bool = False,
    ) -> None:
        """Tell the user's connections on every instance (but ``reply``, which gets its
        own copy with ``replyTo``) of a change; ``pop`` ends redelivery of ``changed``."""
        if reply is not None:
            if pop:
                for nid in changed:
                    reply.awaiting.pop(nid, None)
            reply.send(data, reply_to=reply_to)
        if not changed:
            return
        envelope = self.node.envelope(self.node.new_id(), data.kind, data)
        told = cluster.Told(
            user=user_id,
            skip=reply.client_id if reply else None,
            pop=changed if pop else [],
            envelope=msgspec.Raw(envelope),
        )
        await self._to_user(told)

    async def _to_user(self, event: cluster.Told | cluster.Acknowledged) -> None:
        """An inbox event for the user's connections on every instance (``receive`` on
        each); when the cluster cannot be reached, this instance's get it at least."""
        try:
            await self.node.send(cluster.topic("user", event.user), event)
        except BrokerError as exc:
            log.warning("inbox event for %s not sent over the cluster: %s", event.user, exc)
            self.receive(event)

    async def ack(self, user_id: str, ids: Sequence[str]) -> list[str]:
        """Record acknowledgements; no tab of the user, on any instance, gets these again."""
        await self._to_user(cluster.Acknowledged(user=user_id, pop=list(ids)))
        return await self.store.ack(user_id, ids, now=self.node.clock())

    async def list(
        self, user_id: str, *, unread_only: bool, limit: int, cursor: str | None
    ) -> protocol.Notifications:
        """One page, newest first: ``{items, unreadCount, nextCursor}``."""
        if not 1 <= limit <= MAX_PAGE:
            raise InboxError(f"limit must be 1 to {MAX_PAGE}")
        before = None if cursor is None else decode_cursor(cursor)
        rows = await self.store.page(
            user_id, unread_only=unread_only, before_seq=before, limit=limit + 1
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return protocol.Notifications(
            items=[view(n) for n in rows],
            unreadCount=await self.unread_count(user_id),
            nextCursor=encode_cursor(rows[-1].seq) if more and rows else None,
        )

    async def get(self, user_id: str, notification_id: str) -> protocol.Notification | None:
        n = await self.store.get(user_id, notification_id)
        return None if n is None else view(n)
