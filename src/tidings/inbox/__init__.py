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
from ..hub import Outbound
from ..protocol import ErrorCode
from ..session import Session
from ..store import Created, Creation, NewNotification, Store, StoreError, failure_status
from ..tasks import TaskSet
from .host import Host
from .opening import Opening
from .push import Pusher, Reader
from .requests import (
    MAX_BATCH,
    MAX_MESSAGE,
    MAX_RECIPIENTS,
    MAX_TITLE,
    BatchItem,
    BatchRequest,
    CreateRequest,
    InboxError,
    Localizer,
    Planner,
    check_target,
    content,
    fingerprint,
    no_plan,
    view,
)
from .state import InboxState
from .webhooks import WebhookSender

__all__ = [
    "BatchItem",
    "BatchRequest",
    "CreateRequest",
    "Host",
    "Inbox",
    "InboxError",
    "Localizer",
    "Reader",
    "view",
]

log = logging.getLogger("tidings.inbox")


# Seconds a batch of due webhooks stays claimed by the instance sending it.
WEBHOOK_LEASE: Final = 300.0
PURGE_BATCH: Final = 1000
# A batch result not known yet (replaced before ``create_many`` returns).
_PENDING: Final = InboxError("not created")


class Inbox(InboxState):
    """The inbox of one node, over a store.

    Args:
        node: the node whose connections receive pushes.
        store: where notifications live.
        plan: the deliveries on other channels a new notification gets (escalation).
        templates: what renders the stored title and message per recipient.
    """

    def __init__(
        self,
        node: Host,
        store: Store,
        *,
        plan: Planner = no_plan,
        templates: Localizer | None = None,
    ) -> None:
        self.node = node
        self.store = store
        self._plan = plan
        self._templates = templates
        self._tasks = TaskSet(log, "inbox")
        self.pusher = Pusher(node, store, self._tasks)
        self.opening = Opening(node, store, self.pusher, self._tasks)
        self.pusher.refill = self.opening.refill
        self._loops: list[asyncio.Task[None]] = []
        s = node.settings
        self.webhooks = WebhookSender(s.webhook_url, s.webhook_secret) if s.webhook_url else None

    def attach(self, session: Session, *, last_seq: int | None, ack_mode: bool) -> None:
        """Keep inbox state for a new connection (the gateway calls this before the
        connection can join the hub): where it resumes from, whether it acknowledges."""
        self.pusher.attach(session, last_seq=last_seq, ack_mode=ack_mode)

    def detach(self, session: Session) -> None:
        """Forget a closed connection."""
        self.pusher.detach(session)

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

    async def _prepare(
        self, req: CreateRequest, now: float
    ) -> tuple[NewNotification, Sequence[str] | None]:
        """A request's checked content, with each recipient's own title and message where
        its type has templates, and the recipients to name in the store (None: the role
        or everyone, resolved by the store set-wise).

        Raises:
            InboxError: what is wrong with the request.
        """
        new = content(req, now=now, plan=self._plan)
        check_target(req)
        named = [req.userId] if req.userId is not None else req.userIds
        templates = self._templates
        if templates is None or not templates.covers(new.type):
            return new, named
        if named is not None:
            return await self._localize(new, named), named
        # A role or everyone: resolved here to render each recipient's text; stored as
        # those named users only when some text differs (else set-wise, as without).
        store = self.store
        role = req.role
        users = await (store.all_users() if role is None else store.users_with_role(role))
        new = await self._localize(new, users)
        return new, (users if new.texts else None)

    async def _localize(self, new: NewNotification, users: Sequence[str]) -> NewNotification:
        """``new`` with each recipient's title and message from the templates of its type
        in their locale (their directory entry's), where there are any."""
        templates = self._templates
        if templates is None:
            return new
        texts: dict[str, tuple[str | None, str | None]] = {}
        for user in dict.fromkeys(users):
            got = templates.in_app(new, user, await self.store.contact(user))
            if got is None:
                continue
            title, message = got
            # What the request could not hold, a rendering may not either.
            if (title is not None and len(title) > MAX_TITLE) or (
                message is not None and len(message) > MAX_MESSAGE
            ):
                log.warning("in-app template for %s too long; its own text is stored", user)
            elif "\x00" in (title or "") + (message or ""):
                log.warning("in-app template for %s gave a NUL; its own text is stored", user)
            else:
                texts[user] = got
        return msgspec.structs.replace(new, texts=texts) if texts else new

    async def _store(
        self,
        new: NewNotification,
        req: CreateRequest,
        users: Sequence[str] | None,
        key: str | None,
        now: float,
    ) -> Created:
        """Commit one request: named users through ``create`` (group commit), a role or
        everyone (``users`` None) through ``create_for_role`` (set-wise, however many)."""
        # Only a key is checked against the fingerprint: an unkeyed create (the common
        # one) skips hashing the whole request.
        fp = fingerprint(req) if key is not None else ""
        if users is None:
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
        new, users = await self._prepare(req, now)
        started = self.node.monotonic()
        try:
            created = await self._store(new, req, users, idempotency_key, now)
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
        prepared: list[
            tuple[int, NewNotification, CreateRequest, Sequence[str] | None, str | None]
        ] = []
        results: list[Created | Exception] = []
        total = 0
        for i, (req, key) in enumerate(requests):
            try:
                if key is not None and not 0 < len(key) <= 255:
                    raise InboxError("idempotencyKey must be 1 to 255 characters")
                new, users = await self._prepare(req, now)
            except InboxError as exc:
                results.append(exc)
                continue
            total += 1 if req.userId is not None else len(req.userIds or ())
            prepared.append((i, new, req, users, key))
            results.append(_PENDING)
        if total > MAX_RECIPIENTS:
            raise InboxError(f"at most {MAX_RECIPIENTS} named recipients per batch")
        started = self.node.monotonic()
        # Named users: handed to the store together (no task each), so its group commit
        # takes them in one transaction. A role or everyone: each set-wise on its own.
        named = [p for p in prepared if p[3] is not None]
        wide = [p for p in prepared if p[3] is None]
        wide_out: asyncio.Future[list[Created | BaseException]] | None = None
        if wide:
            wide_out = asyncio.gather(
                *(self._store(new, req, None, key, now) for _, new, req, _, key in wide),
                return_exceptions=True,
            )
        try:
            named_out = await self.store.create_many(
                [
                    Creation(new, users, now, key, fingerprint(req) if key is not None else "")
                    for _, new, req, users, key in named
                    if users is not None
                ]
            )
        finally:
            wide_res = [] if wide_out is None else await wide_out
        by_index: dict[int, Created | BaseException] = {}
        by_index.update(zip((p[0] for p in named), named_out, strict=True))
        by_index.update(zip((p[0] for p in wide), wide_res, strict=True))
        outcomes = [by_index[p[0]] for p in prepared]
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
        await self.opening.settled()
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
            reader = self.pusher.attached(session)
            if reader is not None:
                for nid in event.pop:
                    reader.awaiting.pop(nid, None)
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

    async def open_session(self, session: Session) -> None:
        """Welcome a newly authenticated connection, then catch it up (see ``Opening``)."""
        await self.opening.open_session(session)

    def resync(self) -> None:
        """Catch every local connection up from the last notification it was sent: after
        a broker outage, notifications committed on other instances were not pushed."""
        self.opening.resync()

    async def command(self, session: Session, cmd: protocol.Command) -> None:
        """Carry out an inbox command from a client and reply to it (after the
        connection's catch-up, if it is still running)."""
        try:
            await self.opening.caught_up(session)
            if isinstance(cmd, protocol.Ack):
                self.pusher.reader(session).ack_mode = True
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
            elif isinstance(cmd, protocol.Unarchive):
                await self.unarchive(session.user_id, cmd.id_list(), reply=session, reply_to=cmd.id)
            elif isinstance(cmd, protocol.GetNotifications):
                page = await self.list(
                    session.user_id,
                    unread_only=cmd.unreadOnly,
                    archived=cmd.archived,
                    limit=cmd.limit,
                    cursor=cmd.cursor,
                )
                session.send(page, reply_to=cmd.id)
        except InboxError as exc:
            session.error(ErrorCode.INVALID_MESSAGE, str(exc), reply_to=cmd.id)
        except Exception as exc:
            if failure_status(exc) is None:
                log.exception("inbox %s failed for %s", cmd.name, session.client_id)
                session.error(ErrorCode.SERVER_ERROR, "internal error", reply_to=cmd.id)
                return
            self.opening.store_failed(cmd.name, session, exc)
            session.error(
                ErrorCode.UNAVAILABLE,
                "the notification store is unavailable; try again",
                reply_to=cmd.id,
            )
