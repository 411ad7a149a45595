"""The Python client (tidings.client) against real servers: events, reconnects, recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tidings.channels import NamespacePolicy
from tidings.client import Client, ClientClosed, ClientError, QueueFull, Recovery, backoff_delay
from tidings.server import Server

from ..conftest import TIMEOUT, Harness, ServerFactory, make_settings, token, wait_for

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


async def next_of(client: Client, kind: str) -> dict[str, Any]:
    """Skip the client's events until one of type ``kind``."""
    async with asyncio.timeout(TIMEOUT):
        async for msg in client:
            if msg["type"] == kind:
                return msg
    raise AssertionError(f"the client ended before a {kind!r} event")


async def notify(h: Harness, user: str, title: str = "hello") -> str:
    """Create one notification through the HTTP API; return its id."""
    status, reply = await h.api("POST", "/api/notifications", {"userId": user, "title": title})
    assert status == 201, reply
    nid: str = reply["notifications"][0]["id"]
    return nid


class GatedToken:
    """A token callable that counts its calls and waits while its gate is closed."""

    def __init__(self, user: str = "alice") -> None:
        self.user = user
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> str:
        self.calls += 1
        await self.gate.wait()
        # A different lifetime per call, so each connection's welcome shows a new token.
        return token(self.user, ttl=3600 * self.calls)


async def restart(h: Harness, **settings: Any) -> Harness:
    """Stop the harness's server and start a new one on the same port."""
    port = h.server.port
    await h.server.stop()
    server = Server(make_settings(port=port, **settings))
    await server.start()
    return Harness(server, h.http)


async def test_connect_subscribe_and_receive(harness: Harness) -> None:
    """The client connects, subscribes, and yields publications and notifications."""
    seen: list[str] = []
    async with Client(harness.ws_url, token("alice")) as c:
        c.on("*", lambda msg: seen.append(msg["type"]))
        assert c.connected
        assert c.welcome is not None
        assert c.welcome["userId"] == "alice"
        assert (await c.subscribe("news"))["channel"] == "news"
        status, _ = await harness.api(
            "POST", "/api/publish", {"channel": "news", "type": "headline", "data": {"n": 1}}
        )
        assert status == 200
        msg = await next_of(c, "headline")
        assert (msg["channel"], msg["data"]) == ("news", {"n": 1})
        nid = await notify(harness, "alice")
        note = await next_of(c, "notification")
        assert note["id"] == nid
        assert c.last_seq == 1
        with pytest.raises(ClientError) as err:
            await c.subscribe("user:bob")
        assert err.value.code == "FORBIDDEN"
        assert c.subscriptions == {"news": None}
        await c.unsubscribe("news")
        assert c.subscriptions == {}
    assert "subscribed" not in seen  # the client's own replies are consumed
    assert "headline" in seen
    assert c.close_code == 1000


async def test_async_callback_and_iteration_end(harness: Harness) -> None:
    """Async callbacks run; after close() the iterator ends and requests raise ClientClosed."""
    got = asyncio.Event()

    async def on_notification(msg: dict[str, Any]) -> None:
        got.set()

    c = Client(harness.ws_url, token("alice"))
    c.on("notification", on_notification)
    await c.connect()
    await notify(harness, "alice")
    async with asyncio.timeout(TIMEOUT):
        await got.wait()
    await c.close()
    async with asyncio.timeout(TIMEOUT):
        kinds = [msg["type"] async for msg in c]
    assert kinds[:2] == ["welcome", "_connected"]
    assert kinds[-1] == "_disconnected"
    with pytest.raises(ClientClosed):
        await c.subscribe("news")


async def test_reconnect_resubscribes_and_recovers(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """After a restart the client resubscribes and gets what was created while it was away."""
    store = str(tmp_path / "x.db")
    h = await make_server(store_url=store)
    tok = GatedToken()
    async with Client(h.ws_url, tok, **FAST) as c:
        await c.subscribe("news")
        first = await notify(h, "alice", "n1")
        assert (await next_of(c, "notification"))["id"] == first
        tok.gate.clear()  # hold the reconnection until the notifications exist
        h2 = await restart(h, store_url=store)
        try:
            gone = await next_of(c, "_disconnected")
            assert (gone["code"], gone["reconnect"]) == (1001, True)
            missed = [await notify(h2, "alice", f"n{i}") for i in (2, 3)]
            tok.gate.set()
            await next_of(c, "_connected")
            recovered = [await next_of(c, "notification") for _ in missed]
            assert [m["id"] for m in recovered] == missed
            assert [m["data"]["seq"] for m in recovered] == [2, 3]
            assert all(m["data"]["recovered"] for m in recovered)
            # lastSeq=1 was sent: the unread n1 was not sent again at all.
            assert c.duplicates == 0
            assert c.last_seq == 3
            assert tok.calls == 2
            # The resubscription is in effect once a later request has its reply.
            assert (await c.request({"type": "ping"}))["type"] == "pong"
            await h2.api("POST", "/api/publish", {"channel": "news", "type": "headline"})
            assert (await next_of(c, "headline"))["channel"] == "news"
        finally:
            await h2.server.stop()


async def test_offline_queue_flushes_in_order(make_server: ServerFactory) -> None:
    """Messages sent while offline are queued (bounded) and sent in order on reconnect."""
    h = await make_server()
    tok = GatedToken()
    async with Client(h.ws_url, tok, queue_limit=2, **FAST) as c:
        tok.gate.clear()
        h2 = await restart(h)
        try:
            await next_of(c, "_disconnected")
            assert not c.connected
            await c.send({"type": "ping", "id": "q1"})
            await c.send({"type": "ping", "id": "q2"})
            with pytest.raises(QueueFull):
                await c.send({"type": "ping", "id": "q3"})
            assert c.queued == 2
            tok.gate.set()
            await next_of(c, "_connected")
            assert c.queued == 0
            assert (await next_of(c, "pong"))["replyTo"] == "q1"
            assert (await next_of(c, "pong"))["replyTo"] == "q2"
            await c.send({"type": "ping", "id": "live"})  # online: sent at once
            assert (await next_of(c, "pong"))["replyTo"] == "live"
        finally:
            await h2.server.stop()


async def test_bad_token_is_terminal(harness: Harness) -> None:
    """A refused token (4002) fails connect() with ClientClosed, and nothing retries."""
    c = Client(harness.ws_url, "not-a-jwt", **FAST)
    with pytest.raises(ClientClosed) as err:
        await c.connect()
    assert err.value.code == 4002
    assert c.close_code == 4002
    with pytest.raises(ClientClosed):
        await c.send({"type": "ping"})


async def test_operator_disconnect_is_terminal(harness: Harness) -> None:
    """A 4010 close ends the iterator and fails requests; the token is never asked again."""
    tok = GatedToken()
    async with Client(harness.ws_url, tok, **FAST) as c:
        status, _ = await harness.api("POST", "/api/users/alice/disconnect", {"reason": "banned"})
        assert status == 200
        async with asyncio.timeout(TIMEOUT):
            events = [msg async for msg in c]
        last = events[-1]
        assert (last["type"], last["code"], last["reason"]) == ("_disconnected", 4010, "banned")
        assert last["reconnect"] is False
        with pytest.raises(ClientClosed) as err:
            await c.subscribe("news")
        assert (err.value.code, err.value.reason) == (4010, "banned")
        assert tok.calls == 1


async def test_reconnectable_close_refreshes_token_and_dedups(harness: Harness) -> None:
    """A 4000 close reconnects with a new token; a notification seen twice is yielded once."""
    tok = GatedToken()
    async with Client(harness.ws_url, tok, resume=False, **FAST) as c:
        assert c.welcome is not None
        first_expiry = c.welcome["expiresAt"]
        n1 = await notify(harness, "alice", "n1")
        assert (await next_of(c, "notification"))["id"] == n1
        status, _ = await harness.api(
            "POST", "/api/users/alice/disconnect", {"code": 4000, "reason": "try again"}
        )
        assert status == 200
        gone = await next_of(c, "_disconnected")
        assert (gone["code"], gone["reconnect"]) == (4000, True)
        await next_of(c, "_connected")
        assert tok.calls == 2
        assert c.welcome["expiresAt"] != first_expiry
        # Without lastSeq the catch-up sends the unread n1 again; the client drops it.
        # The catch-up runs beside the connection's messages (a pong may come first), so
        # wait for the duplicate itself: n2 is created once the catch-up is over.
        await wait_for(lambda: c.duplicates == 1)
        n2 = await notify(harness, "alice", "n2")
        assert (await next_of(c, "notification"))["id"] == n2
        assert c.duplicates == 1


async def test_ack_mode_and_mark_read(harness: Harness) -> None:
    """With ack=True each delivered notification is acknowledged; mark_read returns counts."""
    async with Client(harness.ws_url, token("bob"), ack=True) as c:
        nid = await notify(harness, "bob")
        assert (await next_of(c, "notification"))["id"] == nid
        inbox = harness.server.inbox
        assert inbox is not None
        async with asyncio.timeout(TIMEOUT):
            while True:
                stored = await inbox.store.get("bob", nid)
                assert stored is not None
                if stored.acked_at is not None:
                    break
        read = await c.mark_read(all=True)
        assert read == {"ids": [nid], "unreadCount": 0}
        assert await c.mark_read([nid]) == {"ids": [], "unreadCount": 0}


HISTORY = {"prices": NamespacePolicy(history_size=100, history_ttl=300)}


async def publish(h: Harness, channel: str, n: int) -> dict[str, Any]:
    """Publish ``{"n": n}`` through the HTTP API; its answer."""
    status, reply = await h.api(
        "POST", "/api/publish", {"channel": channel, "type": "price", "data": {"n": n}}
    )
    assert status == 200, reply
    assert isinstance(reply, dict)
    return reply


async def test_channel_recovery_after_reconnect(make_server: ServerFactory) -> None:
    """Publications missed while reconnecting are replayed once, from the last position."""
    h = await make_server(namespaces=HISTORY)
    tok = GatedToken()
    async with Client(h.ws_url, tok, **FAST) as c:
        first = await c.subscribe("prices:1")
        assert first["offset"] == 0
        await publish(h, "prices:1", 1)
        seen = await next_of(c, "price")
        assert (seen["data"], seen["offset"]) == ({"n": 1}, 1)
        epoch = seen["epoch"]
        assert c.positions == {"prices:1": (1, epoch)}
        tok.gate.clear()  # hold the reconnection until the publications exist
        status, _ = await h.api(
            "POST", "/api/users/alice/disconnect", {"code": 4000, "reason": "again"}
        )
        assert status == 200
        await next_of(c, "_disconnected")
        for n in (2, 3):
            await publish(h, "prices:1", n)
        tok.gate.set()
        again = await next_of(c, "_resubscribed")
        assert again["channel"] == "prices:1"
        assert (again["data"]["recovered"], again["data"]["offset"]) == (True, 3)
        missed = [await next_of(c, "price") for _ in range(2)]
        assert [(m["data"]["n"], m["offset"], m.get("recovered")) for m in missed] == [
            (2, 2, True),
            (3, 3, True),
        ]
        await publish(h, "prices:1", 4)
        live = await next_of(c, "price")
        assert (live["data"], live.get("recovered")) == ({"n": 4}, None)
        assert c.positions == {"prices:1": (4, epoch)}
        assert c.duplicates == 0
    # A position saved from that run resumes a new client where it stood.
    async with Client(h.ws_url, token("alice"), **FAST) as later:
        data = await later.subscribe("prices:1", since=(2, epoch))
        assert data["recovered"] is True
        replayed = [await next_of(later, "price") for _ in range(2)]
        assert [m["data"]["n"] for m in replayed] == [3, 4]


async def test_recovery_refused_after_restart(make_server: ServerFactory) -> None:
    """After a restart (a new epoch) the resubscription says recovered: false and goes on."""
    h = await make_server(namespaces=HISTORY)
    async with Client(h.ws_url, GatedToken(), **FAST) as c:
        await c.subscribe("prices:1")
        await publish(h, "prices:1", 1)
        old = await next_of(c, "price")
        h2 = await restart(h, namespaces=HISTORY)
        try:
            again = await next_of(c, "_resubscribed")
            assert again["data"]["recovered"] is False
            assert again["data"]["reason"] == "epoch"
            await publish(h2, "prices:1", 2)
            new = await next_of(c, "price")
            assert new["data"] == {"n": 2}
            assert new["epoch"] != old["epoch"]
            assert c.positions == {"prices:1": (new["offset"], new["epoch"])}
        finally:
            await h2.server.stop()


def test_recovery_positions_and_dedup() -> None:
    """Recovery tracks positions per channel, drops repeats, and never moves back."""
    r = Recovery()
    pub = {"type": "price", "channel": "p:1", "offset": 5, "epoch": "e"}
    assert r.publication(pub)
    assert not r.publication(pub)
    assert r.publication({**pub, "offset": 6})
    assert r.publication({**pub, "offset": 1, "epoch": "f"})  # a new epoch starts over
    assert r.positions == {"p:1": (1, "f")}
    r.subscribed("p:1", {"offset": 0, "epoch": "f"})
    assert r.since("p:1") == {"offset": 1, "epoch": "f"}
    r.subscribed("p:1", {"offset": 9, "epoch": "g", "recovered": False})
    assert r.since("p:1") == {"offset": 9, "epoch": "g"}
    assert r.publication({"type": "plain", "channel": "news"})  # no position: not tracked
    assert r.notification({"id": "n1", "data": {"seq": 4}})
    assert not r.notification({"id": "n1", "data": {"seq": 4}})
    assert (r.last_seq, r.duplicates) == (4, 2)
    r.forget("p:1")
    assert r.since("p:1") is None


def test_backoff_is_full_jitter_capped() -> None:
    """The delay is uniform up to initial * 2**attempt, capped at the maximum."""
    assert backoff_delay(0, 0.5, 30, lambda lo, hi: hi) == 0.5
    assert backoff_delay(3, 0.5, 30, lambda lo, hi: hi) == 4.0
    assert backoff_delay(10, 0.5, 30, lambda lo, hi: hi) == 30
    assert backoff_delay(10_000, 0.5, 30, lambda lo, hi: lo) == 0


async def test_a_published_notification_is_not_taken_for_the_inbox(harness: Harness) -> None:
    """A channel publication typed "notification" (say, with a huge seq) is a publication:
    it does not move last_seq, so the next real notification still arrives."""
    async with Client(harness.ws_url, token("alice")) as c:
        await c.subscribe("news")
        forged = {"channel": "news", "type": "notification", "data": {"seq": 10**9}}
        assert (await harness.api("POST", "/api/publish", forged))[0] == 200
        msg = await next_of(c, "notification")
        assert msg["channel"] == "news"
        assert c.last_seq is None  # no inbox notification yet
        nid = await notify(harness, "alice")
        assert (await next_of(c, "notification"))["id"] == nid
        assert c.last_seq == 1
