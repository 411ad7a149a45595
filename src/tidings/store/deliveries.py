"""Delivery state beyond the app: the ``DeliveryStore`` interface, its records and SQL.

Four kinds of rows: where a user can be reached (``contacts``), their browsers' Web Push
subscriptions, their per-channel switches, and one ``deliveries`` row per notification
and channel that escalation may use, with its log. Both SQL stores implement the
interface (``sqlite_deliveries``, ``postgres_deliveries``); the SQL here is written with
``?`` and turned into ``$n`` for PostgreSQL by ``rooms.dollar``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import msgspec

# Planned and Unless live with the notification records (a new notification carries its
# plan); imported here for this module's users too.
from .notification import Notification, Planned, Unless

__all__ = [
    "Contact",
    "Delivery",
    "DeliveryStore",
    "Event",
    "Planned",
    "PushSubscription",
    "State",
    "Unless",
]


class Contact(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where and when a user can be reached: the addresses, locale and time zone of the
    user directory (``PUT /api/users/{id}``) with the user's own quiet hours."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    # An IANA zone name (``Europe/Paris``): quiet hours are in the user's own time.
    timeZone: str | None = None
    # ``"22:00"`` to ``"07:00"``: escalation to push, email and SMS waits until the end.
    quietStart: str | None = None
    quietEnd: str | None = None


class PushSubscription(msgspec.Struct, frozen=True, kw_only=True):
    """A browser's ``PushSubscription.toJSON()``: the endpoint and its two keys."""

    endpoint: str
    p256dh: str
    auth: str
    user_id: str = ""
    created_at: float = 0.0


class State(enum.StrEnum):
    """A delivery's state: pending until sent, given up, skipped or cancelled."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One entry of a delivery's log (``GET /api/notifications/{id}/deliveries``).

    ``event``: queued, sent, failed (``nextAttemptAt`` when it will be retried), skipped,
    deferred (quiet hours; ``nextAttemptAt``) or cancelled. ``reason`` says why.
    """

    event: str
    at: float
    attempt: int = 0
    reason: str | None = None
    nextAttemptAt: float | None = None


class Delivery(msgspec.Struct, kw_only=True):
    """One notification on one channel: where it stands and what happened."""

    notification_id: str
    user_id: str
    channel: str
    unless: Unless
    state: State
    attempts: int
    due_at: float
    queued_at: float = 0.0
    log: list[Event] = msgspec.field(default_factory=list)


class DeliveryStore(Protocol):
    """Contacts, push subscriptions, channel switches, and delivery state with its log.

    Contract, for every implementation:

    * **Planned at create.** ``Store.create`` writes one pending delivery per recipient
      and ``NewNotification.escalation`` step, in the create's own transaction: a
      committed notification never lacks its escalation.
    * **Claimed under a lease.** ``claim_deliveries`` returns pending deliveries due by
      ``now`` (with their notification, None if it is gone) and, in the same atomic
      step, moves their due time to ``now + lease``: instances sharing the store never
      hold the same delivery at once, and one whose holder died comes back after the
      lease. ``record_delivery`` ends the claim.
    * **One outcome, logged.** ``record_delivery`` sets the state, attempts and next due
      time and appends the event to the log in one transaction; a delivery that is no
      longer pending is not changed (returns False), so a late holder cannot undo it.
    * Deleting a notification (or its retention) deletes its deliveries and their log.
    * **Isolation** as in ``Store``: reads take the owner's ``user_id``.
    """

    async def contact(self, user_id: str) -> Contact:
        """The user's directory entry's addresses, locale and time zone, with their quiet
        hours (empty fields for what is not set)."""
        ...

    async def set_quiet_hours(self, user_id: str, start: str | None, end: str | None) -> None:
        """Set the user's quiet hours (``"22:00"``, ``"07:00"``); None clears them."""
        ...

    async def add_push_subscription(
        self, user_id: str, sub: PushSubscription, *, now: float
    ) -> bool:
        """Store a subscription (an endpoint names one browser: a known endpoint moves to
        this user with its new keys). True if it was new."""
        ...

    async def remove_push_subscription(self, endpoint: str, user_id: str | None = None) -> bool:
        """Forget a subscription: the user's own, or any (``user_id=None``: the push
        service said it is gone). True if one was removed."""
        ...

    async def push_subscriptions(self, user_id: str) -> list[PushSubscription]:
        """The user's subscriptions, oldest first."""
        ...

    async def channel_preferences(self, user_id: str) -> dict[str, dict[str, bool]]:
        """The user's switches: ``{channel: {category or '*': on}}``."""
        ...

    async def set_channel_preferences(
        self, user_id: str, channel: str, switches: Mapping[str, bool]
    ) -> None:
        """Replace the user's switches for one channel."""
        ...

    async def claim_deliveries(
        self, *, now: float, limit: int, lease: float
    ) -> list[tuple[Delivery, Notification | None]]:
        """Pending deliveries due by ``now``, earliest first, claimed until ``now + lease``."""
        ...

    async def record_delivery(
        self,
        notification_id: str,
        channel: str,
        *,
        state: State,
        attempts: int,
        due_at: float,
        event: Event,
    ) -> bool:
        """Record an outcome and log it; False if the delivery is no longer pending."""
        ...

    async def deliveries(self, user_id: str, notification_id: str) -> list[Delivery]:
        """A notification's deliveries with their logs (``queued`` first), by channel."""
        ...


# --- SQL shared by both stores ('?' placeholders) ------------------------------------------

CONTACT_GET: Final = (
    "SELECT name, email, phone, locale, time_zone FROM directory_users WHERE user_id = ?"
)
QUIET_GET: Final = "SELECT start_at, end_at FROM quiet_hours WHERE user_id = ?"
QUIET_SET: Final = (
    "INSERT INTO quiet_hours (user_id, start_at, end_at) VALUES (?, ?, ?) "
    "ON CONFLICT (user_id) DO UPDATE SET start_at = excluded.start_at, end_at = excluded.end_at"
)
QUIET_CLEAR: Final = "DELETE FROM quiet_hours WHERE user_id = ?"
PUSH_ADD: Final = (
    "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth, created_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id, "
    "p256dh = excluded.p256dh, auth = excluded.auth"
)
PUSH_EXISTS: Final = "SELECT 1 FROM push_subscriptions WHERE endpoint = ? AND user_id = ?"
PUSH_REMOVE_ANY: Final = "DELETE FROM push_subscriptions WHERE endpoint = ?"
PUSH_REMOVE: Final = "DELETE FROM push_subscriptions WHERE endpoint = ? AND user_id = ?"
PUSH_LIST: Final = (
    "SELECT endpoint, p256dh, auth, user_id, created_at FROM push_subscriptions "
    "WHERE user_id = ? ORDER BY created_at, endpoint"
)
PREFS_GET: Final = (
    "SELECT channel, category, enabled FROM channel_preferences WHERE user_id = ? "
    "ORDER BY channel, category"
)
PREFS_CLEAR: Final = "DELETE FROM channel_preferences WHERE user_id = ? AND channel = ?"
PREFS_ADD: Final = (
    "INSERT INTO channel_preferences (user_id, channel, category, enabled) VALUES (?, ?, ?, ?)"
)
PLAN: Final = (
    "INSERT INTO deliveries (notification_id, channel, user_id, unless, state, attempts, "
    "due_at, events, queued_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, 0, ?)"
)
DUE: Final = (
    "SELECT notification_id, channel FROM deliveries WHERE state = 'pending' AND due_at <= ? "
    "ORDER BY due_at LIMIT ?"
)
DELIVERY_COLUMNS: Final = (
    "notification_id, user_id, channel, unless, state, attempts, due_at, queued_at"
)
RECORD: Final = (
    "UPDATE deliveries SET state = ?, attempts = ?, due_at = ?, events = events + 1 "
    "WHERE notification_id = ? AND channel = ? AND state = 'pending' RETURNING events"
)
LOG_ADD: Final = (
    "INSERT INTO delivery_log (notification_id, channel, n, at, event, attempt, reason, "
    "next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
OF_NOTIFICATION: Final = (
    f"SELECT {DELIVERY_COLUMNS} FROM deliveries "
    "WHERE notification_id = ? AND user_id = ? ORDER BY channel"
)
LOG_OF: Final = (
    "SELECT channel, at, event, attempt, reason, next_at FROM delivery_log "
    "WHERE notification_id = ? ORDER BY channel, n"
)


def contact_from(directory: Sequence[Any] | None, quiet: Sequence[Any] | None) -> Contact:
    """A contact from a ``CONTACT_GET`` row and a ``QUIET_GET`` row (either may be None)."""
    name, email, phone, locale, zone = directory if directory is not None else (None,) * 5
    start, end = quiet if quiet is not None else (None, None)
    return Contact(
        name=name,
        email=email,
        phone=phone,
        locale=locale,
        timeZone=zone,
        quietStart=start,
        quietEnd=end,
    )


def plan_rows(
    notifications: Sequence[Notification], steps: Sequence[Planned]
) -> list[tuple[Any, ...]]:
    """``PLAN`` values: every step for every created notification."""
    return [
        (n.id, s.channel, n.user_id, s.unless.value, n.created_at + s.delay, n.created_at)
        for n in notifications
        for s in steps
    ]


def delivery_from(row: Sequence[Any]) -> Delivery:
    return Delivery(
        notification_id=row[0],
        user_id=row[1],
        channel=row[2],
        unless=Unless(row[3]),
        state=State(row[4]),
        attempts=int(row[5]),
        due_at=float(row[6]),
        queued_at=float(row[7]),
    )


def with_logs(rows: Sequence[Sequence[Any]], log_rows: Sequence[Sequence[Any]]) -> list[Delivery]:
    """Deliveries (``OF_NOTIFICATION`` rows) with their ``LOG_OF`` events, queued first."""
    out = {}
    for row in rows:
        d = delivery_from(row)
        d.log.append(Event(event="queued", at=float(row[7])))
        out[d.channel] = d
    for channel, at, event, attempt, reason, next_at in log_rows:
        if channel in out:
            out[channel].log.append(
                Event(
                    event=event,
                    at=float(at),
                    attempt=int(attempt),
                    reason=reason,
                    nextAttemptAt=None if next_at is None else float(next_at),
                )
            )
    return list(out.values())


def switches_from(rows: Sequence[Sequence[Any]]) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for channel, category, enabled in rows:
        out.setdefault(channel, {})[category] = bool(enabled)
    return out
