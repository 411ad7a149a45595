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
import base64
import binascii
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

import msgspec

from .. import cluster, protocol
from ..broker import BrokerError, StreamPosition
from ..channels import NamespacePolicy
from ..config import Settings
from ..delivery.rules import Step, check_steps
from ..hub import Hub, Outbound
from ..metrics import Metrics
from ..protocol import ErrorCode
from ..publication import iso_timestamp
from ..session import Session, State
from ..store import (
    Action,
    Created,
    NewNotification,
    Notification,
    Priority,
    Store,
    StoreError,
    failure_status,
)
from ..store.deliveries import Planned
from ..tasks import TaskSet
from .webhooks import WebhookSender

log = logging.getLogger("tidings.inbox")


class Host(Protocol):
    """What the inbox needs of its node (``node.Node`` is one)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def monotonic(self) -> Callable[[], float]: ...
    @property
    def clustered(self) -> bool: ...

    def new_id(self, kind: str = "msg") -> str: ...

    def envelope(
        self,
        msg_id: str,
        kind: str,
        data: Any,
        *,
        channel: str | None = None,
        reply_to: str | None = None,
    ) -> bytes: ...

    async def send(
        self, topic: str, message: cluster.NodeMessage, policy: NamespacePolicy | None = None
    ) -> tuple[int | None, StreamPosition | None]: ...

    def local_sessions(self, user_id: str, client_id: str | None = None) -> list[Session]: ...


# Seconds a batch of due webhooks stays claimed by the instance sending it.
WEBHOOK_LEASE: Final = 300.0

# Longest a notification waits for an earlier one still crossing the cluster (seconds).
REORDER_WINDOW: Final = 1.0

# A committed notification as it crosses the broker to the instances of its user.

MAX_RECIPIENTS: Final = 10_000
MAX_TITLE: Final = 500
MAX_MESSAGE: Final = 10_000
MAX_PAGE: Final = 100
PURGE_BATCH: Final = 1000
CATCH_UP_PAGE: Final = 500
MAX_CATCH_UP: Final = 10_000


class InboxError(ValueError):
    """A request the inbox refuses; the message says why."""


class CreateRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /api/notifications``: exactly one target, then the content."""

    userId: str | None = None
    userIds: list[str] | None = None
    role: str | None = None
    all: bool = False
    type: str = "notification"
    title: str | None = None
    message: str | None = None
    priority: Priority = Priority.MEDIUM
    category: str | None = None
    data: Any = None
    actions: list[Action] = msgspec.field(default_factory=list)
    expiresAt: str | None = None
    # Overrides the category's escalation rule for this notification ([]: none at all).
    escalation: list[Step] | None = None


# What a create plans beyond the app: (category, priority, the request's own steps).
Planner = Callable[[str | None, Priority, Sequence[Step] | None], tuple[Planned, ...]]


def _no_plan(
    category: str | None, priority: Priority, steps: Sequence[Step] | None
) -> tuple[Planned, ...]:
    return ()


def view(n: Notification) -> protocol.Notification:
    """A notification as clients see it (guide 002's shape, plus seq and read state)."""
    return protocol.Notification(
        id=n.id,
        seq=n.seq,
        type=n.type,
        title=n.title,
        message=n.message,
        priority=n.priority.value,
        category=n.category,
        data=n.data,
        actionable=bool(n.actions),
        actions=[msgspec.structs.asdict(a) for a in n.actions],
        expiresAt=None if n.expires_at is None else iso_timestamp(n.expires_at),
        createdAt=iso_timestamp(n.created_at),
        readAt=None if n.read_at is None else iso_timestamp(n.read_at),
        timestamp=iso_timestamp(n.created_at),
    )


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The seq a cursor stands for; InboxError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        seq = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InboxError("malformed cursor") from None
    if kind != "seq" or seq < 1:
        raise InboxError("malformed cursor")
    return seq


def _fingerprint(req: CreateRequest) -> str:
    fields = msgspec.structs.asdict(req)
    if fields["escalation"] is None:  # keys stored before it existed still match
        del fields["escalation"]
    body = msgspec.json.encode(fields, order="sorted")
    return hashlib.sha256(body).hexdigest()


class Inbox:
    """The inbox of one node, over a store.

    Args:
        node: the node whose connections receive pushes.
        store: where notifications live.
        plan: the deliveries on other channels a new notification gets (escalation).
    """

    def __init__(self, node: Host, store: Store, *, plan: Planner = _no_plan) -> None:
        self.node = node
        self.store = store
        self._plan = plan
        self._tasks = TaskSet(log, "inbox")
        self._delivered: dict[str, list[str]] = {}
        self._flushing = False
        self._awaiting: set[Session] = set()
        # Notifications held back per connection until the one before them arrives.
        self._reorder: dict[Session, list[Notification]] = {}
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
        await self._flush_delivered()
        if self.webhooks is not None:
            await self.webhooks.close()

    # --- create -------------------------------------------------------------------------

    def _content(self, req: CreateRequest) -> NewNotification:
        # PostgreSQL text cannot hold NUL; refuse it everywhere so both stores agree.
        for name in ("type", "title", "message", "category", "userId", "role"):
            value = getattr(req, name)
            if isinstance(value, str) and "\x00" in value:
                raise InboxError(f"{name} contains a NUL character")
        if req.userIds is not None and any("\x00" in u for u in req.userIds):
            raise InboxError("userIds contains a NUL character")
        if not req.type or len(req.type) > 64:
            raise InboxError("type must be 1 to 64 characters")
        if req.title is not None and len(req.title) > MAX_TITLE:
            raise InboxError(f"title longer than {MAX_TITLE} characters")
        if req.message is not None and len(req.message) > MAX_MESSAGE:
            raise InboxError(f"message longer than {MAX_MESSAGE} characters")
        if req.category is not None and not 0 < len(req.category) <= 64:
            raise InboxError("category must be 1 to 64 characters")
        for action in req.actions:
            url = action.url
            # A link a client renders must not run script: http(s) or a path on your site.
            if url is not None and not (
                url.lower().startswith(("https://", "http://"))
                or (url.startswith("/") and not url.startswith("//"))
            ):
                raise InboxError("actions[].url must be an http(s) URL or a path starting with /")
        expires_at = None
        if req.expiresAt is not None:
            try:
                expires_at = datetime.fromisoformat(req.expiresAt.replace("Z", "+00:00"))
            except ValueError:
                raise InboxError("expiresAt is not an ISO 8601 date-time") from None
            if expires_at.tzinfo is None:
                raise InboxError("expiresAt needs a time zone (e.g. Z)")
            if expires_at.timestamp() <= self.node.clock():
                raise InboxError("expiresAt is in the past")
        if req.escalation is not None:
            try:
                check_steps(req.escalation, "escalation")
            except ValueError as exc:
                raise InboxError(str(exc)) from None
        return NewNotification(
            type=req.type,
            title=req.title,
            message=req.message,
            priority=req.priority,
            category=req.category,
            data=req.data,
            actions=tuple(req.actions),
            expires_at=None if expires_at is None else expires_at.timestamp(),
            escalation=self._plan(req.category, req.priority, req.escalation),
        )

    async def _recipients(self, req: CreateRequest) -> list[str]:
        targets = [req.userId is not None, req.userIds is not None, req.role is not None, req.all]
        if sum(targets) != 1:
            raise InboxError("give exactly one target: userId, userIds, role or all")
        if req.userId is not None:
            users = [req.userId]
        elif req.userIds is not None:
            users = req.userIds
        elif req.role is not None:
            users = await self.store.users_with_role(req.role)
        else:
            users = await self.store.all_users()
        if any(not u or len(u) > 255 for u in users):
            raise InboxError("user ids must be 1 to 255 characters")
        if req.userIds is not None and not users:
            raise InboxError("userIds is empty")
        if len(users) > MAX_RECIPIENTS:
            raise InboxError(f"at most {MAX_RECIPIENTS} recipients per request")
        return users

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
        content = self._content(req)
        users = await self._recipients(req)
        started = self.node.monotonic()
        try:
            created = await self.store.create(
                content,
                users,
                now=self.node.clock(),
                idempotency_key=idempotency_key,
                fingerprint=_fingerprint(req),
            )
        except StoreError:
            self.node.metrics.store_errors += 1
            raise
        self.node.metrics.store_create_seconds.observe(self.node.monotonic() - started)
        if not created.replayed:
            await self.dispatch(created.notifications)
        return created

    async def dispatch(self, notifications: Sequence[Notification]) -> None:
        """Push committed notifications to their users' connections on every instance.

        In a cluster each crosses the broker once. When the broker cannot be reached
        they stay committed: this instance's connections get them now, the others when
        the link is back (``resync``) or when their clients reconnect (catch-up).
        """
        for n in notifications:
            try:
                await self.node.send(cluster.topic("user", n.user_id), cluster.Committed(n))
            except BrokerError as exc:
                log.warning("notification %s not sent over the cluster: %s", n.id, exc)
                self.deliver(n)

    def receive(self, event: cluster.Committed | cluster.Told | cluster.Acknowledged) -> int:
        """Carry out an inbox event another instance (or this one) sent over the broker."""
        if isinstance(event, cluster.Committed):
            return self.deliver(event.notification)
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
                self.spawn(self.catch_up(conn, conn.seen_seq))

    # --- delivery -----------------------------------------------------------------------

    def _message(
        self, n: Notification, *, recovered: bool = False, redelivered: bool = False
    ) -> Outbound:
        data = view(n)
        if recovered:
            data.recovered = True
        if redelivered:
            data.redelivered = True
        return Outbound(self.node.envelope(n.id, data.kind, data))

    def deliver(self, n: Notification) -> int:
        """Push a committed notification to its user's open connections."""
        out: Outbound | None = None
        count = 0
        # In a cluster, notifications committed through different instances race each
        # other over the broker; a connection gets them in seq order (seqs are gapless
        # per user) unless the missing one is later than REORDER_WINDOW.
        reorder = self.node.clustered
        for conn in self.node.hub.user_connections(n.user_id):
            if not isinstance(conn, Session):
                out = out or self._message(n)
                count += conn.push(out)
                continue
            if conn.inbox_held is not None:  # still catching up: keep the seq order
                conn.inbox_held.append(n)
                continue
            # seen_seq is exact once catch-up is over (0: the user had none yet).
            if reorder and n.seq > conn.seen_seq + 1:
                self._hold_back(conn, n)
                continue
            out = out or self._message(n)
            if self._push_live(conn, n, out):
                count += 1
            count += self._release(conn)
        if count:
            self._note_delivered(n.user_id, n.id)
            self.node.hub.messages_out += count
            self.node.metrics.sent["notification"] += count
        return count

    def _push_live(self, session: Session, n: Notification, out: Outbound | None = None) -> bool:
        if not session.push(out or self._message(n)):
            return False
        self._track(session, n)
        session.seen_seq = max(session.seen_seq, n.seq)
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
        while held:
            nxt = min(held, key=lambda x: x.seq)
            if nxt.seq != session.seen_seq + 1:
                break
            held.remove(nxt)
            count += self._push_live(session, nxt)
            self._note_delivered(nxt.user_id, nxt.id)
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
        if session.inbox_held is not None:  # a catch-up is running: it sends these too
            session.inbox_held.extend(held)
            return
        session.inbox_held = held
        self.spawn(self._refill(session, list(held)))

    async def _refill(self, session: Session, held: list[Notification]) -> None:
        try:
            await self.catch_up(session, session.seen_seq)
        except Exception as exc:
            if failure_status(exc) is None:
                raise
            self._store_failed("catch-up", session, exc)
            # The store cannot fill the gap now: push what is here, in order (the client
            # reloads the rest with get_notifications).
            for n in sorted(held, key=lambda x: x.seq):
                open_ = session.state is State.OPEN
                if n.seq > session.seen_seq and open_ and self._push_live(session, n):
                    self._note_delivered(n.user_id, n.id)

    def _track(self, session: Session, n: Notification) -> None:
        if session.ack_mode:
            due = self.node.clock() + self.node.settings.ack_timeout
            session.awaiting[n.id] = [n, 1, due]
            self._awaiting.add(session)

    async def redeliver_due(self) -> int:
        """Push again what acknowledging connections have not acked in time; returns count.

        Each retry waits twice as long as the one before; after ``max_delivery_attempts``
        pushes a notification is left for the next connection (it stays unacked).
        """
        s = self.node.settings
        now = self.node.clock()
        pushed: dict[str, list[str]] = {}
        for session in list(self._awaiting):
            if session.awaiting and session.state is State.OPEN:
                for nid, entry in list(session.awaiting.items()):
                    n, attempts, due = entry
                    if due > now:
                        continue
                    expired = n.expires_at is not None and n.expires_at <= now
                    if attempts >= s.max_delivery_attempts or expired:
                        del session.awaiting[nid]
                        continue
                    session.push(self._message(n, redelivered=True))
                    entry[1] = attempts + 1
                    entry[2] = now + s.ack_timeout * 2**attempts
                    pushed.setdefault(n.user_id, []).append(nid)
            if not session.awaiting or session.state is not State.OPEN:
                self._awaiting.discard(session)
        if pushed:
            await self.store.mark_delivered(pushed, now=now)
        return sum(map(len, pushed.values()))

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

    def _note_delivered(self, user_id: str, nid: str) -> None:
        self._delivered.setdefault(user_id, []).append(nid)
        if not self._flushing:
            self._flushing = True
            self.spawn(self._flush_delivered())

    async def _flush_delivered(self) -> None:
        # Pushes that happen while a flush is being written wait for the next one: one
        # transaction per round, however many pushes it covers.
        try:
            while self._delivered:
                pending, self._delivered = self._delivered, {}
                await self.store.mark_delivered(pending, now=self.node.clock())
        finally:
            self._flushing = False

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
            await self.store.remember_user(user, session.roles, now=now)
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
                    if session.push(self._message(n, recovered=True)):
                        self._track(session, n)
                        delivered.append(n.id)
                    sent = max(sent, n.seq)
                    session.seen_seq = max(session.seen_seq, n.seq)
                if len(page) < CATCH_UP_PAGE:
                    break
            held = session.inbox_held or []
            session.inbox_held = None
            for n in sorted(held, key=lambda x: x.seq):
                if n.seq > sent and session.push(self._message(n)):
                    self._track(session, n)
                    delivered.append(n.id)
                    sent = n.seq
                    session.seen_seq = max(session.seen_seq, n.seq)
            session.seen_seq = max(session.seen_seq, top)
            if delivered:
                await self.store.mark_delivered({user: delivered}, now=now)
        finally:
            session.inbox_held = None

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
        try:
            await self.catch_up(session, session.last_seq, unread=unread)
        except Exception as exc:
            if failure_status(exc) is None:
                raise
            # Read but not written (a full disk): the welcome is out; live traffic flows.
            self._store_failed("catch-up", session, exc)

    def _store_failed(self, what: str, session: Session, exc: BaseException) -> None:
        self.node.metrics.store_errors += 1
        log.warning("%s for %s: store unavailable: %s", what, session.client_id, exc)

    def _release_held(self, session: Session) -> None:
        """Push the live notifications held back for a catch-up that will not happen."""
        held, session.inbox_held = session.inbox_held or [], None
        for n in sorted(held, key=lambda x: x.seq):
            if session.push(self._message(n)):
                self._track(session, n)

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
