"""The Python server SDK (clients/python): its pure parts, then both clients against a real
server, with connections dropped, held and refused by a proxy in between."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tidings_sdk import (
    AsyncClient,
    AsyncUserClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Retry,
    ServerError,
    TransportError,
    Unauthorized,
    Unavailable,
    UserClient,
    ValidationError,
    notification_body,
)
from tidings_sdk.errors import APIError, error_for
from tidings_sdk.payload import priority

from .conftest import API_KEY, TIMEOUT, Harness, ServerFactory, recv, recv_type, request, token
from .proxy import proxy

GUIDE_003 = {
    "message": "Your case status has been updated",
    "type": "info",
    "case_id": "12345",
    "status": "in_review",
    "priority": "high",
    "category": "immigration",
}

# --- pure -------------------------------------------------------------------------------------


def test_guide_003_payload_maps_known_fields_and_keeps_the_rest_in_data() -> None:
    """Guide 003's dict: message, type, priority (upper-cased), category mapped; rest in data."""
    assert notification_body(GUIDE_003) == {
        "message": "Your case status has been updated",
        "type": "info",
        "priority": "HIGH",
        "category": "immigration",
        "data": {"case_id": "12345", "status": "in_review"},
    }


@pytest.mark.parametrize(
    ("payload", "body"),
    [
        ({"message": "m", "type": "success"}, {"message": "m", "type": "success"}),
        ({"data": {"a": 1}, "b": 2}, {"data": {"a": 1, "b": 2}}),
        ({"data": [1, 2]}, {"data": [1, 2]}),
        (
            {"title": "t", "expires_at": "2030-01-01T00:00:00Z"},
            {"title": "t", "expiresAt": "2030-01-01T00:00:00Z"},
        ),
        (
            {"expiresAt": datetime(2030, 1, 1, 12, tzinfo=UTC)},
            {"expiresAt": "2030-01-01T12:00:00Z"},
        ),
        ({"priority": "Urgent"}, {"priority": "CRITICAL"}),
        ({"priority": "normal"}, {"priority": "MEDIUM"}),
    ],
    ids=["plain", "data-merged", "data-list", "snake-expiry", "datetime", "urgent", "normal"],
)
def test_payload_mapping(payload: dict[str, Any], body: dict[str, Any]) -> None:
    """Each accepted spelling maps to the server's field."""
    assert notification_body(payload) == body


@pytest.mark.parametrize(
    "payload",
    [
        {"priority": "highest"},
        {"priority": 3},
        {"userId": "bob"},
        {"data": {"a": 1}, "a": 2},
        {"data": "text", "extra": 1},
        {"expiresAt": "x", "expires_at": "y"},
    ],
    ids=["priority", "priority-type", "target", "clash", "data-not-mapping", "twice"],
)
def test_payload_refusals(payload: dict[str, Any]) -> None:
    """What cannot be mapped without guessing is a ValueError before any request."""
    with pytest.raises(ValueError):
        notification_body(payload)


def test_priority_spellings() -> None:
    """Any case of the four levels is accepted."""
    assert [priority(p) for p in ("low", "Medium", " HIGH ", "critical")] == [
        "LOW",
        "MEDIUM",
        "HIGH",
        "CRITICAL",
    ]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (422, ValidationError),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, Unavailable),
        (418, APIError),
    ],
)
def test_error_classes_by_status(status: int, cls: type[APIError]) -> None:
    """Each documented status has its class; the server's code and message are kept."""
    err = error_for(status, b'{"error": {"code": "X", "message": "why"}}', "1")
    assert type(err) is cls
    assert (err.status, err.code, err.message, err.retry_after) == (status, "X", "why", 1.0)


def test_error_from_a_body_that_is_not_the_servers() -> None:
    """A proxy's HTML error page still gives a typed error, with the text as message."""
    err = error_for(502, b"<html>Bad Gateway</html>")
    assert isinstance(err, ServerError)
    assert (err.code, err.message, err.retry_after) == (None, "<html>Bad Gateway</html>", None)


@pytest.mark.parametrize(
    ("attempt", "repeatable", "maybe_sent", "retry_after", "expected"),
    [
        (0, False, False, None, 0.125),  # never sent: any call, half of the 0.25 s ceiling
        (2, False, False, None, 0.5),  # the ceiling doubles per retry
        (0, False, True, None, None),  # maybe sent: a publish is not repeated
        (0, True, True, None, 0.125),  # maybe sent: a repeatable call is
        (0, False, False, 1.0, 1.0),  # the server's Retry-After wins
        (0, False, False, 5.0, 5.0),  # ...up to max_backoff
        (0, False, False, 60.0, None),  # longer: raised at once, never retried too soon
        (3, True, False, None, None),  # out of attempts
    ],
)
def test_retry_policy(
    attempt: int, repeatable: bool, maybe_sent: bool, retry_after: float | None, expected: Any
) -> None:
    """Retry only what cannot be done twice, with jittered exponential backoff."""
    delay = Retry().delay(
        attempt, repeatable=repeatable, maybe_sent=maybe_sent, retry_after=retry_after, rand=0.5
    )
    assert delay == expected


@pytest.mark.parametrize(("sync", "aio"), [(Client, AsyncClient), (UserClient, AsyncUserClient)])
def test_sync_and_async_clients_have_the_same_methods(sync: type, aio: type) -> None:
    """Every public method exists in both clients with the same parameters."""

    def methods(cls: type) -> dict[str, list[tuple[str, Any]]]:
        return {
            name: [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]
            for name, fn in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name not in ("close", "aclose")
        }

    assert methods(sync) == methods(aio)
    assert len(methods(sync)) >= 18


# --- against a real server ---------------------------------------------------------------------


async def test_async_client_sends_and_publishes(harness: Harness) -> None:
    """publish, send to a user and a role, broadcast: each reaches the right connection."""
    async with (
        AsyncClient(harness.url, API_KEY) as tidings,
        harness.client("lib", ("LIBRARIAN",)) as lib,
    ):
        await request(lib, {"type": "subscribe", "channel": "news"})
        sent = await tidings.publish("news", {"n": 1}, type="headline")
        assert (sent["channel"], sent["delivered"]) == ("news", 1)
        msg = await recv(lib)
        assert (msg["type"], msg["id"], msg["data"]) == ("headline", sent["id"], {"n": 1})
        assert (await tidings.send_to_user("lib", {"n": 2}))["delivered"] == 1
        assert (await recv(lib))["data"] == {"n": 2}
        assert (await tidings.send_to_role("LIBRARIAN", {"n": 3}, type="staff"))["delivered"] == 1
        assert (await recv(lib))["type"] == "staff"
        assert (await tidings.broadcast({"n": 4}, exclude_user_id="lib"))["delivered"] == 0
        assert (await tidings.broadcast({"n": 5}))["delivered"] == 1
        assert (await recv(lib))["data"] == {"n": 5}
        stats = await tidings.stats()
        assert (stats["totalConnections"], stats["channelCounts"]) == (1, {"news": 1})
        assert (await tidings.stats(cluster=True))["totalConnections"] == 1
        assert (await tidings.health())["success"] is True


async def test_async_client_inbox_round_trip(harness: Harness) -> None:
    """Create, list, page, get, read, archive, delete and preferences, as documented."""
    async with AsyncClient(harness.url, API_KEY) as tidings, harness.client("uma") as ws:
        first = await tidings.send_notification("uma", GUIDE_003)
        assert (first["replayed"], len(first["notifications"])) == (False, 1)
        pushed = await recv_type(ws, "notification")
        assert pushed["data"]["data"] == {"case_id": "12345", "status": "in_review"}
        assert (pushed["data"]["priority"], pushed["data"]["type"]) == ("HIGH", "info")
        second = await tidings.create_notification(
            user_ids=["uma", "vic"],
            title="Payment due",
            priority="low",
            actions=[{"id": "pay", "label": "Pay", "url": "/pay"}],
            expires_at=datetime.now(UTC) + timedelta(days=1),
        )
        uma_second = second["notifications"][0]["id"]
        page = await tidings.list_notifications("uma", limit=1)
        assert [n["id"] for n in page["items"]] == [uma_second]
        assert page["unreadCount"] == 2
        everything = [n["id"] async for n in tidings.iter_notifications("uma", page_size=1)]
        assert everything == [uma_second, first["notifications"][0]["id"]]
        got = await tidings.get_notification("uma", uma_second)
        assert (got["priority"], got["actionable"]) == ("LOW", True)
        assert (await tidings.mark_read("uma", [uma_second]))["unreadCount"] == 1
        assert (await tidings.mark_all_read("uma"))["unreadCount"] == 0
        archived = await tidings.archive_notifications("uma", [uma_second])
        assert archived["ids"] == [uma_second]
        shelf = await tidings.list_notifications("uma", archived=True)
        assert [n["id"] for n in shelf["items"]] == [uma_second]
        assert (await tidings.unarchive_notifications("uma", [uma_second]))["ids"] == [uma_second]
        assert (await tidings.list_notifications("uma", archived=True))["items"] == []
        deleted = await tidings.delete_notification("uma", uma_second)
        assert deleted["ids"] == [uma_second]
        with pytest.raises(NotFound, match="no such notification"):
            await tidings.get_notification("uma", uma_second)
        assert await tidings.set_preferences("uma", {"*": False, "SECURITY": True}) == {
            "*": False,
            "SECURITY": True,
        }
        assert (await tidings.get_preferences("uma"))["SECURITY"] is True
        skipped = await tidings.create_notification(user_id="uma", category="PROMO")
        assert (skipped["notifications"], skipped["skipped"]) == ([], ["uma"])
        everyone = await tidings.create_notification(everyone=True, category="SECURITY")
        assert {n["userId"] for n in everyone["notifications"]} == {"uma"}  # vic never connected


async def test_async_client_rooms_and_member_routes(harness: Harness) -> None:
    """Rooms are managed with the key; a member posts, edits, reads and deletes with their JWT."""
    async with AsyncClient(harness.url, API_KEY) as tidings:
        room = await tidings.create_room("room-1", name="Case 12345")
        assert (room["id"], room["name"], room["lastSeq"]) == ("room-1", "Case 12345", 0)
        with pytest.raises(Conflict):
            await tidings.create_room("room-1")
        assert await tidings.set_members("room-1", ["ann", "ben"]) == ["ann", "ben"]
        assert await tidings.set_members("room-1", ["ben"], role="moderator") == []
        roles = {m["userId"]: m["role"] for m in await tidings.list_members("room-1")}
        assert roles == {"ann": "member", "ben": "moderator"}
        ann = tidings.as_user(token("ann"))
        posted = await ann.post_message("room-1", "Hello")
        assert (posted["authorId"], posted["seq"]) == ("ann", 1)
        edited = await ann.edit_message("room-1", posted["id"], "Hello again")
        assert (edited["content"], edited["isEdited"]) == ("Hello again", True)
        page = await ann.list_messages("room-1")
        assert [m["id"] for m in page["messages"]] == [posted["id"]]
        ben = tidings.as_user(token("ben"))
        assert (await ben.mark_room_read("room-1", seq=1))["unreadCount"] == 0
        assert [r["unreadCount"] for r in await ben.rooms()] == [0]
        assert await ben.room_presence("room-1") == []
        assert (await ben.delete_message("room-1", posted["id"]))["deletedBy"] == "ben"
        assert await ben.block("ann") is True
        assert await ben.blocks() == ["ann"]
        assert await ben.unblock("ann") is True
        await tidings.remove_member("room-1", "ann")
        with pytest.raises(Forbidden, match="not a member"):
            await ann.post_message("room-1", "still here?")
        await tidings.delete_room("room-1")
        with pytest.raises(NotFound):
            await tidings.get_room("room-1")


async def test_async_user_client_reads_its_own_inbox(harness: Harness) -> None:
    """as_user(token) reaches /api/me/ routes; another user's id behaves as missing."""
    async with AsyncClient(harness.url, API_KEY) as tidings:
        mine = (await tidings.send_notification("kim", {"title": "hi"}))["notifications"][0]["id"]
        other = (await tidings.send_notification("lou", {"title": "x"}))["notifications"][0]["id"]
        kim = tidings.as_user(token("kim"))
        assert [n["id"] for n in (await kim.list_notifications())["items"]] == [mine]
        assert (await kim.get_notification(mine))["title"] == "hi"
        with pytest.raises(NotFound):
            await kim.get_notification(other)
        assert (await kim.mark_read([mine, other]))["ids"] == [mine]
        assert (await kim.mark_all_read())["ids"] == []
        assert await kim.set_preferences({"*": True}) == {"*": True}
        assert await kim.get_preferences() == {"*": True}
        assert (await kim.archive_notifications([mine]))["ids"] == [mine]
        assert [n["id"] for n in (await kim.list_notifications(archived=True))["items"]] == [mine]
        assert (await kim.unarchive_notifications([mine]))["ids"] == [mine]
        assert (await kim.delete_notification(mine))["ids"] == [mine]


async def test_async_client_connection_control(harness: Harness) -> None:
    """List a user's connections, take a channel away, then close them."""
    async with AsyncClient(harness.url, API_KEY) as tidings, harness.client("max") as ws:
        await request(ws, {"type": "subscribe", "channel": "news"})
        (conn,) = await tidings.connections("max")
        assert (conn["userId"], conn["subscriptions"][0]["channel"]) == ("max", "news")
        assert await tidings.unsubscribe("max", "news") == 1
        assert (await recv_type(ws, "unsubscribed"))["data"]["byServer"] is True
        assert await tidings.disconnect("max", reason="banned", client_id=conn["clientId"]) == 1
        with pytest.raises(ValidationError, match="code must be"):
            await tidings.disconnect("max", code=3000)


@pytest.mark.parametrize(
    ("key", "cls"),
    [(None, Unauthorized), ("wrong", Unauthorized), (token("alice"), Forbidden)],
    ids=["no-key", "wrong-key", "user-token"],
)
async def test_async_client_auth_errors(harness: Harness, key: str | None, cls: type) -> None:
    """Key mistakes come back as the documented typed errors, with the server's message."""
    async with AsyncClient(harness.url, key) as tidings:
        with pytest.raises(cls) as info:
            await tidings.publish("news")
    assert info.value.code in ("UNAUTHORIZED", "FORBIDDEN")


async def test_validation_errors_are_typed(harness: Harness) -> None:
    """A bad channel is a ValidationError from the server; a missing target never leaves."""
    async with AsyncClient(harness.url, API_KEY) as tidings:
        with pytest.raises(ValidationError, match="invalid channel name"):
            await tidings.publish("bad name")
        with pytest.raises(ValueError, match="exactly one target"):
            await tidings.create_notification(title="to nobody")
        with pytest.raises(ValidationError, match="expiresAt is in the past"):
            await tidings.create_notification(user_id="a", expires_at="2001-01-01T00:00:00Z")


async def test_rate_limited_beyond_max_backoff_is_raised_at_once(
    make_server: ServerFactory,
) -> None:
    """A 429 whose Retry-After is longer than max_backoff is not retried sooner than
    asked: RateLimited is raised at once, carrying the server's retry_after."""
    # A bucket of one request that refills every 1000 s: the second call is always refused.
    h = await make_server(api_rate_limit_per_second=0.001)
    retry = Retry(attempts=2, max_backoff=0.01)
    async with AsyncClient(h.url, API_KEY, retry=retry) as tidings:
        await tidings.publish("news")
        with pytest.raises(RateLimited) as info:
            await tidings.publish("news")
    assert info.value.retry_after == 1.0
    assert h.server.node.metrics.api_requests[("POST", "/api/publish", "429")] == 1


@pytest.mark.parametrize("client", ["sync", "async"])
async def test_retry_after_a_dropped_connection_creates_once(harness: Harness, client: str) -> None:
    """The first answer is lost after the server committed; the retry carries the same
    Idempotency-Key, so exactly one notification exists and the retry reports a replay."""
    async with proxy(harness.server.port, ["drop_response"]) as p:
        retry = Retry(attempts=3, backoff=0.01)
        if client == "sync":
            with Client(p.url, API_KEY, retry=retry) as sync:
                created = await asyncio.to_thread(sync.send_notification, "ned", GUIDE_003)
        else:
            async with AsyncClient(p.url, API_KEY, retry=retry) as aio:
                created = await aio.send_notification("ned", GUIDE_003)
        assert p.connections == ["drop_response", "forward"]
    assert created["replayed"] is True
    _, page = await harness.api("GET", "/api/users/ned/notifications")
    assert [n["id"] for n in page["items"]] == [created["notifications"][0]["id"]]


async def test_publish_is_not_repeated_after_a_dropped_connection(harness: Harness) -> None:
    """A publish that may have happened raises TransportError(maybe_sent) and is not resent:
    the subscriber gets it exactly once."""
    async with (
        harness.client("sub") as ws,
        proxy(harness.server.port, ["drop_response"]) as p,
        AsyncClient(p.url, API_KEY, retry=Retry(backoff=0.01)) as tidings,
    ):
        await request(ws, {"type": "subscribe", "channel": "news"})
        with pytest.raises(TransportError) as info:
            await tidings.publish("news", {"once": True})
        assert info.value.maybe_sent is True
        assert p.connections == ["drop_response"]
        assert (await recv(ws))["data"] == {"once": True}
        # Nothing else arrives: the next thing on the socket is the ping's answer.
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_timeouts_apply_per_try(harness: Harness) -> None:
    """A server that never answers: a publish times out once; a read is tried again."""
    async with proxy(harness.server.port, [], then="blackhole") as p:
        retry = Retry(attempts=2, backoff=0.01)
        async with AsyncClient(p.url, API_KEY, timeout=0.2, retry=retry) as tidings:
            with pytest.raises(TransportError) as info:
                await tidings.publish("news")
            assert (info.value.maybe_sent, len(p.connections)) == (True, 1)
            with pytest.raises(TransportError):
                await tidings.get_room("r")
            assert len(p.connections) == 4


async def test_connection_refused_is_retried_then_not_sent(tmp_path: Path) -> None:
    """Nothing listening: every call, a publish included, is retried, then TransportError
    says it was not sent."""
    transport = httpx.AsyncHTTPTransport(uds=str(tmp_path / "nobody.sock"))
    retry = Retry(attempts=2, backoff=0.01)
    async with AsyncClient("http://tidings", API_KEY, retry=retry, transport=transport) as tidings:
        with pytest.raises(TransportError) as info:
            await tidings.publish("news")
    assert info.value.maybe_sent is False
    assert "was not sent" in str(info.value)


async def test_sync_client_round_trip(harness: Harness) -> None:
    """The synchronous client from a worker thread (as a Flask view runs): send, list, read."""

    def backend() -> tuple[Any, ...]:
        with Client(harness.url, API_KEY, timeout=TIMEOUT) as tidings:
            created = tidings.send_notification("pat", GUIDE_003)
            page = tidings.list_notifications("pat", unread_only=True)
            ids = [n["id"] for n in tidings.iter_notifications("pat")]
            tidings.mark_all_read("pat")
            with pytest.raises(NotFound, match="no such notification"):
                tidings.get_notification("pat", "ntf_missing")
            return created, page, ids, tidings.list_notifications("pat")

    created, page, ids, after = await asyncio.to_thread(backend)
    nid = created["notifications"][0]["id"]
    assert ([n["id"] for n in page["items"]], ids) == ([nid], [nid])
    assert after["unreadCount"] == 0


async def test_create_notifications_batch(harness: Harness) -> None:
    """create_notifications (async and sync) sends a batch with a key per item: a result
    per item in order, an invalid one fails alone, and a retried item replays."""
    items: list[dict[str, Any]] = [
        {"user_id": "bat", "title": "One", "idempotency_key": "py-batch-1"},
        {"userIds": ["bat", "cat"], "case_id": "7", "priority": "high"},
        {"userId": "dot", "type": ""},
    ]
    async with AsyncClient(harness.url, API_KEY) as tidings:
        results = (await tidings.create_notifications(items))["results"]
        assert [r["status"] for r in results] == [201, 201, 422]
        assert results[2]["error"] is not None
        assert results[2]["error"]["code"] == "VALIDATION_ERROR"
        got = await tidings.get_notification("cat", results[1]["notifications"][1]["id"])
        assert (got["priority"], got["data"]) == ("HIGH", {"case_id": "7"})

    def backend() -> Any:
        with Client(harness.url, API_KEY, timeout=TIMEOUT) as sync:
            return sync.create_notifications(items[:1])

    again = (await asyncio.to_thread(backend))["results"][0]
    assert (again["status"], again["replayed"]) == (200, True)
    assert again["notifications"] == results[0]["notifications"]


def test_sdk_needs_nothing_of_the_server() -> None:
    """The SDK's distribution requires httpx alone, and importing it loads no server module."""
    from importlib.metadata import requires

    needed = [r for r in requires("tidings-sdk") or [] if "extra ==" not in r]
    assert [r.split(">")[0] for r in needed] == ["httpx"]
    code = (
        "import sys, tidings_sdk; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tidings', 'aiohttp', 'msgspec', 'uvloop', 'prometheus_client', 'jwt'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_async_client_user_directory(harness: Harness) -> None:
    """Register, read, list by role, import, reach a never-connected user by role, erase."""
    async with AsyncClient(harness.url, API_KEY) as tidings:
        ada = await tidings.put_user(
            "lib-7", name="Ada", email="ada@library.example", roles=["LIBRARIAN"]
        )
        assert (ada["id"], ada["name"], ada["roles"]) == ("lib-7", "Ada", ["LIBRARIAN"])
        assert (await tidings.get_user("lib-7"))["email"] == "ada@library.example"
        imported = await tidings.import_users(
            [{"id": "lib-8", "roles": ["LIBRARIAN"]}, {"id": "stu-1", "roles": ["STUDENT"]}]
        )
        assert imported == {"created": 2, "updated": 0}
        librarians = [u["id"] async for u in tidings.iter_users(role="LIBRARIAN", page_size=1)]
        assert librarians == ["lib-7", "lib-8"]
        page = await tidings.list_users(limit=2)
        assert (len(page["items"]), page["nextCursor"] is not None) == (2, True)
        sent = await tidings.create_notification(role="LIBRARIAN", title="Peak hours")
        assert sorted(n["userId"] for n in sent["notifications"]) == ["lib-7", "lib-8"]
        with pytest.raises(ValidationError, match="timeZone"):
            await tidings.put_user("x", time_zone="Mars/Olympus")
        erased = await tidings.erase_user("lib-7")
        assert (erased["erased"]["profile"], erased["erased"]["notifications"]) == (True, 1)
        with pytest.raises(NotFound, match="no such user"):
            await tidings.get_user("lib-7")


async def test_sync_client_user_directory(harness: Harness) -> None:
    """The synchronous client registers, pages through and erases users from a thread."""

    def backend() -> tuple[Any, ...]:
        with Client(harness.url, API_KEY, timeout=TIMEOUT) as tidings:
            tidings.put_user("kim", name="Kim", roles=["STAFF"])
            tidings.put_user("kim", name="Kim Lee", roles=["STAFF"])  # replaced, not added
            staff = [u["name"] for u in tidings.iter_users(role="STAFF")]
            erased = tidings.erase_user("kim")
            with pytest.raises(NotFound):
                tidings.get_user("kim")
            return staff, erased

    staff, erased = await asyncio.to_thread(backend)
    assert staff == ["Kim Lee"]
    assert erased["kept"]["roomMessages"] == 0
