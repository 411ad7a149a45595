"""The Web Push channel against a local RFC 8030 push service that checks the VAPID JWT
and decrypts the payload with the subscription's keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tidings.backends import open_store
from tidings.delivery import Contact, Message
from tidings.delivery.push import WebPushSender, generate_vapid_key
from tidings.store import Store
from tidings.store.deliveries import PushSubscription

from .peers import push_service

NOW = 1_800_000_000.0


def message(n: int = 1, priority: str = "HIGH") -> Message:
    return Message(
        key=f"ntf_{n}:push",
        notification_id=f"ntf_{n}",
        user_id="alice",
        title="New comment",
        text="Bob: looks good",
        url="/posts/7",
        priority=priority,
        category="comments",
    )


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = open_store(":memory:")
    await s.open()
    yield s
    await s.close()


async def subscribe(store: Store, sub: dict[str, object]) -> None:
    keys = sub["keys"]
    assert isinstance(keys, dict)
    record = PushSubscription(endpoint=str(sub["endpoint"]), **keys)
    await store.add_push_subscription("alice", record, now=NOW)


async def test_encrypted_vapid_signed_to_every_browser(store: Store) -> None:
    """Each of the user's browsers gets the payload, encrypted for its own keys, with a
    VAPID JWT the service verifies; Urgency follows priority; Topic is stable per key."""
    sender = WebPushSender(store, generate_vapid_key(), "mailto:ops@tidings.test")
    async with push_service(sender.public_key) as service:
        await subscribe(store, service.subscribe("laptop"))
        await subscribe(store, service.subscribe("phone"))
        try:
            assert (await sender.send(message(), Contact())).sent
            assert (await sender.send(message(), Contact())).sent  # a retry: same Topic
        finally:
            await sender.close()
    assert sorted(name for name, _, _ in service.received) == ["laptop", "laptop", "phone", "phone"]
    _, headers, data = service.received[0]
    assert data == {
        "id": "ntf_1",
        "title": "New comment",
        "body": "Bob: looks good",
        "url": "/posts/7",
        "priority": "HIGH",
        "category": "comments",
        "tag": "ntf_1",
    }
    assert headers["Urgency"] == "high"
    assert len({h["Topic"] for _, h, _ in service.received}) == 1
    assert len(headers["Topic"]) == 32


async def test_gone_subscriptions_are_removed(store: Store) -> None:
    """A 410 or 404 removes that subscription; the others still get it; with none left
    the push fails for good; a 5xx is retried and keeps the subscription."""
    sender = WebPushSender(store, generate_vapid_key(), "mailto:ops@tidings.test")
    async with push_service(sender.public_key) as service:
        for name in ("old", "lost", "new"):
            await subscribe(store, service.subscribe(name))
        service.answers = {"old": [410], "lost": [404]}
        try:
            assert (await sender.send(message(), Contact())).sent
            left = await store.push_subscriptions("alice")
            assert [s.endpoint.rsplit("/", 1)[1] for s in left] == ["new"]
            service.answers = {"new": [503]}
            busy = await sender.send(message(2), Contact())
            assert (busy.sent, busy.retry) == (False, True)
            assert len(await store.push_subscriptions("alice")) == 1
            service.answers = {"new": [410]}
            gone = await sender.send(message(3), Contact())
            assert (gone.sent, gone.retry) == (False, False)
            none = await sender.send(message(4), Contact())
            assert (none.sent, none.retry, none.reason) == (False, False, "no push subscription")
        finally:
            await sender.close()
    assert [name for name, _, _ in service.received] == ["new"]
