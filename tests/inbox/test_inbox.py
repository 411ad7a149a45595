"""The notification inbox over real connections: create, push, catch-up, ack, read, query."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tidings.inbox import CreateRequest

from ..conftest import TIMEOUT, Harness, ServerFactory, recv, recv_type, request, token


async def notify(
    h: Harness, status: int = 201, key: str | None = None, **body: Any
) -> dict[str, Any]:
    body.setdefault("type", "booking_confirmation")
    body.setdefault("title", "Booking Confirmed")
    headers = {"Idempotency-Key": key} if key else None
    got, reply = await h.api("POST", "/api/notifications", body, headers=headers)
    assert got == status, reply
    return reply


async def test_online_user_gets_the_notification_pushed(harness: Harness) -> None:
    """A create commits, answers 201 with ids, and pushes to every tab of the user."""
    async with harness.client("alice") as t1, harness.client("alice") as t2:
        reply = await notify(
            harness,
            userId="alice",
            message="Your booking is confirmed",
            priority="HIGH",
            category="USER",
            data={"booking_id": 7},
            actions=[{"id": "view", "label": "View", "url": "/b/7"}],
        )
        [created] = reply["notifications"]
        assert (created["userId"], created["seq"]) == ("alice", 1)
        for ws in (t1, t2):
            msg = await recv_type(ws, "notification")
            assert msg["id"] == created["id"]
            data = msg["data"]
            assert (data["id"], data["seq"], data["priority"]) == (created["id"], 1, "HIGH")
            assert data["title"] == "Booking Confirmed"
            assert data["data"] == {"booking_id": 7}
            assert data["actionable"] is True
            assert data["actions"][0]["url"] == "/b/7"


async def test_offline_user_gets_missed_on_connect(harness: Harness) -> None:
    """Welcome carries the unread count; missed notifications follow in seq order."""
    for i in range(3):
        await notify(harness, userId="bob", title=f"n{i}")
    async with harness.connect(f"?token={token('bob')}") as ws:
        welcome = await recv(ws)
        assert welcome["type"] == "welcome"
        assert welcome["data"]["unreadCount"] == 3
        got = [await recv(ws) for _ in range(3)]
    assert [m["data"]["seq"] for m in got] == [1, 2, 3]
    assert all(m["data"]["recovered"] for m in got)


async def test_resume_from_last_seq(harness: Harness) -> None:
    """?lastSeq=N gets only what came after N."""
    for i in range(4):
        await notify(harness, userId="bob", title=f"n{i}")
    async with harness.connect(f"?token={token('bob')}&lastSeq=2") as ws:
        await recv_type(ws, "welcome")
        assert [(await recv(ws))["data"]["seq"] for _ in range(2)] == [3, 4]
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_acked_are_not_redelivered(harness: Harness) -> None:
    """For an acking client (?ack=1), unacked ones come back on the next connection."""
    ids = [
        (await notify(harness, userId="bob", title=f"n{i}"))["notifications"][0]["id"]
        for i in range(2)
    ]
    ack_url = f"?token={token('bob')}&ack=1"
    async with harness.connect(ack_url) as ws:
        for _ in range(2):
            await recv_type(ws, "notification")
        reply = await request(ws, {"type": "ack", "notificationIds": [ids[0]]})
        assert reply["type"] == "acked"
        assert reply["data"]["ids"] == [ids[0]]
    async with harness.connect(ack_url) as ws:
        again = await recv_type(ws, "notification")
        assert again["id"] == ids[1]
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_mark_read_reaches_other_tabs(harness: Harness) -> None:
    """mark_read in one tab sends notification_read with ids and unread count to the others."""
    async with harness.client("alice") as t1, harness.client("alice") as t2:
        a = (await notify(harness, userId="alice"))["notifications"][0]["id"]
        await notify(harness, userId="alice")
        for ws in (t1, t2):
            await recv_type(ws, "notification")
            await recv_type(ws, "notification")
        reply = await request(t1, {"type": "mark_read", "notificationId": a})
        assert reply["type"] == "notification_read"
        assert reply["data"] == {"ids": [a], "unreadCount": 1}
        other = await recv_type(t2, "notification_read")
        assert other["data"] == {"ids": [a], "unreadCount": 1}
        # All, over HTTP, as the backend would.
        status, body = await harness.api(
            "POST", "/api/users/alice/notifications/read", {"all": True}
        )
        assert status == 200
        assert body["unreadCount"] == 0
        assert len(body["ids"]) == 1
        for ws in (t1, t2):
            assert (await recv_type(ws, "notification_read"))["data"]["unreadCount"] == 0


async def test_get_notifications_pages(harness: Harness) -> None:
    """get_notifications pages newest first with a cursor; a bad cursor is INVALID_MESSAGE."""
    for i in range(5):
        await notify(harness, userId="carol", title=f"n{i}")
    async with harness.client("carol") as ws:
        first = await request(ws, {"type": "get_notifications", "limit": 3})
        assert first["type"] == "notifications"
        data = first["data"]
        assert [n["seq"] for n in data["items"]] == [5, 4, 3]
        assert data["unreadCount"] == 5
        assert data["nextCursor"]
        rest = await request(
            ws, {"type": "get_notifications", "limit": 3, "cursor": data["nextCursor"]}
        )
        assert [n["seq"] for n in rest["data"]["items"]] == [2, 1]
        assert rest["data"]["nextCursor"] is None
        bad = await request(ws, {"type": "get_notifications", "cursor": "!!"})
        assert bad["data"]["code"] == "INVALID_MESSAGE"


async def test_me_endpoints_and_isolation(harness: Harness) -> None:
    """A user reads only their own inbox with their JWT; others' ids are 404 like missing ones."""
    mine = (await notify(harness, userId="alice"))["notifications"][0]["id"]
    theirs = (await notify(harness, userId="bob"))["notifications"][0]["id"]
    alice = token("alice")
    status, page = await harness.api("GET", "/api/me/notifications", key=alice)
    assert status == 200
    assert [n["id"] for n in page["items"]] == [mine]
    assert (await harness.api("GET", f"/api/me/notifications/{mine}", key=alice))[0] == 200
    missing = await harness.api("GET", "/api/me/notifications/ntf_nope", key=alice)
    other = await harness.api("GET", f"/api/me/notifications/{theirs}", key=alice)
    assert missing == other
    assert missing[0] == 404
    status, body = await harness.api(
        "POST", "/api/me/notifications/read", {"ids": [theirs]}, key=alice
    )
    assert (status, body["ids"]) == (200, [])
    assert (await harness.api("GET", "/api/me/notifications"))[0] == 401  # API key: not a user
    status, page = await harness.api("GET", "/api/users/bob/notifications")
    assert page["unreadCount"] == 1


async def test_role_and_all_targets_reach_known_offline_users(harness: Harness) -> None:
    """Role and all targets reach users by the roles of their last connection."""
    async with harness.client("lib1", ("LIBRARIAN",)), harness.client("stu1", ("STUDENT",)):
        pass  # both are now known, and offline again
    reply = await notify(harness, role="LIBRARIAN", title="Peak hours")
    assert [n["userId"] for n in reply["notifications"]] == ["lib1"]
    reply = await notify(harness, all=True, title="Closing soon")
    assert sorted(n["userId"] for n in reply["notifications"]) == ["lib1", "stu1"]
    async with harness.connect(f"?token={token('lib1', ('LIBRARIAN',))}") as ws:
        assert (await recv(ws))["data"]["unreadCount"] == 2


async def test_idempotency_key(harness: Harness) -> None:
    """A retry with the same key returns the same ids (200); a different body is 409."""
    first = await notify(harness, key="k-1", userIds=["a", "b"])
    again = await notify(harness, status=200, key="k-1", userIds=["a", "b"])
    assert again["replayed"] is True
    assert again["notifications"] == first["notifications"]
    await notify(harness, status=409, key="k-1", userIds=["a"])
    _, page = await harness.api("GET", "/api/users/a/notifications")
    assert len(page["items"]) == 1


async def test_bad_creates_change_nothing(harness: Harness) -> None:
    """Each invalid create gets a clear 4xx and stores nothing."""
    cases: list[tuple[dict[str, Any], int]] = [
        ({"title": "x"}, 422),  # no target
        ({"userId": "u", "role": "R"}, 422),  # two targets
        ({"userId": "u", "colour": "red"}, 422),  # unknown field
        ({"userId": "u", "priority": "URGENT"}, 422),  # invalid priority
        ({"userId": "u", "expiresAt": "2001-01-01T00:00:00Z"}, 422),
        ({"userId": "u", "expiresAt": "tomorrow"}, 422),
        ({"userIds": []}, 422),
        ({"userId": "u", "type": ""}, 422),
        ({"userId": "u", "title": "nul\u0000byte"}, 422),
        (
            {"userId": "u", "actions": [{"id": "a", "label": "x", "url": "javascript:alert(1)"}]},
            422,
        ),
        ({"userId": "u", "actions": [{"id": "a", "label": "x", "url": "//evil.example/"}]}, 422),
    ]
    for body, status in cases:
        got, reply = await harness.api("POST", "/api/notifications", body)
        assert got == status, (body, reply)
        assert reply["error"]["message"]
    got, _ = await harness.api(
        "POST",
        "/api/notifications",
        raw=json.dumps({"userId": "u", "data": "x" * 1_100_000}).encode(),
    )
    assert got == 413
    got, _ = await harness.api("GET", "/api/users/u/notifications?cursor=%%%")
    assert got == 400
    _, page = await harness.api("GET", "/api/users/u/notifications")
    assert page == {"items": [], "unreadCount": 0, "nextCursor": None}


async def test_catch_up_and_live_keep_seq_order(harness: Harness) -> None:
    """Notifications created while a connection catches up arrive after it, in seq order."""
    for i in range(30):
        await notify(harness, userId="dave", title=f"old{i}")

    async def create_more() -> None:
        for i in range(30):
            await notify(harness, userId="dave", title=f"new{i}")

    async with harness.connect(f"?token={token('dave')}") as ws:
        creator = asyncio.create_task(create_more())
        seqs: list[int] = []
        while len(set(seqs)) < 60:
            msg = await recv(ws)
            if msg["type"] == "notification":
                seqs.append(msg["data"]["seq"])
        await creator
    assert seqs == sorted(seqs)
    assert len(seqs) == len(set(seqs)) == 60


async def test_python_api_create(harness: Harness) -> None:
    """Embedded code creates notifications with the same rules as the HTTP API."""
    inbox = harness.server.inbox
    assert inbox is not None
    async with harness.client("erin") as ws:
        created = await inbox.create(CreateRequest(userId="erin", title="From Python"))
        msg = await recv_type(ws, "notification")
        assert msg["id"] == created.notifications[0].id


async def test_store_file_survives_restart(make_server: ServerFactory, tmp_path: Any) -> None:
    """With a SQLite file, notifications created before a restart are there after it."""
    db = str(tmp_path / "inbox.db")
    first = await make_server(store_url=db)
    await notify(first, userId="fred")
    await first.server.stop()
    second = await make_server(store_url=db)
    async with second.connect(f"?token={token('fred')}") as ws:
        assert (await recv(ws))["data"]["unreadCount"] == 1


async def test_unacked_redelivered_with_backoff_then_stops(make_server: ServerFactory) -> None:
    """An acknowledging client gets an unacked notification again, up to the attempt limit."""
    clock = FakeClock()
    h = await make_server(max_delivery_attempts=3, ack_timeout=10)
    inbox = h.server.inbox
    assert inbox is not None
    h.server.node.clock = clock  # time moves only when the test says so
    async with h.connect(f"?token={token('gina')}&ack=1") as ws:
        await recv_type(ws, "welcome")
        nid = (await notify(h, userId="gina"))["notifications"][0]["id"]
        assert (await recv(ws))["id"] == nid
        clock.now += 9
        assert await inbox.redeliver_due() == 0
        clock.now += 2  # past 10 s
        assert await inbox.redeliver_due() == 1
        again = await recv(ws)
        assert (again["id"], again["data"]["redelivered"]) == (nid, True)
        clock.now += 15  # the second retry waits 20 s, not 10
        assert await inbox.redeliver_due() == 0
        clock.now += 10
        assert await inbox.redeliver_due() == 1
        assert (await recv(ws))["id"] == nid
        clock.now += 1000  # three pushes were the limit
        assert await inbox.redeliver_due() == 0
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
    got = await inbox.store.get("gina", nid)
    assert got is not None
    assert got.attempts == 3
    assert got.delivered_at is not None


async def test_ack_stops_redelivery(make_server: ServerFactory) -> None:
    """Once acked (from any tab), a notification is not pushed again."""
    clock = FakeClock()
    h = await make_server(ack_timeout=10)
    inbox = h.server.inbox
    assert inbox is not None
    h.server.node.clock = clock
    async with (
        h.connect(f"?token={token('hal')}&ack=1") as t1,
        h.connect(f"?token={token('hal')}&ack=1") as t2,
    ):
        for ws in (t1, t2):
            await recv_type(ws, "welcome")
        nid = (await notify(h, userId="hal"))["notifications"][0]["id"]
        for ws in (t1, t2):
            assert (await recv(ws))["id"] == nid
        assert (await request(t1, {"type": "ack", "notificationId": nid}))["data"]["ids"] == [nid]
        clock.now += 100
        assert await inbox.redeliver_due() == 0
        got = await inbox.store.get("hal", nid)
        assert got is not None
        assert got.acked_at is not None


async def test_clients_that_never_ack_get_no_redelivery(harness: Harness) -> None:
    """Without ?ack=1 (and no ack sent), a pushed notification is not pushed again."""
    inbox = harness.server.inbox
    assert inbox is not None
    clock = FakeClock()
    harness.server.node.clock = clock
    async with harness.client("ivy") as ws:
        await notify(harness, userId="ivy")
        await recv_type(ws, "notification")
        clock.now += 10_000
        assert await inbox.redeliver_due() == 0
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_retention_and_expiry_purge(harness: Harness) -> None:
    """Expired notifications are never delivered and are purged; so are old ones."""
    inbox = harness.server.inbox
    assert inbox is not None
    clock = FakeClock()
    harness.server.node.clock = clock
    soon = iso_in(clock.now, 60)
    await notify(harness, userId="jo", title="short-lived", expiresAt=soon)
    await notify(harness, userId="jo", title="lasting")
    clock.now += 120
    async with harness.connect(f"?token={token('jo')}") as ws:
        welcome = await recv(ws)
        assert welcome["data"]["unreadCount"] == 1
        assert (await recv(ws))["data"]["title"] == "lasting"
    assert await inbox.purge() == 1
    clock.now += 91 * 86400
    assert await inbox.purge() == 1
    _, page = await harness.api("GET", "/api/users/jo/notifications")
    assert page["items"] == []


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def iso_in(now: float, seconds: float) -> str:
    from tidings.node import iso_timestamp

    return iso_timestamp(now + seconds)


async def test_in_app_preference_skips_the_user(harness: Harness) -> None:
    """A user who switched a category off in-app is skipped, and told so in the answer."""
    status, _ = await harness.api(
        "PUT", "/api/users/kim/preferences", {"inApp": {"MARKETING": False}}
    )
    assert status == 200
    status, prefs = await harness.api("GET", "/api/me/preferences", key=token("kim"))
    assert (status, prefs["inApp"]) == (200, {"MARKETING": False})
    reply = await notify(harness, userIds=["kim", "lee"], category="MARKETING")
    assert [n["userId"] for n in reply["notifications"]] == ["lee"]
    assert reply["skipped"] == ["kim"]
    reply = await notify(harness, userIds=["kim"], category="SECURITY")
    assert reply["skipped"] == []
    assert len(reply["notifications"]) == 1


async def test_default_catch_up_sends_every_unread(harness: Harness) -> None:
    """Without lastSeq or ack mode, each connection is sent every unread notification."""
    read = (await notify(harness, userId="max", title="read"))["notifications"][0]["id"]
    await notify(harness, userId="max", title="unread 1")
    await notify(harness, userId="max", title="unread 2")
    await harness.api("POST", "/api/users/max/notifications/read", {"ids": [read]})
    for _ in range(2):  # and again on the next connection: at least once, dedupe by id
        async with harness.connect(f"?token={token('max')}") as ws:
            assert (await recv(ws))["data"]["unreadCount"] == 2
            titles = [(await recv(ws))["data"]["title"] for _ in range(2)]
            assert titles == ["unread 1", "unread 2"]
            assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_webhook_for_unacked_signed_and_retried(make_server: ServerFactory) -> None:
    """A notification unacked past webhook_delay is POSTed, signed (Standard Webhooks, which
    the reference verifier accepts, and the old X-Tidings headers), retried on 5xx with the
    same webhook-id."""
    from aiohttp import web
    from standardwebhooks import Webhook, WebhookVerificationError

    from tidings.delivery.webhook import verifier_secret
    from tidings.inbox.webhooks import signature

    received: list[tuple[dict[str, Any], bool]] = []
    ids: list[str] = []
    answers = [500, 200]
    verifier = Webhook(verifier_secret("hook-secret"))

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        expected = signature("hook-secret", request.headers["X-Tidings-Timestamp"], body)
        # The fake clock starts at the real time and moves 92 s: inside the verifier's
        # 5-minute tolerance.
        assert verifier.verify(body, dict(request.headers)) == json.loads(body)
        tampered = body.replace(b"nia", b"nib")
        with pytest.raises(WebhookVerificationError):
            verifier.verify(tampered, dict(request.headers))
        ids.append(request.headers["webhook-id"])
        received.append((json.loads(body), request.headers["X-Tidings-Signature"] == expected))
        return web.Response(status=answers.pop(0))

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        clock = FakeClock()
        h = await make_server(
            webhook_url=f"http://127.0.0.1:{port}/hook",
            webhook_secret="hook-secret",
            webhook_delay=60,
        )
        h.server.node.clock = clock
        inbox = h.server.inbox
        assert inbox is not None
        nid = (await notify(h, userId="nia"))["notifications"][0]["id"]
        acked = (await notify(h, userId="nia"))["notifications"][0]["id"]
        await inbox.ack("nia", [acked])
        assert await inbox.send_webhooks() == 0
        assert received == []
        clock.now += 61
        assert await inbox.send_webhooks() == 0  # the receiver answered 500
        assert await inbox.send_webhooks() == 0  # the retry waits 30 s
        clock.now += 31
        assert await inbox.send_webhooks() == 1
        assert await inbox.send_webhooks() == 0  # sent once, never again
        assert len(received) == 2
        assert ids == [f"{nid}.unacked"] * 2
        for payload, signed in received:
            assert signed
            assert payload["event"] == "notification.unacked"
            assert (payload["userId"], payload["notification"]["id"]) == ("nia", nid)
    finally:
        await runner.cleanup()


async def test_archive_and_delete(harness: Harness) -> None:
    """Archive and delete over WebSocket and HTTP; every tab hears of it."""
    ids = [
        (await notify(harness, userId="oz", title=f"n{i}"))["notifications"][0]["id"]
        for i in range(3)
    ]
    async with harness.client("oz") as t1, harness.client("oz") as t2:
        for ws in (t1, t2):  # each tab is sent every unread one
            for _ in range(3):
                await recv_type(ws, "notification")
        reply = await request(t1, {"type": "archive", "notificationId": ids[0]})
        assert reply["type"] == "notification_archived"
        assert reply["data"] == {"ids": [ids[0]], "unreadCount": 2}
        assert (await recv_type(t2, "notification_archived"))["data"]["ids"] == [ids[0]]
        reply = await request(t1, {"type": "delete", "notificationIds": [ids[1]]})
        assert reply["data"] == {"ids": [ids[1]], "unreadCount": 1}
        assert (await recv_type(t2, "notification_deleted"))["data"]["ids"] == [ids[1]]
        status, body = await harness.api("DELETE", f"/api/users/oz/notifications/{ids[2]}")
        assert (status, body["unreadCount"]) == (200, 0)
        for ws in (t1, t2):
            assert (await recv_type(ws, "notification_deleted"))["data"]["ids"] == [ids[2]]
    status, _ = await harness.api("DELETE", f"/api/users/oz/notifications/{ids[2]}")
    assert status == 404
    status, body = await harness.api(
        "POST", "/api/users/oz/notifications/archive", {"ids": ["ntf_missing"]}
    )
    assert (status, body["ids"]) == (200, [])
    _, page = await harness.api("GET", "/api/users/oz/notifications")
    assert page["items"] == []


async def test_archived_list_and_unarchive(harness: Harness) -> None:
    """Archived ones page over HTTP (?archived=true) and WebSocket with archivedAt; unarchive
    brings them back to the inbox and the unread count, and every tab hears of it."""
    ids = [
        (await notify(harness, userId="ari", title=f"n{i}"))["notifications"][0]["id"]
        for i in range(4)
    ]
    base = "/api/users/ari/notifications"
    status, body = await harness.api("POST", base + "/archive", {"ids": ids[:3]})
    assert (status, body["unreadCount"]) == (200, 1)
    status, page = await harness.api("GET", base + "?archived=true&limit=2")
    assert status == 200
    assert [n["id"] for n in page["items"]] == [ids[2], ids[1]]
    assert all(n["archivedAt"].endswith("Z") for n in page["items"])
    assert page["unreadCount"] == 1
    _, rest = await harness.api("GET", f"{base}?archived=true&cursor={page['nextCursor']}")
    assert ([n["id"] for n in rest["items"]], rest["nextCursor"]) == ([ids[0]], None)
    _, inbox = await harness.api("GET", base)
    assert [n["id"] for n in inbox["items"]] == [ids[3]]
    assert "archivedAt" not in inbox["items"][0]
    status, body = await harness.api("GET", base + "?archived=maybe")
    assert status == 400
    async with harness.client("ari") as t1, harness.client("ari") as t2:
        for ws in (t1, t2):
            await recv_type(ws, "notification")
        reply = await request(t1, {"type": "get_notifications", "archived": True, "limit": 5})
        assert [n["id"] for n in reply["data"]["items"]] == [ids[2], ids[1], ids[0]]
        reply = await request(t1, {"type": "unarchive", "ids": [ids[1], "ntf_missing"]})
        assert reply["type"] == "notification_unarchived"
        assert reply["data"] == {"ids": [ids[1]], "unreadCount": 2}
        assert (await recv_type(t2, "notification_unarchived"))["data"]["ids"] == [ids[1]]
        status, body = await harness.api("POST", base + "/unarchive", {"ids": [ids[0]]})
        assert (status, body) == (200, {"ids": [ids[0]], "unreadCount": 3})
        for ws in (t1, t2):
            assert (await recv_type(ws, "notification_unarchived"))["data"]["ids"] == [ids[0]]
    status, body = await harness.api("POST", base + "/unarchive", {})
    assert status == 422
    _, page = await harness.api("GET", base + "?archived=true")
    assert [n["id"] for n in page["items"]] == [ids[2]]


async def test_in_app_off_takes_its_seq_without_holding_the_next_back(
    make_server: ServerFactory,
) -> None:
    """In a cluster (Redis), a notification stored with in-app off is never pushed but
    counts as seen: the next one, a seq later, goes out at once instead of waiting for
    the one that will never come."""
    prefix = f"t{time.monotonic_ns()}:"
    h = await make_server(broker_url="redis://127.0.0.1:6379/0", broker_prefix=prefix)
    inbox = h.server.inbox
    assert inbox is not None
    held: list[int] = []
    hold_back = inbox.pusher._hold_back

    def recording(session: Any, n: Any) -> None:
        held.append(n.seq)
        hold_back(session, n)

    inbox.pusher._hold_back = recording  # type: ignore[method-assign]
    status, _ = await h.api("PUT", "/api/users/ned/preferences", {"inApp": {"billing": False}})
    assert status == 200
    async with h.client("ned") as ws:
        muted = await notify(
            h, userId="ned", category="billing", escalation=[{"channel": "email", "after": 60}]
        )
        assert (muted["inAppOff"], muted["notifications"][0]["seq"]) == (["ned"], 1)
        shown = await notify(h, userId="ned", title="shown")
        msg = await recv_type(ws, "notification")
        assert (msg["id"], msg["data"]["seq"]) == (shown["notifications"][0]["id"], 2)
    assert held == []


async def test_welcome_is_first_even_during_broadcasts(harness: Harness) -> None:
    """A broadcast sent while a connection's welcome is being prepared arrives after it."""
    inbox = harness.server.inbox
    assert inbox is not None
    node = harness.server.node
    store = inbox.store
    real_count = store.unread_count

    async def count_then_broadcast(user_id: str, *, now: float) -> int:
        # Exactly the window between joining the hub and writing the welcome.
        await node.broadcast("tick", {"for": user_id})
        return await real_count(user_id, now=now)

    store.unread_count = count_then_broadcast  # type: ignore[method-assign]
    async with harness.connect(f"?token={token('wes')}") as ws:
        assert (await recv(ws))["type"] == "welcome"
        assert (await recv(ws))["data"] == {"for": "wes"}


async def test_no_duplicate_when_created_during_catch_up(harness: Harness) -> None:
    """A notification created while a connection catches up reaches it exactly once."""
    for i in range(300):  # a catch-up long enough to race with
        await harness.api("POST", "/api/notifications", {"userId": "quinn", "title": f"o{i}"})
    for attempt in range(10):
        async with harness.connect(f"?token={token('quinn')}") as ws:
            assert (await recv(ws))["type"] == "welcome"
            created = asyncio.create_task(notify(harness, userId="quinn", title=f"new{attempt}"))
            seen: list[str] = []
            async with asyncio.timeout(TIMEOUT):
                while True:
                    msg = await recv(ws)
                    if msg["type"] == "notification":
                        seen.append(msg["id"])
                        if msg["data"]["title"] == f"new{attempt}":
                            break
            await created
            await ws.send('{"type":"ping","id":"end"}')
            async with asyncio.timeout(TIMEOUT):
                while (msg := await recv(ws)).get("replyTo") != "end":
                    if msg["type"] == "notification":  # anything after it, up to the pong
                        seen.append(msg["id"])
            assert len(seen) == len(set(seen)), "a notification arrived twice"


async def test_ids_take_either_name_on_both_sides(harness: Harness) -> None:
    """mark_read/archive/delete take `ids` (canonical) and `notificationIds` over WS and HTTP."""
    ids = [
        (await notify(harness, userId="ida", title=f"n{i}"))["notifications"][0]["id"]
        for i in range(6)
    ]
    async with harness.client("ida") as ws:
        for _ in ids:
            await recv_type(ws, "notification")
        reply = await request(ws, {"type": "mark_read", "ids": [ids[0]]})
        assert reply["data"] == {"ids": [ids[0]], "unreadCount": 5}
        reply = await request(ws, {"type": "archive", "ids": [ids[1]], "notificationId": ids[2]})
        assert sorted(reply["data"]["ids"]) == sorted(ids[1:3])
        reply = await request(ws, {"type": "delete", "ids": [ids[3]]})
        assert reply["data"]["ids"] == [ids[3]]
        base = "/api/users/ida/notifications"
        status, body = await harness.api("POST", base + "/read", {"notificationIds": [ids[4]]})
        assert (status, body["ids"]) == (200, [ids[4]])
        assert (await recv_type(ws, "notification_read"))["data"]["ids"] == [ids[4]]
        status, body = await harness.api("POST", base + "/archive", {"notificationIds": [ids[5]]})
        assert (status, body) == (200, {"ids": [ids[5]], "unreadCount": 0})
        status, body = await harness.api("POST", base + "/archive", {})
        assert (status, body["error"]["message"]) == (422, "give ids")
        status, body = await harness.api("POST", base + "/read", {"ids": [], "all": True})
        assert status == 422


async def test_priority_is_case_insensitive_over_http(harness: Harness) -> None:
    """`"priority": "high"` is HIGH, as `tidings notify --priority high` is; junk is a 422."""
    created = await notify(harness, userId="pat", priority="high")
    nid = created["notifications"][0]["id"]
    status, item = await harness.api("GET", f"/api/users/pat/notifications/{nid}")
    assert (status, item["priority"]) == (200, "HIGH")
    await notify(harness, userId="pat", priority="Critical")
    reply = await notify(harness, 422, userId="pat", priority="urgent")
    assert "priority" in reply["error"]["message"]


def test_view_timestamps_follow_each_notification() -> None:
    """view's cached timestamp strings are each notification's own, whatever came
    before: the same instant twice, then others, then the first again."""
    from tidings.inbox import view
    from tidings.publication import iso_timestamp
    from tidings.store import Notification, Priority

    def stored(created: float, read: float | None = None) -> Notification:
        return Notification(
            id="ntf_1",
            user_id="ann",
            seq=1,
            type="t",
            title=None,
            message=None,
            priority=Priority.MEDIUM,
            category=None,
            data=None,
            actions=(),
            expires_at=None,
            created_at=created,
            read_at=read,
        )

    for created in (1_800_000_000.0, 1_800_000_000.0, 1_800_000_000.5, 1_700_000_123.25):
        got = view(stored(created, read=created + 1))
        assert got.createdAt == got.timestamp == iso_timestamp(created)
        assert got.readAt == iso_timestamp(created + 1)
    assert view(stored(1_800_000_000.0)).createdAt == "2027-01-15T08:00:00.000Z"
