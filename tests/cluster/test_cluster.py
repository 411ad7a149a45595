"""Three tidings processes on one Redis act as one server (issue 4)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from ..api.test_events import operator_stream
from ..conftest import API_KEY, TIMEOUT, closed_with, recv, recv_type, request
from ..processes import Instance, PrivateRedis, cluster, pg_schema


async def _until(check: Any, timeout: float = TIMEOUT) -> Any:
    """Ask the server (``check()``, an API query) again until it answers something truthy.

    What changes is another process's state (a registry entry removed, a Redis link
    back), which no message announces: each answer is the event waited on.
    """
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            pass
        return result


@pytest.fixture
async def three(tmp_path: Path) -> Any:
    async with pg_schema() as store, cluster(3, tmp_path, store_url=store) as nodes:
        yield nodes


async def test_publish_through_any_instance_reaches_every_instance(three: list[Instance]) -> None:
    """A publish, user send, role send and broadcast through any instance reach all clients."""
    async with (
        three[0].client("alice", ("STAFF",)) as a,
        three[1].client("bob") as b,
        three[2].client("carol", ("STAFF",)) as c,
    ):
        for ws in (a, b, c):
            reply = await request(ws, {"type": "subscribe", "channel": "room1"})
            assert reply["type"] == "subscribed"
        for i, via in enumerate(three):
            status, body = await via.api(
                "POST", "/api/publish", {"channel": "room1", "type": "note", "data": {"i": i}}
            )
            assert status == 200, body
            assert body["delivered"] is None  # no instance knows the cluster's count
        for ws in (a, b, c):
            assert [(await recv(ws))["data"]["i"] for _ in range(3)] == [0, 1, 2]

        status, body = await three[1].api("POST", "/api/users/carol/send", {"type": "dm"})
        assert (status, body["delivered"]) == (200, 1)  # carol's connections, cluster-wide
        assert (await recv(c))["type"] == "dm"
        await three[2].api("POST", "/api/roles/STAFF/send", {"type": "staff"})
        assert (await recv(a))["type"] == "staff"
        assert (await recv(c))["type"] == "staff"
        await three[0].api(
            "POST", "/api/broadcast", {"type": "all", "data": {}, "excludeUserId": "bob"}
        )
        assert (await recv(a))["type"] == "all"
        assert (await recv(c))["type"] == "all"
        # bob got neither the role message nor the broadcast: his next message is this one.
        await three[0].api("POST", "/api/users/bob/send", {"type": "last"})
        assert (await recv(b))["type"] == "last"


async def test_notification_read_reaches_tabs_on_two_instances(three: list[Instance]) -> None:
    """A user with tabs on two instances gets the notification and notification_read on both."""
    async with three[0].client("dana") as tab1, three[1].client("dana") as tab2:
        status, body = await three[2].api(
            "POST", "/api/notifications", {"userId": "dana", "title": "Rent due"}
        )
        assert status == 201, body
        nid = body["notifications"][0]["id"]
        for tab in (tab1, tab2):
            msg = await recv_type(tab, "notification")
            assert msg["id"] == nid
        reply = await request(tab1, {"type": "mark_read", "data": {"notificationIds": [nid]}})
        assert reply["data"] == {"ids": [nid], "unreadCount": 0}
        told = await recv_type(tab2, "notification_read")
        assert told["data"] == {"ids": [nid], "unreadCount": 0}
        assert "replyTo" not in told


async def test_per_user_cap_holds_across_instances(tmp_path: Path) -> None:
    """max_connections_per_user counts the user's connections on every instance."""
    settings = {"TIDINGS_MAX_CONNECTIONS_PER_USER": "2"}
    async with (
        pg_schema() as store,
        cluster(3, tmp_path, store_url=store, settings=settings) as n,
        n[0].client("erin") as first,
        n[1].client("erin"),
    ):
        async with n[2].connect(_query("erin")) as third:
            assert await closed_with(third) == (4009, "too many connections for this user")
        await first.close()

        async def one_left() -> bool:
            _, body = await n[2].api("GET", "/api/users/erin/connections")
            return len(body["connections"]) == 1

        await _until(one_left)
        async with n[2].client("erin") as again:
            assert (await request(again, {"type": "ping"}))["type"] == "pong"


def _query(user: str, roles: tuple[str, ...] = (), extra: str = "") -> str:
    from ..conftest import token

    return f"?token={token(user, roles)}{extra}"


async def test_recovery_on_another_instance(three: list[Instance]) -> None:
    """A client that comes back on another instance gets exactly what it missed, marked
    recovered, then live publications; a position from another epoch is refused."""
    async with three[0].client("fred") as ws:
        reply = await request(ws, {"type": "subscribe", "channel": "news:1"})
        assert reply["data"]["offset"] == 0
        epoch = reply["data"]["epoch"]
        for i in (1, 2):
            body = {"channel": "news:1", "type": "n", "data": i}
            await three[0].api("POST", "/api/publish", body)
        seen = [await recv(ws) for _ in range(2)]
        assert [(m["offset"], m["epoch"], m["data"]) for m in seen] == [
            (1, epoch, 1),
            (2, epoch, 2),
        ]
    for i in (3, 4):
        status, body = await three[1].api(
            "POST", "/api/publish", {"channel": "news:1", "type": "n", "data": i}
        )
        assert (status, body["offset"], body["epoch"]) == (200, i, epoch)
    async with three[2].client("fred") as ws:
        since = {"offset": 2, "epoch": epoch}
        reply = await request(ws, {"type": "subscribe", "channel": "news:1", "since": since})
        assert reply["data"]["recovered"] is True
        assert (reply["data"]["offset"], reply["data"]["epoch"]) == (4, epoch)
        missed = [await recv(ws) for _ in range(2)]
        assert [(m["offset"], m["data"], m.get("recovered")) for m in missed] == [
            (3, 3, True),
            (4, 4, True),
        ]
        await three[0].api("POST", "/api/publish", {"channel": "news:1", "type": "n", "data": 5})
        live = await recv(ws)
        assert (live["offset"], live["data"], live.get("recovered")) == (5, 5, None)
        stale = {"offset": 2, "epoch": "not-this-one"}
        reply = await request(ws, {"type": "subscribe", "channel": "news:1", "since": stale})
        assert (reply["data"]["recovered"], reply["data"]["reason"]) == (False, "epoch")


async def test_cluster_stats_and_connection_control(three: list[Instance]) -> None:
    """stats?scope=cluster adds up every instance; list and disconnect reach every instance."""
    async with three[0].client("gail") as tab1, three[1].client("gail") as tab2:
        await request(tab1, {"type": "subscribe", "channel": "alerts"})
        await request(tab2, {"type": "subscribe", "channel": "alerts"})
        status, stats = await three[2].api("GET", "/api/stats?scope=cluster")
        assert status == 200
        assert (stats["totalConnections"], stats["totalUsers"]) == (2, 1)
        assert stats["channelCounts"] == {"alerts": 2}
        assert len(stats["instances"]) == 3
        _, listed = await three[2].api("GET", "/api/users/gail/connections")
        instances = {c["instance"] for c in listed["connections"]}
        assert len(listed["connections"]) == 2
        assert len(instances) == 2
        status, body = await three[2].api(
            "POST", "/api/users/gail/unsubscribe", {"channel": "alerts"}
        )
        assert body == {"unsubscribed": 2}
        for tab in (tab1, tab2):
            assert (await recv_type(tab, "unsubscribed"))["data"]["byServer"] is True
        status, body = await three[2].api(
            "POST", "/api/users/gail/disconnect", {"code": 4010, "reason": "password changed"}
        )
        assert (status, body) == (200, {"disconnected": 2})
        assert await closed_with(tab1) == (4010, "password changed")
        assert await closed_with(tab2) == (4010, "password changed")


async def test_killed_instance_clients_recover_elsewhere(three: list[Instance]) -> None:
    """SIGKILL an instance: its client reconnects to another and recovers channel
    publications and notifications; the dead instance leaves the cluster on its own."""
    _, health = await three[0].api("GET", "/health")
    dead = health["data"]["pubsub"]["instance"]
    async with three[0].client("hana") as ws:
        reply = await request(ws, {"type": "subscribe", "channel": "news:k"})
        epoch = reply["data"]["epoch"]
        three[0].kill()
        await closed_with_any(ws)
    status, _ = await three[1].api(
        "POST", "/api/publish", {"channel": "news:k", "type": "n", "data": "while away"}
    )
    assert status == 200
    status, made = await three[1].api(
        "POST", "/api/notifications", {"userId": "hana", "title": "while away"}
    )
    assert status == 201
    async with three[2].client("hana") as ws:
        # The welcome's catch-up brings the notification (unread) first.
        note = await recv_type(ws, "notification")
        assert note["id"] == made["notifications"][0]["id"]
        since = {"offset": 0, "epoch": epoch}
        reply = await request(ws, {"type": "subscribe", "channel": "news:k", "since": since})
        assert reply["data"]["recovered"] is True
        assert (await recv(ws))["data"] == "while away"

    # Its heartbeat key expires within 3 heartbeats (0.5 s each): check the TTL set, then
    # let the expiry happen now (that part is Redis's job, not ours).
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(three[1].redis_url)
    try:
        ttl_ms = await admin.pttl(f"{three[1].prefix}inst:{dead}")
        # -2: already expired (a slow machine took longer than its TTL to get here),
        # which is what the TTL is for; -1 (no TTL) or a long one would be a bug.
        assert ttl_ms == -2 or 0 < ttl_ms <= 1500
        await admin.delete(f"{three[1].prefix}inst:{dead}")
    finally:
        await admin.aclose()
    _, stats = await three[1].api("GET", "/api/stats?scope=cluster")
    assert len(stats["instances"]) == 2
    assert dead not in {i["instance"] for i in stats["instances"]}


async def closed_with_any(ws: Any) -> None:
    """Wait until the connection is gone, however it ended."""
    import websockets

    async with asyncio.timeout(TIMEOUT):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            return


async def test_sigterm_drains_and_clients_move_without_loss(three: list[Instance]) -> None:
    """SIGTERM closes with 1001; the client moves to another instance and recovers."""
    async with three[0].client("ivan") as ws:
        reply = await request(ws, {"type": "subscribe", "channel": "news:d"})
        epoch = reply["data"]["epoch"]
        three[0].proc.terminate()
        code, _ = await closed_with(ws)
        assert code == 1001
    await three[1].api("POST", "/api/publish", {"channel": "news:d", "type": "n", "data": 1})
    async with three[1].client("ivan") as ws:
        since = {"offset": 0, "epoch": epoch}
        reply = await request(ws, {"type": "subscribe", "channel": "news:d", "since": since})
        assert reply["data"]["recovered"] is True
        assert (await recv(ws))["data"] == 1
    assert await asyncio.wait_for(three[0].proc.wait(), TIMEOUT) == 0


async def test_redis_restart_in_the_middle_of_a_publish_stream(tmp_path: Path) -> None:
    """Redis stopped and started mid-stream: publishes answer 503 while it is down (never a
    false 200), /health reports it, instances reconnect and resubscribe, every accepted
    publication arrives, the lost stream is announced, and a notification stored during the
    outage is pushed once the link is back."""
    redis = PrivateRedis(tmp_path)
    await redis.start()
    try:
        async with (
            pg_schema() as store,
            cluster(2, tmp_path, store_url=store, redis_url=redis.url) as n,
            n[1].client("kim") as ws,
        ):
            await request(ws, {"type": "subscribe", "channel": "news:f"})
            accepted: list[int] = []
            refused = 0
            received: list[int] = []
            others: list[dict[str, Any]] = []

            async def publish(i: int) -> None:
                nonlocal refused
                body = {"channel": "news:f", "type": "n", "data": i}
                status, answer = await n[0].api("POST", "/api/publish", body)
                if status == 200:
                    accepted.append(i)
                else:
                    assert status == 503, answer
                    assert answer["error"]["code"] == "UNAVAILABLE"
                    refused += 1

            async def read_until_all_accepted() -> None:
                while not set(accepted) <= set(received):
                    msg = await recv(ws)
                    if msg["type"] == "n":
                        received.append(msg["data"])
                    else:
                        others.append(msg)

            for i in range(10):
                await publish(i)
            await read_until_all_accepted()
            await redis.stop()
            await _until(lambda: _pubsub_down(n[0]))
            for i in range(10, 15):
                await publish(i)
            status, made = await n[0].api(
                "POST", "/api/notifications", {"userId": "kim", "title": "during the outage"}
            )
            assert status == 201  # stored; pushed when the link is back
            await redis.start()
            for inst in n:
                await _until(lambda inst=inst: _pubsub_up(inst))
            for i in range(15, 25):
                await publish(i)
            await read_until_all_accepted()
            while {"notification", "subscribed"} - {m["type"] for m in others}:
                others.append(await recv(ws))
            [note] = [m for m in others if m["type"] == "notification"]
            assert note["id"] == made["notifications"][0]["id"]
            # Redis lost the stream (it keeps nothing on disk): subscribers are told.
            [reset] = [m for m in others if m["type"] == "subscribed"]
            assert (reset["data"]["recovered"], reset["data"]["reason"]) == (False, "epoch")
            # 503 for every publish while Redis was down (and possibly the first one after,
            # on a pooled connection from before: never retried, as it could repeat).
            assert refused >= 5
            assert set(range(10, 15)).isdisjoint(accepted)
            assert set(range(10)) <= set(accepted)
            assert len(accepted) >= 19
            assert received == sorted(received)
    finally:
        await redis.stop()


async def _pubsub_down(inst: Instance) -> bool:
    _, body = await inst.api("GET", "/health")
    return body["data"]["pubsub"]["isHealthy"] is False


async def _pubsub_up(inst: Instance) -> bool:
    _, body = await inst.api("GET", "/health")
    return body["data"]["pubsub"]["isHealthy"] is True


async def test_one_clients_publications_keep_their_order(three: list[Instance]) -> None:
    """A client publishing fast over the WebSocket: another instance's subscriber gets its
    publications in the order sent, with consecutive offsets, and each publish is answered."""
    async with three[0].client("olga") as pub, three[1].client("pete") as sub:
        await request(sub, {"type": "subscribe", "channel": "news:order"})
        for i in range(60):
            await pub.send(
                f'{{"type": "publish", "channel": "news:order", "data": {i}, "id": "p{i}"}}'
            )
        got = [await recv(sub) for _ in range(60)]
        assert [m["data"] for m in got] == list(range(60))
        assert [m["offset"] for m in got] == list(range(1, 61))
        replies = [await recv_type(pub, "published") for _ in range(60)]
        assert [r["replyTo"] for r in replies] == [f"p{i}" for i in range(60)]


async def test_cap_holds_under_a_connection_burst(three: list[Instance]) -> None:
    """120 connections of one user at once over three instances: exactly the cap (5) get in,
    the rest are closed 4009 (the registry waits for a Redis connection, never fails open)."""
    import websockets

    from ..conftest import token

    async def attempt(i: int) -> int:
        url = f"{three[i % 3].ws_url}?token={token('burst')}"
        async with websockets.connect(url, open_timeout=TIMEOUT * 3) as ws:
            first = await recv(ws, TIMEOUT * 3)
            if first["type"] == "welcome":
                await ready.wait()  # hold the slot until every attempt has its answer
                return 0
            raise AssertionError(first)

    ready = asyncio.Event()
    results: list[int] = []

    async def one(i: int) -> None:
        try:
            results.append(await attempt(i))
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None
            results.append(exc.rcvd.code)
        if len(results) == 120 - 5:
            ready.set()

    tasks = [asyncio.create_task(one(i)) for i in range(120)]
    async with asyncio.timeout(TIMEOUT * 6):
        await ready.wait()
    await asyncio.gather(*tasks)
    assert sorted(results).count(4009) == 115
    assert results.count(0) == 5


async def test_the_event_log_over_the_cluster(three: list[Instance]) -> None:
    """An operator on one instance follows connects and disconnects (with close codes) on
    every instance with scope=cluster; the page gathers every instance's log, and each
    listed connection names its transport."""
    async with (
        operator_stream(three[2], "?scope=cluster") as log,
        three[0].client("hana") as a,
        three[1].client("hana") as b,
    ):
        ids = [(await request(ws, {"type": "get_status"}))["data"]["clientId"] for ws in (a, b)]
        opened: dict[str, Any] = {}
        while len(opened) < 2:  # the two instances' events come in either order
            kind, _, event = await log.next()
            if kind == "connect" and event["clientId"] in ids:
                opened[event["clientId"]] = event
        assert len({e["instance"] for e in opened.values()}) == 2
        _, listed = await three[2].api("GET", "/api/users/hana/connections")
        assert {c["transport"] for c in listed["connections"]} == {"websocket"}
        status, _ = await three[2].api(
            "POST", "/api/users/hana/disconnect", {"clientId": ids[1], "code": 4010}
        )
        assert status == 200
        assert (await closed_with(b))[0] == 4010
        assert (await log.until("disconnect", ids[1]))["code"] == 4010

    async def hana_events() -> list[tuple[str, int | None]]:
        status, page = await three[2].api("GET", "/api/events?scope=cluster")
        assert status == 200, page
        assert len(page["positions"]) == 3
        events = [(e["event"], e["code"]) for e in page["events"] if e["userId"] == "hana"]
        return events if len(events) == 4 else []  # a's close may still be on its way

    mine = await _until(hana_events)
    assert sorted(mine, key=str) == sorted(
        [("connect", None), ("connect", None), ("disconnect", 4010), ("disconnect", 1000)],
        key=str,
    )


async def test_no_2xx_in_the_restart_window_until_every_link_is_back(tmp_path: Path) -> None:
    """Redis restarted while publishes stream in and one instance cannot resubscribe yet
    (frozen): the publishing instance's own link is back, yet it answers 503 with
    Retry-After until the frozen one has resubscribed; every 200 reaches the subscribers on
    every instance, in order."""
    redis = PrivateRedis(tmp_path)
    await redis.start()
    # A 4 s heartbeat: after Redis lost the membership, the others keep counting the
    # frozen instance for three (12 s), longer than the test keeps it frozen even on a
    # loaded machine (past that it would count as gone, as a killed one does).
    settings = {"TIDINGS_CLUSTER_HEARTBEAT": "4"}
    try:
        async with (
            pg_schema() as store,
            cluster(3, tmp_path, store_url=store, redis_url=redis.url, settings=settings) as n,
            n[0].client("ann") as w0,
            n[1].client("bob") as w1,
            n[2].client("cal") as w2,
            contextlib.AsyncExitStack() as stack,
        ):
            subscribers = (w0, w1, w2)
            for ws in subscribers:
                await request(ws, {"type": "subscribe", "channel": "plain"})
            accepted: list[int] = []
            answers: list[int] = []
            thawed, back = asyncio.Event(), asyncio.Event()

            async def publish(i: int) -> tuple[int, Any, Any]:
                body = {"channel": "plain", "type": "n", "data": i}
                async with n[0].http.post(
                    n[0].url + "/api/publish",
                    json=body,
                    headers={"Authorization": f"Bearer {API_KEY}"},
                ) as r:
                    status, answer, headers = r.status, await r.json(), r.headers
                answers.append(status)
                if status == 200:
                    accepted.append(i)
                    if thawed.is_set():
                        back.set()
                else:
                    assert status == 503, answer
                    assert answer["error"]["code"] == "UNAVAILABLE"
                    assert headers["Retry-After"]
                return status, answer, headers

            stop = asyncio.Event()

            async def stream() -> None:
                i = 0
                while not stop.is_set() and i < 20_000:
                    await publish(i)
                    i += 1

            for inst in n:
                await _until(lambda inst=inst: _members(inst, 3))
            for i in range(-5, 0):
                assert (await publish(i))[0] == 200
            n[1].freeze()
            try:
                # The stream starts once Redis is back: a Redis killed just after it
                # answered a PUBLISH may never have written it to the subscribers (its
                # pub/sub is at most once); the window under test is the restart's.
                await redis.stop()
                await _until(lambda: _pubsub_down(n[0]))
                await redis.start()
                streaming = asyncio.create_task(stream())
                stack.callback(streaming.cancel)
                await _until(lambda: _pubsub_up(n[0]))
                await _until(lambda: _pubsub_up(n[2]))
                # Both links up, the frozen instance's not: still refused.
                status, answer, _ = await publish(-100)
                assert status == 503, answer
            finally:
                n[1].thaw()
                thawed.set()
            await _until(lambda: _pubsub_up(n[1]))
            # Accepted again once every link is back (the stream keeps going meanwhile).
            async with asyncio.timeout(TIMEOUT):
                await back.wait()
            stop.set()
            await streaming
            assert accepted
            assert 503 in answers
            for ws in subscribers:
                got: list[int] = []
                while not set(accepted) <= set(got):
                    msg = await recv(ws)
                    if msg["type"] == "n":
                        got.append(msg["data"])
                assert got == sorted(got)
    finally:
        await redis.stop()


async def _members(inst: Instance, count: int) -> bool:
    _, body = await inst.api("GET", "/health")
    return body["data"]["pubsub"]["instances"] == count
