"""The Server-Sent Events fallback against a real server, read by a real HTTP client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tidings.auth import mint
from tidings.gateway.eventstream import EventOutbox, client_frames, last_event_id

from ..conftest import (
    SECRET,
    TIMEOUT,
    Harness,
    ServerFactory,
    closed_with,
    flood_until_dropped,
    recv,
    token,
)
from ..processes import cluster, pg_schema

NO_TIMEOUT = aiohttp.ClientTimeout(total=None)


class EventStream:
    """Parses ``text/event-stream`` from an aiohttp response, one event at a time."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None
        self.comments: list[str] = []

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next event's JSON (its id is kept in ``last_id``); EOFError at the end."""
        event_id: str | None = None
        data: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\n")
                if not line:
                    if data:
                        self.last_id = event_id
                        msg = json.loads("\n".join(data))
                        assert isinstance(msg, dict)
                        return msg
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    event_id = value
                elif name == "data":
                    data.append(value)
                else:
                    raise AssertionError(f"unexpected field {line!r}")

    async def comment(self) -> str:
        """Read raw lines until a comment line; its text."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                line = (await self.response.content.readline()).decode()
                if not line:
                    raise EOFError("the stream ended")
                if line.startswith(":"):
                    return line[1:].strip()

    async def until(self, kind: str) -> dict[str, Any]:
        """Skip events until one of type ``kind``."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                msg = await self.next()
                if msg["type"] == kind:
                    return msg

    async def close_event(self) -> tuple[int, str]:
        """Read to the ``close`` event, check that the stream then ends; its code, reason."""
        msg = await self.until("close")
        try:
            extra = await self.next()
        except EOFError:
            return msg["data"]["code"], msg["data"]["reason"]
        raise AssertionError(f"an event after close: {extra}")


@asynccontextmanager
async def stream(
    h: Harness, query: str = "", headers: dict[str, str] | None = None
) -> AsyncIterator[EventStream]:
    """``GET /sse``: an open event stream (status 200 checked)."""
    async with h.http.get(
        f"{h.url}/sse{query}", headers=headers or {}, timeout=NO_TIMEOUT
    ) as response:
        assert response.status == 200, await response.text()
        yield EventStream(response)


@asynccontextmanager
async def welcomed(
    h: Harness, user: str = "alice", query: str = ""
) -> AsyncIterator[tuple[EventStream, str]]:
    """A stream welcomed as ``user``; yields it and its clientId."""
    async with stream(h, f"?token={token(user)}{query}") as events:
        welcome = await events.next()
        assert welcome["type"] == "welcome", welcome
        yield events, welcome["data"]["clientId"]


async def post(
    h: Harness, client_id: str, body: Any, *, tok: str | None = None, raw: bytes | None = None
) -> tuple[int, Any]:
    """``POST /sse/{clientId}`` with a Bearer token; the status and the JSON answer."""
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {tok or token('alice')}"}
    async with h.http.post(f"{h.url}/sse/{client_id}", data=data, headers=headers) as r:
        return r.status, await r.json()


def test_outbox_numbers_queues_and_replays() -> None:
    """Events are numbered; a replay gives exactly those after n, or refuses a gap."""
    box = EventOutbox("c-1", keep=60)
    box.append(b'{"a":1}')
    box.append(b'{"a":2}')
    assert box.take() == b'id: c-1.1\ndata: {"a":1}\n\nid: c-1.2\ndata: {"a":2}\n\n'
    assert (box.take(), box.unsent) == (b"", 0)
    assert box.replay_from(1)
    assert box.take() == b'id: c-1.2\ndata: {"a":2}\n\n'
    assert box.replay_from(2)
    assert box.take() == b""
    assert not box.replay_from(3)  # beyond the last event
    for n in range(3, 6):
        box.append(b'{"a":%d}' % n)
    box.take()
    assert len(box.recent) == 2  # the oldest were dropped past keep bytes
    assert not box.replay_from(1)  # events 2 and 3 are gone: no partial replay
    assert box.replay_from(3)
    assert box.take().count(b"id: ") == 2


def test_last_event_id_and_post_bodies() -> None:
    """Last-Event-ID values and POST bodies are read strictly; the rest goes to the session."""
    assert last_event_id("client_ab-1f.12") == ("client_ab-1f", 12)
    for bad in ("", "12", "x.", ".3", "x.-1", "x.1e3", "x." + "9" * 19):
        assert last_event_id(bad) is None
    assert client_frames(b'{"type":"ping"}') == [b'{"type":"ping"}']
    assert client_frames(b' [{"type":"ping"}, 1]') == [b'{"type":"ping"}', b"1"]
    assert client_frames(b"[1, {") == [b"[1, {"]
    assert client_frames(b"[]") == []


async def publish(h: Harness, channel: str, n: int) -> None:
    status, _ = await h.api(
        "POST", "/api/publish", {"channel": channel, "type": "tick", "data": {"n": n}}
    )
    assert status == 200


async def test_welcome_first_then_messages_over_post(harness: Harness) -> None:
    """The welcome is event 1; POSTed subscribe and pings are answered on the stream."""
    h = harness
    async with stream(h, f"?token={token('alice')}") as events:
        headers = events.response.headers
        assert headers["Content-Type"] == "text/event-stream"
        assert headers["Cache-Control"] == "no-cache"
        assert headers["X-Accel-Buffering"] == "no"
        welcome = await events.next()
        assert welcome["type"] == "welcome"
        cid = welcome["data"]["clientId"]
        assert welcome["data"]["userId"] == "alice"
        assert events.last_id == f"{cid}.1"
        assert await post(h, cid, {"type": "subscribe", "channel": "news", "id": "s1"}) == (
            202,
            {"accepted": 1},
        )
        reply = await events.next()
        assert (reply["type"], reply["replyTo"]) == ("subscribed", "s1")
        assert events.last_id == f"{cid}.2"
        await publish(h, "news", 7)
        tick = await events.next()
        assert (tick["type"], tick["channel"], tick["data"]) == ("tick", "news", {"n": 7})
        pings = [{"type": "ping", "id": "p1"}, {"type": "PING", "id": "p2"}]
        assert await post(h, cid, pings) == (202, {"accepted": 2})
        assert [(m["type"], m["replyTo"]) for m in (await events.next(), await events.next())] == [
            ("pong", "p1"),
            ("PONG", "p2"),
        ]
        assert events.last_id == f"{cid}.5"
        status, stats = await h.api("GET", "/api/stats")
        assert status == 200
        assert stats["totalConnections"] == 1
        assert stats["channelCounts"] == {"news": 1}


async def test_notifications_and_catch_up(harness: Harness) -> None:
    """Unread notifications are caught up after the welcome; new ones arrive live."""
    h = harness
    status, _ = await h.api("POST", "/api/notifications", {"userId": "alice", "title": "old"})
    assert status == 201
    async with welcomed(h) as (events, _):
        old = await events.next()
        assert (old["type"], old["data"]["title"]) == ("notification", "old")
        status, _ = await h.api("POST", "/api/notifications", {"userId": "alice", "title": "new"})
        assert status == 201
        new = await events.next()
        assert (new["type"], new["data"]["title"]) == ("notification", "new")
        assert new["data"]["seq"] == old["data"]["seq"] + 1


async def test_resume_replays_exactly_what_was_missed(harness: Harness) -> None:
    """A reconnect with Last-Event-ID gets the missed events, no welcome, same session."""
    h = harness
    async with welcomed(h) as (events, cid):
        await post(h, cid, {"type": "subscribe", "channel": "news", "id": "s"})
        await events.until("subscribed")
        await publish(h, "news", 1)
        assert (await events.next())["data"] == {"n": 1}
        seen = events.last_id
        assert seen == f"{cid}.3"
    # The stream is gone; the session keeps its subscription and buffers what comes.
    for n in (2, 3, 4):
        await publish(h, "news", n)
    async with stream(h, f"?token={token('alice')}", {"Last-Event-ID": seen}) as events:
        missed = [await events.next() for _ in range(3)]
        assert [m["data"] for m in missed] == [{"n": 2}, {"n": 3}, {"n": 4}]
        assert events.last_id == f"{cid}.6"
        assert await post(h, cid, {"type": "ping", "id": "after"}) == (202, {"accepted": 1})
        pong = await events.next()
        assert (pong["type"], events.last_id) == ("pong", f"{cid}.7")
    # A Last-Event-ID naming no live session starts a new one, with a welcome.
    async with stream(
        h, f"?token={token('alice')}", {"Last-Event-ID": "client_nope-1.3"}
    ) as events:
        welcome = await events.next()
        assert welcome["type"] == "welcome"
        assert welcome["data"]["clientId"] != cid


async def test_resume_by_another_user_starts_a_new_session(harness: Harness) -> None:
    """Last-Event-ID of alice's session with bob's token gives bob a new session."""
    h = harness
    async with welcomed(h, "alice") as (events, cid):
        seen = events.last_id
        assert seen is not None
        async with stream(h, f"?token={token('bob')}", {"Last-Event-ID": seen}) as bob:
            welcome = await bob.next()
            assert (welcome["type"], welcome["data"]["userId"]) == ("welcome", "bob")
        await post(h, cid, {"type": "ping", "id": "still"})
        assert (await events.next())["replyTo"] == "still"


async def test_post_errors(make_server: ServerFactory) -> None:
    """Unknown session 404, another user's token 403, oversized 413, bad token 401."""
    h = await make_server(max_message_bytes=1024)
    async with welcomed(h) as (events, cid):
        status, body = await post(h, "client_nope-1", {"type": "ping"})
        assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
        status, body = await post(h, cid, {"type": "ping"}, tok=token("bob"))
        assert (status, body["error"]["code"]) == (403, "FORBIDDEN")
        big = {"type": "ping", "pad": "x" * 2000}
        status, body = await post(h, cid, big)
        assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
        status, body = await post(h, cid, {"type": "ping"}, tok="not-a-jwt")
        assert (status, body["error"]["code"]) == (401, "UNAUTHORIZED")
        # None of it reached the session, which still answers.
        assert await post(h, cid, {"type": "ping", "id": "ok"}) == (202, {"accepted": 1})
        assert (await events.next())["replyTo"] == "ok"


async def test_bad_token_on_stream_is_401(harness: Harness) -> None:
    """A bad or missing token gets HTTP 401 with the API's JSON error and no stream."""
    for query in ("?token=garbage", ""):
        async with harness.http.get(f"{harness.url}/sse{query}") as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "UNAUTHORIZED"
    async with harness.http.head(f"{harness.url}/sse?token={token()}") as r:
        assert r.status == 405
    assert harness.server.node.hub.connection_count() == 0


async def test_malformed_json_gets_error_event(harness: Harness) -> None:
    """Malformed JSON is answered by an error event and the stream keeps working."""
    h = harness
    async with welcomed(h) as (events, cid):
        assert await post(h, cid, None, raw=b"{nope") == (202, {"accepted": 1})
        error = await events.next()
        assert (error["type"], error["data"]["code"]) == ("error", "INVALID_MESSAGE")
        assert await post(h, cid, None, raw=b"[1, {") == (202, {"accepted": 1})
        assert (await events.next())["data"]["code"] == "INVALID_MESSAGE"
        await post(h, cid, {"type": "ping", "id": "alive"})
        assert (await events.next())["replyTo"] == "alive"


async def test_token_expiry_ends_stream_with_close_event(make_server: ServerFactory) -> None:
    """A token that expires ends the stream with a 4005 close event; the session is gone."""
    h = await make_server(jwt_leeway=0)
    short = mint(SECRET, "alice", ttl=1, now=time.time())
    async with stream(h, f"?token={short}") as events:
        welcome = await events.next()
        cid = welcome["data"]["clientId"]
        assert await events.close_event() == (4005, "token expired")
    status, _ = await post(h, cid, {"type": "ping"})
    assert status == 404


async def test_slow_consumer_closed_others_unaffected(make_server: ServerFactory) -> None:
    """A stream that stops reading is ended 4008 while a reading WebSocket gets everything."""
    h = await make_server(outbox_max_bytes=256 * 1024)
    async with h.client("fast") as fast, welcomed(h, "slow") as (slow, cid):
        await fast.send(json.dumps({"type": "subscribe", "channel": "feed", "id": "f"}))
        assert (await recv(fast))["type"] == "subscribed"
        status, _ = await post(h, cid, {"type": "subscribe", "channel": "feed"}, tok=token("slow"))
        assert status == 202
        sent = await flood_until_dropped(h, fast, "feed")
        await publish(h, "feed", sent)
        assert (await recv(fast))["data"]["n"] == sent
        assert await slow.close_event() == (4008, "slow consumer")
        status, _ = await post(h, cid, {"type": "ping"}, tok=token("slow"))
        assert status == 404


async def test_caps_are_shared_with_websockets(make_server: ServerFactory) -> None:
    """SSE streams count into the per-user and per-instance caps with WebSockets."""
    h = await make_server(max_connections_per_user=1, max_connections=2)
    async with h.client("alice"):
        async with stream(h, f"?token={token('alice')}") as events:
            assert await events.close_event() == (4009, "too many connections for this user")
        async with welcomed(h, "bob"), h.connect(f"?token={token('carol')}") as third:
            assert (await closed_with(third))[0] == 4009


async def test_flood_is_closed_4029(make_server: ServerFactory) -> None:
    """A POSTed flood gets RATE_LIMIT errors and then a 4029 close event."""
    h = await make_server(rate_limit_per_second=1, rate_limit_burst=2, rate_limit_close_after=2)
    async with welcomed(h) as (events, cid):
        status, body = await post(h, cid, [{"type": "ping"}] * 20)
        assert status == 202
        assert body["accepted"] < 20
        kinds = []
        while (msg := await events.next())["type"] != "close":
            kinds.append(msg["type"])
        assert msg["data"]["code"] == 4029
        assert "error" in kinds


async def test_operator_disconnect_and_shutdown(make_server: ServerFactory) -> None:
    """The control API ends a stream with its code; a graceful stop ends one with 1001."""
    h = await make_server()
    async with welcomed(h, "bob") as (events, _):
        status, body = await h.api("POST", "/api/users/bob/disconnect", {"reason": "banned"})
        assert (status, body) == (200, {"disconnected": 1})
        assert await events.close_event() == (4010, "banned")
    async with welcomed(h) as (events, _):
        await h.server.stop()
        assert await events.close_event() == (1001, "server shutting down")


async def test_cors_preflight_and_origin_allowlist(make_server: ServerFactory) -> None:
    """An allowed origin gets CORS headers; one not allowed gets a 4006 close event."""
    h = await make_server(allowed_origins=["https://app.example"])
    headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    async with h.http.options(f"{h.url}/sse/abc", headers=headers) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Last-Event-ID" in r.headers["Access-Control-Allow-Headers"]
    async with stream(h, f"?token={token()}", {"Origin": "https://app.example"}) as events:
        assert events.response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert (await events.next())["type"] == "welcome"
    async with stream(h, f"?token={token()}", {"Origin": "https://evil.example"}) as events:
        assert "Access-Control-Allow-Origin" not in events.response.headers
        assert await events.close_event() == (4006, "origin not allowed")


async def test_header_token_and_query_resume(harness: Harness) -> None:
    """A Bearer header opens a stream, ?token= posts, and ?lastEventId= resumes like the header."""
    h = harness
    tok = token("alice")
    async with stream(h, headers={"Authorization": f"Bearer {tok}"}) as events:
        cid = (await events.next())["data"]["clientId"]
        seen = events.last_id
    async with h.http.post(
        f"{h.url}/sse/{cid}?token={tok}", data=json.dumps({"type": "ping", "id": "q"})
    ) as r:
        assert r.status == 202
    async with stream(h, f"?token={tok}&lastEventId={seen}") as events:
        pong = await events.next()
        assert (pong["type"], pong["replyTo"], events.last_id) == ("pong", "q", f"{cid}.2")


async def test_heartbeat_comment_keeps_idle_stream_open(make_server: ServerFactory) -> None:
    """An idle stream gets ': ping' comments every heartbeat_interval, and stays usable."""
    h = await make_server(heartbeat_interval=0.05)
    async with welcomed(h) as (events, cid):
        assert await events.comment() == "ping"
        assert await events.comment() == "ping"
        await post(h, cid, {"type": "ping", "id": "after"})
        assert (await events.next())["replyTo"] == "after"


async def test_post_reaching_another_instance_is_forwarded(tmp_path: Path) -> None:
    """Behind a proxy without sticky sessions, a POST to another instance still arrives."""
    async with (
        pg_schema() as store,
        cluster(2, tmp_path, store_url=store) as (one, two),
        welcomed(one) as (events, cid),
    ):
        assert await post(two, cid, {"type": "ping", "id": "via-two"}) == (202, {"accepted": 1})
        assert (await events.next())["replyTo"] == "via-two"
        status, _ = await post(two, "client_nope-1", {"type": "ping"})
        assert status == 404
        status, _ = await post(two, cid, {"type": "ping"}, tok=token("bob"))
        assert status == 404  # bob holds no session of that id anywhere
