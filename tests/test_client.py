"""The Python client (tidings.client) against real servers: events, reconnects, recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client, ClientClosed, ClientError, QueueFull
from tidings.server import Server

from .conftest import TIMEOUT, Harness, ServerFactory, make_settings, token

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
        # (A pong comes after the catch-up, so n2 is created once it is over.)
        assert (await c.request({"type": "ping"}))["type"] == "pong"
        assert c.duplicates == 1
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
