"""Escalation rules, pure: planning, decisions, quiet hours, backoff."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tidings.delivery.rules import (
    Cancel,
    Defer,
    Rule,
    Send,
    Skip,
    Step,
    check_steps,
    decide,
    enabled,
    plan,
    quiet_until,
    retry_at,
)
from tidings.store import Notification, Priority
from tidings.store.deliveries import Contact, Delivery, Planned, State, Unless

RULES = {
    "*": Rule(steps=(Step("push", 120, Unless.DELIVERED), Step("email", 3600))),
    "security": Rule(steps=(Step("sms", 0),), min_priority=Priority.LOW),
    "marketing": Rule(),
}
PARIS = ZoneInfo("Europe/Paris")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


@pytest.mark.parametrize(
    ("category", "priority", "override", "expected"),
    [
        (None, Priority.MEDIUM, None, (("push", 120.0), ("email", 3600.0))),
        ("billing", Priority.HIGH, None, (("push", 120.0), ("email", 3600.0))),
        ("billing", Priority.LOW, None, ()),  # below the default rule's MEDIUM
        ("security", Priority.LOW, None, (("sms", 0.0),)),
        ("marketing", Priority.CRITICAL, None, ()),
        ("marketing", Priority.LOW, [Step("email", 5)], (("email", 5.0),)),  # override wins
        (None, Priority.HIGH, [], ()),  # an empty override means none
    ],
)
def test_plan(
    category: str | None,
    priority: Priority,
    override: list[Step] | None,
    expected: tuple[tuple[str, float], ...],
) -> None:
    """A notification gets its own steps, else its category's, else the default rule,
    each only at or above the rule's priority."""
    got = plan(RULES, category, priority, override)
    assert tuple((p.channel, p.delay) for p in got) == expected


def test_check_steps() -> None:
    """Unknown channels, negative waits and a channel given twice are refused."""
    check_steps([Step("push"), Step("email", 10)], "x")
    for bad in ([Step("fax")], [Step("push", -1)], [Step("push"), Step("push", 5)]):
        with pytest.raises(ValueError, match="x:"):
            check_steps(bad, "x")


def note(**kw: object) -> Notification:
    fields: dict[str, object] = {
        "id": "ntf_1",
        "user_id": "u",
        "seq": 1,
        "type": "t",
        "title": "T",
        "message": None,
        "priority": Priority.HIGH,
        "category": "billing",
        "data": None,
        "actions": (),
        "expires_at": None,
        "created_at": 0.0,
    }
    fields.update(kw)
    return Notification(**fields)  # type: ignore[arg-type]


def due(channel: str = "email", unless: Unless = Unless.READ) -> Delivery:
    return Delivery(
        notification_id="ntf_1",
        user_id="u",
        channel=channel,
        unless=unless,
        state=State.PENDING,
        attempts=0,
        due_at=0,
    )


MAIL = Contact(email="u@example.com")


@pytest.mark.parametrize(
    ("delivery", "n", "switches", "contact", "expected"),
    [
        (due(), note(), {}, MAIL, Send()),
        (due(), None, {}, MAIL, Cancel("deleted")),
        (due(), note(read_at=5.0), {}, MAIL, Cancel("read")),
        (due("push", Unless.DELIVERED), note(read_at=5.0), {}, MAIL, Cancel("read")),
        (due("push", Unless.DELIVERED), note(delivered_at=5.0), {}, MAIL, Cancel("delivered")),
        (due(), note(delivered_at=5.0), {}, MAIL, Send()),  # email waits for read, not delivery
        (due("sms", Unless.ACKED), note(acked_at=5.0), {}, MAIL, Cancel("acked")),
        (due(), note(archived_at=5.0), {}, MAIL, Cancel("archived")),
        (due(), note(expires_at=50.0), {}, MAIL, Cancel("expired")),
        (due(), note(), {"email": {"billing": False}}, MAIL, Skip("preference")),
        (due(), note(), {"email": {"*": False}}, MAIL, Skip("preference")),
        (due(), note(), {"email": {"*": False, "billing": True}}, MAIL, Send()),
        (due(), note(), {"push": {"*": False}}, MAIL, Send()),
        (due(), note(), {}, Contact(), Skip("no email address")),
        (due("sms"), note(), {}, MAIL, Skip("no phone number")),
    ],
)
def test_decide(
    delivery: Delivery,
    n: Notification | None,
    switches: dict[str, dict[str, bool]],
    contact: Contact,
    expected: object,
) -> None:
    """A due delivery is sent unless read (always), its own condition, a switch, or a
    missing address says otherwise."""
    assert decide(delivery, n, 100.0, switches=switches, contact=contact) == expected


def test_enabled_defaults_on() -> None:
    """Without any switch a channel is on."""
    assert enabled({}, "email", None)
    assert not enabled({"email": {"*": False}}, "email", None)


@pytest.mark.parametrize(
    ("now", "start", "end", "until"),
    [
        ("2027-01-10 23:30", "22:00", "07:00", "2027-01-11 07:00"),  # across midnight
        ("2027-01-11 06:59", "22:00", "07:00", "2027-01-11 07:00"),
        ("2027-01-11 07:00", "22:00", "07:00", None),
        ("2027-01-11 12:00", "22:00", "07:00", None),
        ("2027-01-11 12:30", "12:00", "14:00", "2027-01-11 14:00"),
        ("2027-03-27 23:00", "22:00", "07:00", "2027-03-28 07:00"),  # DST starts that night
    ],
)
def test_quiet_hours_in_the_users_zone(now: str, start: str, end: str, until: str | None) -> None:
    """Quiet hours are wall-clock times in the user's zone, across midnight and DST."""
    contact = Contact(timeZone="Europe/Paris", quietStart=start, quietEnd=end)
    expected = None if until is None else at(until)
    assert quiet_until(contact, at(now)) == expected


def test_quiet_hours_defer() -> None:
    """A due email inside quiet hours is deferred to their end."""
    contact = Contact(
        email="u@x.org", timeZone="Europe/Paris", quietStart="22:00", quietEnd="07:00"
    )
    got = decide(due(), note(), at("2027-01-10 23:30"), switches={}, contact=contact)
    assert got == Defer(at("2027-01-11 07:00"), "quiet hours")


def test_retry_backoff_doubles_to_an_hour() -> None:
    """Retries wait 30 s, 60 s, 120 s, ... never more than an hour."""
    assert [retry_at(n, 0.0, 30.0) for n in (1, 2, 3)] == [30.0, 60.0, 120.0]
    assert retry_at(20, 0.0, 30.0) == 3600.0


def test_planned_records() -> None:
    """Planned steps are what the store writes."""
    assert plan(RULES, "security", Priority.LOW) == (Planned("sms", 0.0, Unless.READ),)


@pytest.mark.parametrize(
    ("after", "times", "expected"),
    [
        ("2027-01-10 08:00", ["09:00"], "2027-01-10 09:00"),
        ("2027-01-10 09:00", ["09:00"], "2027-01-11 09:00"),  # strictly after
        ("2027-01-10 10:00", ["09:00", "17:00"], "2027-01-10 17:00"),
        ("2027-01-10 18:00", ["17:00", "09:00"], "2027-01-11 09:00"),
        ("2027-03-28 01:00", ["02:30"], "2027-03-28 03:30"),  # skipped by DST: just after
    ],
)
def test_next_digest_time(after: str, times: list[str], expected: str) -> None:
    """Digest times are daily wall-clock times in the user's zone, strictly after."""
    from tidings.delivery.rules import next_tick

    assert next_tick(at(after), times, "Europe/Paris") == at(expected)


def test_digest_waits_for_its_time() -> None:
    """A digest delivery waits for the first digest time after it was queued, then is
    sent; read or switched off by the email preference, it is not."""
    queued = at("2027-01-10 08:00")
    d = Delivery(
        notification_id="ntf_1",
        user_id="u",
        channel="digest",
        unless=Unless.READ,
        state=State.PENDING,
        attempts=0,
        due_at=queued,
        queued_at=queued,
    )
    paris = Contact(email="u@x.org", timeZone="Europe/Paris")
    kw = {"switches": {}, "contact": paris, "digest_times": ["09:00"]}
    assert decide(d, note(), queued, **kw) == Defer(at("2027-01-10 09:00"), "digest")  # type: ignore[arg-type]
    assert decide(d, note(), at("2027-01-10 09:00"), **kw) == Send()  # type: ignore[arg-type]
    assert decide(d, note(read_at=1.0), at("2027-01-10 09:00"), **kw) == Cancel("read")  # type: ignore[arg-type]
    off = {"email": {"*": False}}
    got = decide(d, note(), at("2027-01-10 09:00"), switches=off, contact=paris)
    assert got == Skip("preference")
