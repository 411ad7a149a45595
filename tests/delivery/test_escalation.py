"""Escalation end to end, driven by an injected clock (no sleeping): real servers, a real
SMTP server and a local RFC 8030 push service; state in SQLite across a restart, and in
PostgreSQL shared by two instances."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tidings.delivery.push import generate_vapid_key
from tidings.delivery.rules import Rule, Step
from tidings.server import Server
from tidings.store.deliveries import Unless
from tidings_sdk import AsyncClient
from tidings_sdk.errors import NotFound

from ..conftest import API_KEY, TIMEOUT, make_settings, token
from .peers import Mailbox, PushService, push_service, smtp_server

PG_URL = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
RULES = {
    "*": Rule(
        steps=(
            Step("push", after=120, unless=Unless.DELIVERED),
            Step("email", after=3600, unless=Unless.READ),
        )
    )
}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Peers:
    """The SMTP server and push service one test's servers send to."""

    def __init__(self, port: int, mailbox: Mailbox, ca: Path, push: PushService, vapid: str):
        self.mailbox, self.push = mailbox, push
        self.settings: dict[str, Any] = {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_tls": "starttls",
            "smtp_ca_file": str(ca),
            "smtp_username": "mailer",
            "smtp_password": "s3cret",
            "email_from": "Tidings <no-reply@tidings.test>",
            "push_vapid_private_key": vapid,
            "push_vapid_subject": "mailto:ops@tidings.test",
            "app_url": "https://app.example",
            # The background round never comes during a test: the test runs each round.
            "delivery_interval": 3600,
            # The local push service is plain http, which only dev mode registers.
            "dev": True,
            "push_service_hosts": ["127.0.0.1"],
        }

    def mails(self) -> list[str]:
        return [mail["Message-ID"] for _, mail in self.mailbox.messages]

    def pushes(self) -> list[str]:
        return [data["id"] for _, _, data in self.push.received]


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Peers]:
    vapid = generate_vapid_key()
    from tidings.delivery.push import WebPushSender

    public = WebPushSender(_NoSubs(), vapid, "mailto:x@y.z").public_key
    async with smtp_server(tmp_path) as (port, mailbox, _), push_service(public) as push:
        yield Peers(port, mailbox, tmp_path / "cert.pem", push, vapid)


class _NoSubs:
    async def push_subscriptions(self, user_id: str) -> list[Any]:
        return []

    async def remove_push_subscription(self, endpoint: str, user_id: str | None = None) -> bool:
        return False


@asynccontextmanager
async def running(
    store_url: str,
    peers: Peers,
    clock: Clock,
    templates: dict[str, Any] | None = None,
    **extra: Any,
) -> AsyncIterator[Any]:
    settings = make_settings(store_url=store_url, **peers.settings, **extra)
    settings.escalation.update(RULES)
    settings.templates.update(templates or {})
    server = Server(settings, clock=clock)
    await server.start()
    try:
        async with aiohttp.ClientSession(base_url=server.url) as http:
            yield Api(server, http)
    finally:
        await server.stop()


class Api:
    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http

    async def call(self, method: str, path: str, body: Any = None, key: str = API_KEY) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        async with self.http.request(method, path, json=body, headers=headers) as r:
            text = await r.text()
            assert r.status < 300, (r.status, text)
            return await r.json() if text else None

    async def notify(self, user: str, **body: Any) -> str:
        body = {"userId": user, "type": "comment", "title": "New comment", **body}
        reply = await self.call("POST", "/api/notifications", body)
        return str(reply["notifications"][0]["id"])

    async def log(self, user: str, nid: str) -> dict[str, list[tuple[str, str | None]]]:
        got = await self.call("GET", f"/api/users/{user}/notifications/{nid}/deliveries")
        return {
            d["channel"]: [(e["event"], e.get("reason")) for e in d["log"]]
            for d in got["deliveries"]
        }

    async def run(self) -> int:
        return await self.server.escalation.run_due()


async def reachable(api: Api, peers: Peers, user: str) -> None:
    """The user's browser subscribes for push, the backend records their email."""
    await api.call("POST", "/api/me/push-subscriptions", peers.push.subscribe(user), token(user))
    await api.call("PUT", f"/api/users/{user}", {"email": f"{user}@example.com"})


async def test_read_delivered_unread_low_and_a_restart(peers: Peers, tmp_path: Path) -> None:
    """Read before the push delay: nothing sent. Left unread: push at 2 min, email at 1 h.
    Delivered to a connection: no push, but email when still unread. LOW: never. A
    restart between the push and the email sends nothing twice; the log says it all."""
    clock = Clock()
    db = str(tmp_path / "tidings.db")
    async with running(db, peers, clock) as api:
        for user in ("ann", "bob", "cat", "dan"):
            await reachable(api, peers, user)
        read = await api.notify("ann")
        unread = await api.notify("bob", actions=[{"id": "o", "label": "Open", "url": "/c/1"}])
        low = await api.notify("cat", priority="LOW")
        seen = await api.notify("dan")
        clock.now += 60
        await api.call("POST", "/api/users/ann/notifications/read", {"ids": [read]})
        ws_url = api.server.url.replace("http", "ws") + f"/ws?token={token('dan')}"
        async with api.http.ws_connect(ws_url) as ws:
            assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "welcome"
            assert (await ws.receive_json(timeout=TIMEOUT))["id"] == seen
        store = api.server.escalation.store
        assert store is not None

        inbox = api.server.inbox
        assert inbox is not None
        async with asyncio.timeout(TIMEOUT):
            await inbox.settled()  # the catch-up's delivery mark is written
        n = await inbox.store.get("dan", seen)
        assert n is not None
        assert n.delivered_at is not None
        clock.now += 59
        assert await api.run() == 0  # nothing due before 120 s
        clock.now += 2
        assert await api.run() == 3  # three pushes due (LOW planned nothing)
        assert peers.pushes() == [unread]
        data = peers.push.received[0][2]
        assert data["url"] == "https://app.example/c/1"
        assert await api.run() == 0
    assert peers.mails() == []
    async with running(db, peers, clock) as api:  # a restart: state is in the store
        clock.now += 3600
        assert await api.run() == 3
        assert await api.run() == 0
        assert sorted(peers.mails()) == sorted(
            f"<{nid}.email@tidings.test>" for nid in (unread, seen)
        )
        assert peers.pushes() == [unread]  # not again after the restart
        assert await api.log("ann", read) == {
            "email": [("queued", None), ("cancelled", "read")],
            "push": [("queued", None), ("cancelled", "read")],
        }
        assert await api.log("bob", unread) == {
            "email": [("queued", None), ("sent", None)],
            "push": [("queued", None), ("sent", None)],
        }
        assert (await api.log("dan", seen))["push"] == [
            ("queued", None),
            ("cancelled", "delivered"),
        ]
        assert await api.log("cat", low) == {}
        counted = api.server.node.metrics.deliveries
        assert (counted["push", "sent"], counted["email", "sent"]) == (0, 2)  # this instance's


async def test_retry_backoff_preferences_and_quiet_hours(peers: Peers) -> None:
    """A 503 from the push service is retried after 30 s, then sent (the log says so, over
    the API and the Python SDK); a channel switched off is skipped; quiet hours in the
    user's zone defer the email to their end."""
    clock = Clock()
    async with running(":memory:", peers, clock) as api:
        for user in ("eve", "fay", "gus"):
            await reachable(api, peers, user)
        await api.call("PUT", "/api/me/preferences", {"email": {"comment": False}}, token("fay"))
        zone = "Asia/Tokyo"
        local = datetime.fromtimestamp(clock.now, ZoneInfo(zone))
        # Quiet from an hour ago to two hours ahead in Tokyo (midnight may fall inside).
        start = (local - timedelta(hours=1)).strftime("%H:%M")
        end = (local + timedelta(hours=2)).strftime("%H:%M")
        await api.call("PUT", "/api/users/gus", {"email": "gus@example.com", "timeZone": zone})
        quiet = {"quietHours": {"start": start, "end": end}}
        await api.call("PUT", "/api/me/preferences", quiet, token("gus"))
        peers.push.answers["eve"] = [503]
        eve = await api.notify("eve", escalation=[{"channel": "push", "after": 0}])
        fay = await api.notify(
            "fay", category="comment", escalation=[{"channel": "email", "after": 0}]
        )
        gus = await api.notify("gus", escalation=[{"channel": "email", "after": 0}])
        assert await api.run() == 3
        assert peers.pushes() == []
        clock.now += 29
        assert await api.run() == 0
        clock.now += 1
        assert await api.run() == 1
        assert peers.pushes() == [eve]
        log = await api.log("eve", eve)
        assert [e for e, _ in log["push"]] == ["queued", "failed", "sent"]
        async with AsyncClient(api.server.url, API_KEY) as sdk:  # the server SDK reads it too
            by_key = await sdk.get_deliveries("eve", eve)
            mine = await sdk.as_user(token("eve")).get_deliveries(eve)
            assert by_key == mine
            assert [d["state"] for d in mine["deliveries"]] == ["sent"]
            with pytest.raises(NotFound):
                await sdk.get_deliveries("fay", eve)
        assert log["push"][1][1] == "push service answered 503"
        assert await api.log("fay", fay) == {"email": [("queued", None), ("skipped", "preference")]}
        got = await api.call("GET", f"/api/users/gus/notifications/{gus}/deliveries")
        (email,) = got["deliveries"]
        assert (email["state"], email["log"][-1]["event"]) == ("pending", "deferred")
        ends = email["log"][-1]["nextAttemptAt"]
        assert datetime.fromtimestamp(ends, ZoneInfo(zone)).strftime("%H:%M") == end
        clock.now = ends - 1
        assert await api.run() == 0
        clock.now = ends
        assert await api.run() == 1
        assert peers.mails() == [f"<{gus}.email@tidings.test>"]
        counted = api.server.node.metrics.deliveries
        assert counted["push", "retried"] == 1
        assert counted["email", "skipped"] == 1
        assert counted["email", "deferred"] == 1


async def test_in_app_off_email_on_is_email_only(peers: Peers) -> None:
    """A category switched off in-app (and push), email left on: the notification is not
    pushed to the open tab, listed or counted unread, but it is stored, its log readable,
    and the email step reaches the real SMTP server; a category still on in-app arrives
    right after it (its seq taken, nothing held back)."""
    clock = Clock()
    async with running(":memory:", peers, clock) as api:
        await reachable(api, peers, "ivy")
        prefs = {"inApp": {"billing": False}, "push": {"billing": False}}
        await api.call("PUT", "/api/me/preferences", prefs, token("ivy"))
        ws_url = api.server.url.replace("http", "ws") + f"/ws?token={token('ivy')}"
        async with api.http.ws_connect(ws_url) as ws:
            welcome = await ws.receive_json(timeout=TIMEOUT)
            assert (welcome["type"], welcome["data"]["unreadCount"]) == ("welcome", 0)
            reply = await api.call(
                "POST",
                "/api/notifications",
                {"userId": "ivy", "type": "invoice", "title": "Invoice 7", "category": "billing"},
            )
            assert (reply["skipped"], reply["inAppOff"]) == ([], ["ivy"])
            [muted] = reply["notifications"]
            assert muted["seq"] == 1
            shown = await api.notify("ivy", title="A comment")
            msg = await ws.receive_json(timeout=TIMEOUT)  # the first message after welcome
            assert (msg["type"], msg["id"], msg["data"]["seq"]) == ("notification", shown, 2)
        page = await api.call("GET", "/api/users/ivy/notifications")
        assert ([n["id"] for n in page["items"]], page["unreadCount"]) == ([shown], 1)
        one = await api.call("GET", f"/api/users/ivy/notifications/{muted['id']}")
        assert one["title"] == "Invoice 7"
        clock.now += 121
        assert await api.run() == 2  # both pushes: the billing one skipped by preference
        assert peers.pushes() == []  # the shown one was delivered to the tab
        clock.now += 3600
        assert await api.run() == 2
        assert sorted(peers.mails()) == sorted(
            f"<{nid}.email@tidings.test>" for nid in (muted["id"], shown)
        )
        mail = next(m for _, m in peers.mailbox.messages if m["Subject"] == "Invoice 7")
        assert mail["To"] == "ivy@example.com"
        assert await api.log("ivy", muted["id"]) == {
            "email": [("queued", None), ("sent", None)],
            "push": [("queued", None), ("skipped", "preference")],
        }


async def test_two_instances_send_once(peers: Peers) -> None:
    """Two instances on one PostgreSQL store, claiming at the same moments, push each
    notification exactly once."""
    import asyncpg

    schema = "t_" + secrets.token_hex(6)
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}?search_path={schema}"
    clock = Clock()
    try:
        async with running(url, peers, clock) as a, running(url, peers, clock) as b:
            await reachable(a, peers, "hal")
            ids = [await a.notify("hal", title=f"n{i}") for i in range(30)]
            clock.now += 121
            counts = await asyncio.gather(*(api.run() for api in (a, b, a, b)))
            while sum(counts) < 30:
                counts += await asyncio.gather(a.run(), b.run())
            assert sum(counts) == 30
            assert sorted(peers.pushes()) == sorted(ids)
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def test_subscription_routes(peers: Peers) -> None:
    """A browser's subscription is registered (201, then 200), listed with the VAPID key
    to subscribe with, and removed (204, then 404); an endpoint outside push_service_hosts
    or keys that are not a P-256 point and 16-byte secret are refused; routes need the
    user's own token; quiet
    hours are validated and shown with the preferences."""
    async with running(":memory:", peers, Clock()) as api:
        sub = peers.push.subscribe("ivy")
        user = {"Authorization": f"Bearer {token('ivy')}"}
        path = "/api/me/push-subscriptions"
        async with api.http.post(path, json=sub, headers=user) as r:
            assert r.status == 201
        async with api.http.post(path, json=sub, headers=user) as r:
            assert r.status == 200
        listed = await api.call("GET", path, key=token("ivy"))
        assert listed["publicKey"] == peers.push.server_key
        assert [s["endpoint"] for s in listed["subscriptions"]] == [sub["endpoint"]]
        async with api.http.post(
            path, json=sub, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as r:
            assert r.status == 401
        async with api.http.post(path, json={"endpoint": "x"}, headers=user) as r:
            assert r.status == 422
        elsewhere = {**sub, "endpoint": "https://internal.example/hook"}
        async with api.http.post(path, json=elsewhere, headers=user) as r:
            assert r.status == 422
            assert "not a known push service" in (await r.json())["error"]["message"]
        bad_keys = {**sub, "keys": {"p256dh": "AAAA", "auth": "AAAA"}}
        async with api.http.post(path, json=bad_keys, headers=user) as r:
            assert r.status == 422
        async with api.http.delete(path, params={"endpoint": sub["endpoint"]}, headers=user) as r:
            assert r.status == 204
        async with api.http.delete(path, json={"endpoint": sub["endpoint"]}, headers=user) as r:
            assert r.status == 404
        quiet = {"quietHours": {"start": "25:00", "end": "07:00"}}
        async with api.http.put("/api/me/preferences", json=quiet, headers=user) as r:
            assert r.status == 422
        prefs = await api.call("GET", "/api/me/preferences", key=token("ivy"))
        assert prefs == {"inApp": {}, "push": {}, "email": {}, "sms": {}, "quietHours": None}


async def test_email_rendered_from_the_users_locale_template(peers: Peers) -> None:
    """An escalated email takes its subject and bodies from the template of the
    notification's type in the directory's locale, with the directory's name escaped in
    HTML; push falls back to the default locale."""
    clock = Clock()
    templates = {
        "invoice_paid": {
            "en": {"title": "Invoice {{ data.number }} paid"},
            "fr": {
                "title": "Facture {{ data.number }} payée",
                "text": "Bonjour {{ user.name }}",
                "html": "<p>Bonjour {{ user.name }}</p>",
            },
        }
    }
    async with running(":memory:", peers, clock, templates) as api:
        await reachable(api, peers, "jo")
        jo = {"email": "jo@example.com", "name": "<Jo>", "locale": "fr-CA"}
        await api.call("PUT", "/api/users/jo", jo)
        steps = [{"channel": "email"}, {"channel": "push"}]
        await api.notify("jo", type="invoice_paid", data={"number": 7}, escalation=steps)
        await reachable(api, peers, "kit")
        await api.notify("kit", type="invoice_paid", data={"number": 8}, escalation=steps[1:])
        assert await api.run() == 3
    (_, mail) = peers.mailbox.messages[0]
    assert mail["Subject"] == "Facture 7 payée"
    html = mail.get_body(("html",))
    assert html is not None
    assert html.get_content().strip() == "<p>Bonjour &lt;Jo&gt;</p>"
    titles = sorted(data["title"] for _, _, data in peers.push.received)
    assert titles == ["Facture 7 payée", "Invoice 8 paid"]


async def test_in_app_title_and_message_from_the_users_locale_template(peers: Peers) -> None:
    """One create for two users stores each one's title and message from the template of
    the type in their directory locale (the default for a user without an entry), with
    the directory's name and the notification's data: pushed to the open tab, listed,
    and the escalated email says the same."""
    clock = Clock()
    templates = {
        "invoice_paid": {
            "en": {
                "title": "Invoice {{ data.number }} paid",
                "text": "Thanks {{ user.name or 'there' }}, we got {{ data.amount }}.",
            },
            "fr": {
                "title": "Facture {{ data.number }} payée",
                "text": "Merci {{ user.name }}, {{ data.amount }} reçus.",
            },
        }
    }
    async with running(":memory:", peers, clock, templates) as api:
        await api.call(
            "PUT", "/api/users/jo", {"email": "jo@example.com", "name": "Jo", "locale": "fr-CA"}
        )
        ws_url = api.server.url.replace("http", "ws") + f"/ws?token={token('jo')}"
        async with api.http.ws_connect(ws_url) as ws:
            assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "welcome"
            body = {
                "userIds": ["jo", "kit"],
                "type": "invoice_paid",
                "title": "Invoice paid",
                "data": {"number": 7, "amount": "12 €"},
                "escalation": [{"channel": "email", "after": 60}],
            }
            reply = await api.call("POST", "/api/notifications", body)
            pushed = (await ws.receive_json(timeout=TIMEOUT))["data"]
        assert (pushed["title"], pushed["message"]) == ("Facture 7 payée", "Merci Jo, 12 € reçus.")
        page = await api.call("GET", "/api/users/kit/notifications")
        kit = page["items"][0]
        assert (kit["title"], kit["message"]) == ("Invoice 7 paid", "Thanks there, we got 12 €.")
        jo_id = reply["notifications"][0]["id"]
        stored = await api.call("GET", f"/api/users/jo/notifications/{jo_id}")
        assert stored["title"] == "Facture 7 payée"
        clock.now += 60
        await api.run()
    (_, mail) = peers.mailbox.messages[0]
    assert mail["Subject"] == "Facture 7 payée"
    text = mail.get_body(("plain",))
    assert text is not None
    assert "Merci Jo, 12 € reçus." in text.get_content()


async def test_in_app_templates_for_a_role_and_a_batch(peers: Peers) -> None:
    """A role target and a batch item are rendered per recipient too: the role's users are
    resolved at create to render their text, each in their own locale."""
    templates = {
        "invoice_paid": {
            "en": {"title": "Invoice {{ data.number }} paid"},
            "fr": {"title": "Facture {{ data.number }} payée"},
        }
    }
    async with running(":memory:", peers, Clock(), templates) as api:
        await api.call("PUT", "/api/users/jo", {"locale": "fr", "roles": ["STAFF"]})
        await api.call("PUT", "/api/users/kit", {"roles": ["STAFF"]})
        body = {"role": "STAFF", "type": "invoice_paid", "title": "Paid", "data": {"number": 7}}
        reply = await api.call("POST", "/api/notifications", body)
        assert sorted(n["userId"] for n in reply["notifications"]) == ["jo", "kit"]
        item = {"userId": "jo", "type": "invoice_paid", "title": "Paid", "data": {"number": 8}}
        await api.call("POST", "/api/notifications/batch", {"notifications": [item]})
        titles = {}
        for user in ("jo", "kit"):
            page = await api.call("GET", f"/api/users/{user}/notifications")
            titles[user] = [n["title"] for n in page["items"]]
    assert titles == {
        "jo": ["Facture 8 payée", "Facture 7 payée"],
        "kit": ["Invoice 7 paid"],
    }


async def test_digest_lists_what_is_still_unread(peers: Peers) -> None:
    """Notifications of a digest category wait for the next digest time in the user's
    zone and go out as one email listing those still unread; nothing goes twice."""
    clock = Clock()
    tick = datetime.fromtimestamp(clock.now + 3600, ZoneInfo("UTC")).strftime("%H:%M")
    async with running(":memory:", peers, clock, digest_times=[tick]) as api:
        await reachable(api, peers, "lou")
        digest = [{"channel": "digest"}]
        ids = [
            await api.notify("lou", title=f"News {i}", category="news", escalation=digest)
            for i in range(3)
        ]
        await api.call("POST", "/api/users/lou/notifications/read", {"ids": [ids[1]]})
        assert await api.run() == 3  # two deferred to the digest time, one cancelled (read)
        assert await api.run() == 0
        clock.now += 3600  # past the digest time (the minute rounds down)
        assert await api.run() == 2
        assert await api.run() == 0
        log = await api.log("lou", ids[0])
        assert [e for e, _ in log["digest"]] == ["queued", "deferred", "sent"]
        assert (await api.log("lou", ids[1]))["digest"][-1] == ("cancelled", "read")
    assert len(peers.mailbox.messages) == 1
    mail = peers.mailbox.messages[0][1]
    assert mail["Subject"] == "2 new notifications in news"
    assert mail["Message-ID"] == f"<{ids[0]}.digest@tidings.test>"
    text = mail.get_body(("plain",))
    assert text is not None
    assert text.get_content().replace("\r\n", "\n").strip() == "- News 0\n- News 2"
