"""The DeliveryStore contract, run against every backend: SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio

import msgspec

from tidings.store import Store
from tidings.store.deliveries import Contact, Event, Planned, PushSubscription, State, Unless
from tidings.store.users import UserRecord

from . import test_store_contract as contract

NOW = contract.NOW
store = contract.store  # the contract suite's fixture: SQLite, and a PostgreSQL schema per test

PLAN = (Planned("push", 120.0, Unless.DELIVERED), Planned("email", 3600.0))


def sub(n: int) -> PushSubscription:
    return PushSubscription(endpoint=f"https://push.test/{n}", p256dh=f"key{n}", auth=f"auth{n}")


async def test_contact_is_the_directory_with_quiet_hours(store: Store) -> None:
    """A contact is the directory entry's addresses, locale and zone, with the user's quiet
    hours; empty for a user the directory does not know; erasure removes quiet hours,
    push subscriptions and channel switches."""
    assert await store.contact("alice") == Contact()
    user = UserRecord(id="alice", email="a@example.com", phone="+15551234567", locale="fr")
    await store.put_user(msgspec.structs.replace(user, time_zone="Europe/Paris"), now=NOW)
    await store.set_quiet_hours("alice", "22:00", "07:00")
    assert await store.contact("alice") == Contact(
        email="a@example.com",
        phone="+15551234567",
        locale="fr",
        timeZone="Europe/Paris",
        quietStart="22:00",
        quietEnd="07:00",
    )
    await store.set_quiet_hours("alice", None, None)
    assert (await store.contact("alice")).quietStart is None
    await store.set_quiet_hours("bob", "12:00", "13:00")
    assert await store.contact("bob") == Contact(quietStart="12:00", quietEnd="13:00")
    await store.add_push_subscription("bob", sub(9), now=NOW)
    await store.set_channel_preferences("bob", "email", {"*": False})
    await store.erase_user("bob")
    assert await store.contact("bob") == Contact()
    assert await store.push_subscriptions("bob") == []
    assert await store.channel_preferences("bob") == {}


async def test_push_subscriptions(store: Store) -> None:
    """Subscriptions are per user; an endpoint registered again moves with its new keys;
    a user removes only their own; the push service's 'gone' removes any."""
    assert await store.add_push_subscription("alice", sub(1), now=NOW)
    assert not await store.add_push_subscription("alice", sub(1), now=NOW + 1)
    assert await store.add_push_subscription("alice", sub(2), now=NOW + 2)
    assert [s.endpoint for s in await store.push_subscriptions("alice")] == [
        "https://push.test/1",
        "https://push.test/2",
    ]
    moved = PushSubscription(endpoint="https://push.test/2", p256dh="new", auth="new")
    assert await store.add_push_subscription("bob", moved, now=NOW + 3)
    (bobs,) = await store.push_subscriptions("bob")
    assert (bobs.p256dh, bobs.auth, bobs.user_id) == ("new", "new", "bob")
    assert len(await store.push_subscriptions("alice")) == 1
    assert not await store.remove_push_subscription("https://push.test/1", "bob")
    assert await store.remove_push_subscription("https://push.test/1", "alice")
    assert await store.remove_push_subscription("https://push.test/2")
    assert not await store.remove_push_subscription("https://push.test/2")
    assert await store.push_subscriptions("alice") == []
    assert await store.push_subscriptions("bob") == []


async def test_channel_preferences(store: Store) -> None:
    """Switches are kept per channel and replaced one channel at a time."""
    await store.set_channel_preferences("alice", "email", {"*": False, "billing": True})
    await store.set_channel_preferences("alice", "push", {"chat": False})
    assert await store.channel_preferences("alice") == {
        "email": {"*": False, "billing": True},
        "push": {"chat": False},
    }
    await store.set_channel_preferences("alice", "email", {})
    assert await store.channel_preferences("alice") == {"push": {"chat": False}}
    assert await store.channel_preferences("bob") == {}


async def test_planned_with_the_create(store: Store) -> None:
    """A create with escalation plans one pending delivery per recipient and step, due at
    created_at + delay, in the same transaction (an idempotent replay plans nothing new)."""
    content = contract.note(1, escalation=PLAN)
    created = await store.create(content, ["alice", "bob"], now=NOW, idempotency_key="k1")
    again = await store.create(content, ["alice", "bob"], now=NOW + 5, idempotency_key="k1")
    assert again.replayed
    plain = await store.create(contract.note(2, escalation=PLAN), ["carol"], now=NOW)
    assert await store.create(contract.note(3), ["dave"], now=NOW)  # no escalation, no plan
    alice = created.notifications[0]
    got = await store.deliveries("alice", alice.id)
    assert [(d.channel, d.state, d.unless, d.due_at) for d in got] == [
        ("email", State.PENDING, Unless.READ, NOW + 3600),
        ("push", State.PENDING, Unless.DELIVERED, NOW + 120),
    ]
    assert [e.event for e in got[0].log] == ["queued"]
    assert await store.deliveries("bob", alice.id) == []  # another user's: not there
    assert len(await store.deliveries("carol", plain.notifications[0].id)) == 2
    claimed = await store.claim_deliveries(now=NOW + 3600, limit=100, lease=60)
    assert len(claimed) == 6


async def test_claim_lease_and_record(store: Store) -> None:
    """Due deliveries are claimed once until the lease ends; a recorded outcome is logged
    and final; a retry becomes due again at its time; a deleted notification takes its
    deliveries along."""
    created = await store.create(contract.note(1, escalation=PLAN), ["alice"], now=NOW)
    n = created.notifications[0]
    assert await store.claim_deliveries(now=NOW + 119, limit=10, lease=60) == []
    claimed = await store.claim_deliveries(now=NOW + 120, limit=10, lease=60)
    assert [(d.channel, got.id if got else None) for d, got in claimed] == [("push", n.id)]
    assert await store.claim_deliveries(now=NOW + 121, limit=10, lease=60) == []  # leased
    again = await store.claim_deliveries(now=NOW + 181, limit=10, lease=60)  # holder died
    assert [d.channel for d, _ in again] == ["push"]
    failed = Event(event="failed", at=NOW + 181, attempt=1, reason="503", nextAttemptAt=NOW + 211)
    assert await store.record_delivery(
        n.id, "push", state=State.PENDING, attempts=1, due_at=NOW + 211, event=failed
    )
    assert await store.claim_deliveries(now=NOW + 210, limit=10, lease=60) == []
    (retry,) = await store.claim_deliveries(now=NOW + 211, limit=10, lease=60)
    assert retry[0].attempts == 1
    sent = Event(event="sent", at=NOW + 212, attempt=2)
    assert await store.record_delivery(
        n.id, "push", state=State.SENT, attempts=2, due_at=NOW + 212, event=sent
    )
    # A late holder of an old claim cannot undo it.
    assert not await store.record_delivery(
        n.id, "push", state=State.FAILED, attempts=2, due_at=NOW + 212, event=failed
    )
    (push,) = [d for d in await store.deliveries("alice", n.id) if d.channel == "push"]
    assert (push.state, push.attempts) == (State.SENT, 2)
    assert [(e.event, e.attempt, e.reason) for e in push.log] == [
        ("queued", 0, None),
        ("failed", 1, "503"),
        ("sent", 2, None),
    ]
    assert push.log[1].nextAttemptAt == NOW + 211
    assert await store.delete("alice", [n.id]) == [n.id]
    assert await store.deliveries("alice", n.id) == []
    assert await store.claim_deliveries(now=NOW + 9999, limit=10, lease=60) == []


async def test_concurrent_claims_never_share(store: Store) -> None:
    """Claimers racing over the same due rows each get a disjoint share."""
    for i in range(20):
        await store.create(contract.note(i, escalation=PLAN[:1]), [f"u{i}"], now=NOW)
    shares = await asyncio.gather(
        *(store.claim_deliveries(now=NOW + 200, limit=7, lease=60) for _ in range(4))
    )
    ids = [d.notification_id for share in shares for d, _ in share]
    assert len(ids) == len(set(ids)) == 20
