"""The escalation worker: sends planned deliveries that fell due, once, and logs each.

Every ``delivery_interval`` seconds an instance claims a batch of due deliveries under a
lease (``DeliveryStore.claim_deliveries``), decides each one against the notification as
it is now (``rules.decide``: read in any tab cancels), sends through the channel's
``Sender`` and records the outcome with its log entry. State lives in the store, so a
restart resumes where it stopped, and instances sharing a store split the work without
sending anything twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from ..store import Notification, Priority
from ..store.deliveries import Contact, Delivery, DeliveryStore, Event, Planned, State
from . import Message, Sender, failed, rules
from .rules import Cancel, Defer, Rule, Skip, Step

if TYPE_CHECKING:  # jinja2 (the templates extra) loads only when templates are configured
    from .templates import Templates

log = logging.getLogger("tidings.delivery")

# Seconds a claimed batch stays with the instance sending it.
LEASE: Final = 300.0
BATCH: Final = 100

Render = Callable[[Notification, str, Contact], Message]


def compose(n: Notification, channel: str, contact: Contact, app_url: str | None = None) -> Message:
    """The message for a channel from the notification's own title, text and first link
    (a path is made absolute with ``app_url``)."""
    url = next((a.url for a in n.actions if a.url), None)
    if url is not None and url.startswith("/"):
        url = None if app_url is None else app_url.rstrip("/") + url
    return Message(
        key=f"{n.id}:{channel}",
        notification_id=n.id,
        user_id=n.user_id,
        title=n.title or n.type,
        text=n.message or "",
        url=url or app_url,
        priority=n.priority.value,
        category=n.category,
        data=n.data,
    )


class Escalation:
    """Plans deliveries at create and sends them when due.

    Args:
        rules: escalation rules by category (``*``: the default).
        clock: Unix seconds.
        max_attempts: tries per delivery before it is given up.
        retry_base: seconds before the first retry (doubling, up to an hour).
        interval: seconds between claims.
        app_url: makes action paths absolute in email, push and SMS.
        render: builds a channel's message (default ``compose``).
        templates: per type and locale, applied over what ``render`` built.
        outcomes: where outcomes are counted, by (channel, outcome) (the node's metrics).
        digest_times: daily wall-clock times (``"09:00"``, the user's zone) of digests.
    """

    def __init__(
        self,
        rules: Mapping[str, Rule],
        *,
        clock: Callable[[], float],
        max_attempts: int = 5,
        retry_base: float = 30.0,
        interval: float = 5.0,
        app_url: str | None = None,
        render: Render | None = None,
        templates: Templates | None = None,
        outcomes: Counter[tuple[str, str]] | None = None,
        digest_times: Sequence[str] = (),
    ) -> None:
        self.rules = dict(rules)
        self.senders: dict[str, Sender] = {}
        self.clock = clock
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.interval = interval
        self._app_url = app_url
        self._render = render
        self._templates = templates
        self.digest_times = tuple(digest_times)
        self.store: DeliveryStore | None = None
        # Outcomes by (channel, outcome): sent, failed, retried, skipped, deferred, cancelled.
        self.outcomes: Counter[tuple[str, str]] = Counter() if outcomes is None else outcomes
        self._loop: asyncio.Task[None] | None = None

    def plan(
        self, category: str | None, priority: Priority, override: Sequence[Step] | None
    ) -> tuple[Planned, ...]:
        """The deliveries a new notification gets (written with it by the store)."""
        return rules.plan(self.rules, category, priority, override)

    def start(self, store: DeliveryStore, senders: Mapping[str, Sender]) -> None:
        """Begin claiming due deliveries from ``store``, sending through ``senders`` (the
        server calls this)."""
        self.store = store
        self.senders = dict(senders)
        # Always: a notification may bring its own steps without any rule configured, and
        # a claim that finds nothing due costs one indexed query.
        self._loop = asyncio.get_running_loop().create_task(self._every())

    async def stop(self) -> None:
        """Stop claiming; finish the batch in hand; close the senders."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        for sender in self.senders.values():
            await sender.close()
        self.senders = {}

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                while await self.run_due() == BATCH:
                    pass  # a full batch: more may be due
            except Exception as exc:
                # The store unreachable, most likely: claims come back after their lease.
                log.warning(
                    "escalation round failed (%s: %s); retrying in %.0f s",
                    exc.__class__.__name__,
                    exc,
                    self.interval,
                )

    async def run_due(self) -> int:
        """Claim and handle one batch of due deliveries; returns how many were claimed."""
        store = self.store
        if store is None:
            return 0
        now = self.clock()
        claimed = await store.claim_deliveries(now=now, limit=BATCH, lease=LEASE)
        if not claimed:
            return 0
        users = {d.user_id for d, _ in claimed}
        switches = {u: await store.channel_preferences(u) for u in users}
        contacts = {u: await store.contact(u) for u in users}
        # Digest deliveries that are due go out together: one email per user and category.
        digests: dict[tuple[str, str | None], list[tuple[Delivery, Notification]]] = {}
        handles = []
        for d, n in claimed:
            if d.channel == "digest" and n is not None:
                decision = rules.decide(
                    d,
                    n,
                    now,
                    switches=switches[d.user_id],
                    contact=contacts[d.user_id],
                    digest_times=self.digest_times,
                )
                if isinstance(decision, rules.Send) and "email" in self.senders:
                    digests.setdefault((d.user_id, n.category), []).append((d, n))
                    continue
            handles.append(self._handle(store, d, n, now, switches[d.user_id], contacts[d.user_id]))
        handles += [
            self._send_digest(store, group, contacts[user]) for (user, _), group in digests.items()
        ]
        await asyncio.gather(*handles)
        return len(claimed)

    async def _handle(
        self,
        store: DeliveryStore,
        d: Delivery,
        n: Notification | None,
        now: float,
        switches: Mapping[str, Mapping[str, bool]],
        contact: Contact,
    ) -> None:
        decision = rules.decide(
            d, n, now, switches=switches, contact=contact, digest_times=self.digest_times
        )
        sender = self.senders.get(d.channel)
        if n is not None and isinstance(decision, rules.Send):
            if sender is not None:
                await self._send(store, d, n, sender, contact)
                return
            decision = Skip("channel not configured")
        if isinstance(decision, Cancel):
            await self._record(
                store, d, State.CANCELLED, d.attempts, now, "cancelled", decision.reason
            )
        elif isinstance(decision, Skip):
            await self._record(store, d, State.SKIPPED, d.attempts, now, "skipped", decision.reason)
        elif isinstance(decision, Defer):
            await self._record(
                store,
                d,
                State.PENDING,
                d.attempts,
                decision.until,
                "deferred",
                decision.reason,
                next_at=decision.until,
            )

    async def _send(
        self, store: DeliveryStore, d: Delivery, n: Notification, sender: Sender, contact: Contact
    ) -> None:
        render = self._render or (lambda n, c, who: compose(n, c, who, self._app_url))
        attempt = d.attempts + 1
        try:
            message = render(n, d.channel, contact)
            if self._templates is not None:
                message = self._templates.apply(message, n, contact, d.channel)
            outcome = await sender.send(message, contact)
        except Exception:
            log.exception("%s sender failed on %s", d.channel, n.id)
            outcome = failed("internal error", retry=True)
        now = self.clock()
        if outcome.sent:
            await self._record(store, d, State.SENT, attempt, now, "sent", None)
        elif outcome.retry and attempt < self.max_attempts:
            at = rules.retry_at(attempt, now, self.retry_base)
            await self._record(
                store,
                d,
                State.PENDING,
                attempt,
                at,
                "failed",
                outcome.reason,
                next_at=at,
                count="retried",
            )
        else:
            await self._record(store, d, State.FAILED, attempt, now, "failed", outcome.reason)

    async def _send_digest(
        self, store: DeliveryStore, group: list[tuple[Delivery, Notification]], contact: Contact
    ) -> None:
        """One email listing a user's unread notifications of one category."""
        sender = self.senders["email"]
        group.sort(key=lambda item: item[1].seq)
        first = group[0][1]
        count = len(group)
        lines = [
            f"- {n.title or n.type}" + (f": {n.message}" if n.message else "") for _, n in group
        ]
        what = f" in {first.category}" if first.category else ""
        message = Message(
            # The same group on a retry: the same key (Message-ID).
            key=f"{first.id}:digest",
            notification_id=first.id,
            user_id=first.user_id,
            title=f"{count} new notification{'s' if count != 1 else ''}{what}",
            text="\n".join(lines),
            url=self._app_url,
            category=first.category,
        )
        try:
            outcome = await sender.send(message, contact)
        except Exception:
            log.exception("digest sender failed on %s", first.id)
            outcome = failed("internal error", retry=True)
        now = self.clock()
        for d, _ in group:
            attempt = d.attempts + 1
            if outcome.sent:
                await self._record(store, d, State.SENT, attempt, now, "sent", None)
            elif outcome.retry and attempt < self.max_attempts:
                at = rules.retry_at(attempt, now, self.retry_base)
                await self._record(
                    store,
                    d,
                    State.PENDING,
                    attempt,
                    at,
                    "failed",
                    outcome.reason,
                    next_at=at,
                    count="retried",
                )
            else:
                await self._record(store, d, State.FAILED, attempt, now, "failed", outcome.reason)

    async def _record(
        self,
        store: DeliveryStore,
        d: Delivery,
        state: State,
        attempts: int,
        due_at: float,
        event: str,
        reason: str | None,
        *,
        next_at: float | None = None,
        count: str | None = None,
    ) -> None:
        entry = Event(
            event=event, at=self.clock(), attempt=attempts, reason=reason, nextAttemptAt=next_at
        )
        self.outcomes[(d.channel, count or event)] += 1
        if not await store.record_delivery(
            d.notification_id, d.channel, state=state, attempts=attempts, due_at=due_at, event=entry
        ):
            log.warning("delivery %s:%s was no longer pending", d.notification_id, d.channel)
