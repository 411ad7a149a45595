"""Escalation rules, pure: what to plan at create, and what to do with a due delivery.

A rule says, for a category, which channels follow the in-app delivery and when:
``push after 120 s unless delivered; email after 3600 s unless read; not below MEDIUM``.
Plans are written with the notification (``store.deliveries.Planned``); when one falls
due, ``decide`` looks at the notification as it is now, the user's switches, contact and
quiet hours, and says: send, cancel, skip or defer. No clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from ..store import Notification, Priority
from ..store.deliveries import Contact, Delivery, Planned, Unless

# "digest": one email per user and category at the configured times (digest_times),
# listing what is still unread then.
CHANNELS: Final = ("push", "email", "sms", "digest")
_RANK: Final = {p: i for i, p in enumerate(Priority)}
DEFAULT: Final = "*"


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One step as configured or sent with a notification: ``{"channel": "email",
    "after": 3600, "unless": "read"}``."""

    channel: str
    after: float = 0.0
    unless: Unless = Unless.READ


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The steps of a category, and the lowest priority they apply to."""

    steps: tuple[Step, ...] = ()
    min_priority: Priority = Priority.MEDIUM


def check_steps(steps: Sequence[Step], where: str) -> None:
    """Raise ValueError naming ``where`` if a step names an unknown channel, waits a
    negative time, or a channel comes twice."""
    seen = set()
    for step in steps:
        if step.channel not in CHANNELS:
            raise ValueError(f"{where}: channel must be one of {', '.join(CHANNELS)}")
        if step.after < 0:
            raise ValueError(f"{where}: after must be >= 0 seconds")
        if step.channel in seen:
            raise ValueError(f"{where}: channel {step.channel!r} given twice")
        seen.add(step.channel)


def plan(
    rules: Mapping[str, Rule],
    category: str | None,
    priority: Priority,
    override: Sequence[Step] | None = None,
) -> tuple[Planned, ...]:
    """The deliveries to plan for a new notification: the ones it brings (``override``,
    which wins, even empty), else its category's rule, else the default rule (``*``)."""
    if override is not None:
        steps: Sequence[Step] = override
    else:
        rule = rules.get(category or DEFAULT) or rules.get(DEFAULT)
        if rule is None or _RANK[priority] < _RANK[rule.min_priority]:
            return ()
        steps = rule.steps
    return tuple(Planned(s.channel, s.after, s.unless) for s in steps)


class Send(msgspec.Struct, frozen=True):
    """Send now."""


class Cancel(msgspec.Struct, frozen=True):
    """Not needed any more (read, delivered, gone): ``reason`` says which."""

    reason: str


class Skip(msgspec.Struct, frozen=True):
    """Not sent, by the user's choice or for want of an address."""

    reason: str


class Defer(msgspec.Struct, frozen=True):
    """Wait until ``until`` (the end of quiet hours)."""

    until: float
    reason: str


Decision = Send | Cancel | Skip | Defer


def enabled(switches: Mapping[str, Mapping[str, bool]], channel: str, category: str | None) -> bool:
    """The user's switch for a channel and category: the category's own, else ``*``, else on."""
    mine = switches.get(channel, {})
    return mine.get(category or DEFAULT, mine.get(DEFAULT, True))


def _clock_time(value: str) -> time:
    return time.fromisoformat(value)


def quiet_until(contact: Contact, now: float) -> float | None:
    """The end of the user's quiet hours if ``now`` falls in them (their time zone, UTC
    without one), else None. ``22:00``-``07:00`` spans midnight."""
    if not contact.quietStart or not contact.quietEnd:
        return None
    try:
        zone = ZoneInfo(contact.timeZone or "UTC")
        start, end = _clock_time(contact.quietStart), _clock_time(contact.quietEnd)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # validated when set; an old row must not stop delivery
    local = datetime.fromtimestamp(now, zone)
    t = local.time()
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    # fold=0 and the zone's rules: a wall time skipped by DST lands just after the gap.
    ends = datetime.combine(day, end, zone)
    return ends.timestamp()


def next_tick(after: float, times: Sequence[str], zone_name: str | None) -> float | None:
    """The first of the daily wall-clock ``times`` (``"09:00"``) strictly after ``after``,
    in the user's zone (UTC without one); None without times."""
    try:
        zone = ZoneInfo(zone_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")  # validated when set; an old row must not stop delivery
    clocks = sorted(_clock_time(t) for t in times)  # validated with the settings
    if not clocks:
        return None
    day = datetime.fromtimestamp(after, zone).date()
    for offset in range(3):  # today, tomorrow, and a DST-skipped slot's next day
        for t in clocks:
            at = datetime.combine(day + timedelta(days=offset), t, zone).timestamp()
            if at > after:
                return at
    return None  # pragma: no cover - some slot within three days always comes


def decide(
    delivery: Delivery,
    n: Notification | None,
    now: float,
    *,
    switches: Mapping[str, Mapping[str, bool]],
    contact: Contact,
    digest_times: Sequence[str] = (),
) -> Decision:
    """What to do with a delivery that fell due. A digest is sent at the first digest
    time after the notification was queued, in the user's zone, if still unread."""
    if n is None:
        return Cancel("deleted")
    if n.read_at is not None:
        return Cancel("read")
    if n.archived_at is not None:
        return Cancel("archived")
    if n.expires_at is not None and n.expires_at <= now:
        return Cancel("expired")
    if delivery.unless is Unless.DELIVERED and n.delivered_at is not None:
        return Cancel("delivered")
    if delivery.unless is Unless.ACKED and n.acked_at is not None:
        return Cancel("acked")
    # A digest is an email: the user's email switches and address apply.
    channel = "email" if delivery.channel == "digest" else delivery.channel
    if not enabled(switches, channel, n.category):
        return Skip("preference")
    if channel == "email" and not contact.email:
        return Skip("no email address")
    if delivery.channel == "sms" and not contact.phone:
        return Skip("no phone number")
    if delivery.channel == "digest":
        tick = next_tick(delivery.queued_at, digest_times, contact.timeZone)
        if tick is None:
            return Skip("no digest_times")
        return Send() if now >= tick else Defer(tick, "digest")
    until = quiet_until(contact, now)
    if until is not None:
        return Defer(until, "quiet hours")
    return Send()


def retry_at(attempts: int, now: float, base: float) -> float:
    """After ``attempts`` failed tries: base, twice that, four times, ... up to an hour."""
    return now + min(3600.0, base * 2.0 ** max(0, attempts - 1))
