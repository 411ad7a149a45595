"""Client messages over real connections: ping, subscriptions, filters, rules, errors."""

from __future__ import annotations

import json

import pytest

from tidings import protocol
from tidings.channels import NamespacePolicy

from ..conftest import Harness, ServerFactory, recv, recv_type, request, token

LIBRARY_NAMESPACES = {
    "activities": NamespacePolicy(allowed_roles=frozenset({"LIBRARIAN", "ADMIN"})),
    # Not "room": that namespace belongs to chat rooms, members only (docs/rooms.md).
    "lounge": NamespacePolicy(publish=True),
    "system": NamespacePolicy(subscribe=False),
}


@pytest.mark.parametrize(
    ("sent", "expected"), [("ping", "pong"), ("PING", "PONG"), ("Ping", "pong")]
)
async def test_ping_pong_case(harness: Harness, sent: str, expected: str) -> None:
    """ping gets pong; guides 000 and 004's PING gets PONG."""
    async with harness.client() as ws:
        await ws.send(json.dumps({"type": sent, "payload": {}}))
        assert (await recv(ws))["type"] == expected


async def test_subscribe_both_shapes_and_receive(harness: Harness) -> None:
    """Guide 001 (channel) and guide 002 (data.topic) subscriptions both receive publications."""
    async with harness.client("a") as one, harness.client("b") as two:
        r1 = await request(one, {"type": "subscribe", "channel": "notifications"})
        r2 = await request(two, {"type": "SUBSCRIBE", "data": {"topic": "notifications"}})
        assert r1["type"] == r2["type"] == "subscribed"
        assert r1["channel"] == "notifications"
        status, body = await harness.api(
            "POST",
            "/api/publish",
            {"channel": "notifications", "type": "notification", "data": {"title": "Hi"}},
        )
        assert status == 200
        assert body["delivered"] == 2
        for ws in (one, two):
            msg = await recv(ws)
            assert msg == {
                "id": body["id"],
                "type": "notification",
                "channel": "notifications",
                "timestamp": msg["timestamp"],
                "data": {"title": "Hi"},
            }


async def test_unsubscribe_stops_delivery(harness: Harness) -> None:
    """After unsubscribe, publications no longer arrive."""
    async with harness.client() as ws:
        await request(ws, {"type": "subscribe", "channel": "news"})
        reply = await request(ws, {"type": "unsubscribe", "data": {"topic": "news"}})
        assert reply["type"] == "unsubscribed"
        assert reply["channel"] == "news"
        _, body = await harness.api("POST", "/api/publish", {"channel": "news", "data": 1})
        assert body["delivered"] == 0


async def test_filters_at_fan_out(harness: Harness) -> None:
    """Guide 002's filter delivers only matching publications; two filters run independently."""
    async with harness.client("a") as lib, harness.client("b") as other:
        await request(
            lib,
            {
                "type": "subscribe",
                "data": {
                    "topic": "activities",
                    "filters": {
                        "activityType": ["CHECK_IN", "CHECK_OUT"],
                        "location": "Main Library",
                    },
                },
            },
        )
        await request(
            other,
            {"type": "subscribe", "channel": "activities", "filters": {"location": "AVR Room"}},
        )
        pubs = [
            {"activityType": "CHECK_IN", "location": "Main Library", "n": 1},
            {"activityType": "BOOK_BORROW", "location": "Main Library", "n": 2},
            {"activityType": "CHECK_OUT", "location": "AVR Room", "n": 3},
            {"activityType": "CHECK_OUT", "location": "Main Library", "n": 4},
        ]
        delivered = []
        for data in pubs:
            _, body = await harness.api(
                "POST",
                "/api/publish",
                {"channel": "activities", "type": "activity_update", "data": data},
            )
            delivered.append(body["delivered"])
        assert delivered == [1, 0, 1, 1]
        assert [(await recv(lib))["data"]["n"] for _ in range(2)] == [1, 4]
        assert (await recv(other))["data"]["n"] == 3


async def test_resubscribe_replaces_filter(harness: Harness) -> None:
    """Subscribing again to the same channel replaces its filter (no duplicate delivery)."""
    async with harness.client() as ws:
        await request(ws, {"type": "subscribe", "channel": "eq", "filters": {"s": "A"}})
        await request(ws, {"type": "subscribe", "channel": "eq", "filters": {"s": "B"}})
        _, a = await harness.api("POST", "/api/publish", {"channel": "eq", "data": {"s": "A"}})
        _, b = await harness.api("POST", "/api/publish", {"channel": "eq", "data": {"s": "B"}})
        assert (a["delivered"], b["delivered"]) == (0, 1)
        status = await request(ws, {"type": "get_status"})
        assert status["data"]["subscriptions"] == [{"channel": "eq", "filters": {"s": "B"}}]


async def test_role_rules(make_server: ServerFactory) -> None:
    """allowedRoles admits librarians and refuses students with FORBIDDEN."""
    h = await make_server(namespaces=LIBRARY_NAMESPACES)
    async with h.client("lib", ("LIBRARIAN",)) as lib, h.client("stu", ("STUDENT",)) as stu:
        assert (await request(lib, {"type": "subscribe", "channel": "activities"}))[
            "type"
        ] == "subscribed"
        denied = await request(stu, {"type": "subscribe", "channel": "activities"})
        assert denied["type"] == "error"
        assert denied["data"]["code"] == "FORBIDDEN"
        assert denied["data"]["details"] == {"channel": "activities"}
        closed = await request(stu, {"type": "subscribe", "channel": "system"})
        assert closed["data"]["code"] == "FORBIDDEN"
        # Still open and serving after refusals.
        assert (await request(stu, {"type": "ping"}))["type"] == "pong"


async def test_welcome_lists_available_topics(make_server: ServerFactory) -> None:
    """The welcome lists the namespaces this user's roles may subscribe to."""
    h = await make_server(namespaces=LIBRARY_NAMESPACES)
    async with h.connect(f"?token={token('lib', ('LIBRARIAN',))}") as ws:
        assert (await recv(ws))["data"]["availableSubscriptions"] == [
            "activities",
            "lounge",
            "user:lib",
        ]


async def test_private_user_channels(harness: Harness) -> None:
    """user:{id} is only for that user."""
    async with harness.client("alice") as ws:
        assert (await request(ws, {"type": "subscribe", "channel": "user:alice"}))[
            "type"
        ] == "subscribed"
        denied = await request(ws, {"type": "subscribe", "channel": "user:bob"})
        assert denied["data"]["code"] == "FORBIDDEN"


async def test_client_publish_where_allowed(make_server: ServerFactory) -> None:
    """Clients publish into namespaces that allow it; elsewhere they get FORBIDDEN."""
    h = await make_server(namespaces=LIBRARY_NAMESPACES)
    async with h.client("a") as a, h.client("b") as b:
        await request(b, {"type": "subscribe", "channel": "lounge:1"})
        ok = await request(
            a, {"type": "publish", "channel": "lounge:1", "event": "chat", "data": {"text": "hi"}}
        )
        assert ok["type"] == "published"
        got = await recv(b)
        assert (got["type"], got["channel"], got["data"]) == ("chat", "lounge:1", {"text": "hi"})
        assert got["id"] == ok["data"]["messageId"]
        no = await request(a, {"type": "publish", "channel": "news", "data": {}})
        assert no["data"]["code"] == "FORBIDDEN"
        for forged in ("notification", "Welcome", "close", "notification_read"):
            no = await request(
                a, {"type": "publish", "channel": "lounge:1", "event": forged, "data": {}}
            )
            assert no["data"]["code"] == "FORBIDDEN", forged
        # b got nothing forged: its next message is this one.
        await request(a, {"type": "publish", "channel": "lounge:1", "event": "chat", "data": 2})
        assert (await recv(b))["data"] == 2


async def test_client_cannot_publish_any_server_type(make_server: ServerFactory) -> None:
    """Every type the server sends (protocol.SERVER_MESSAGES), in any case, is refused as a
    client publication's type, and subscribers receive none of them."""
    # Twice as many publications as the default burst allows: no rate limit here.
    h = await make_server(namespaces=LIBRARY_NAMESPACES, rate_limit_enabled=False)
    kinds = [cls.kind for cls in protocol.SERVER_MESSAGES]
    assert {"ROOM_READ", "message_posted", "welcome", "notification"} <= set(kinds)
    async with h.client("a") as a, h.client("b") as b:
        await request(b, {"type": "subscribe", "channel": "lounge:1"})
        for kind in kinds:
            for forged in (kind, kind.swapcase()):
                no = await request(
                    a, {"type": "publish", "channel": "lounge:1", "event": forged, "data": {}}
                )
                assert no["type"] == "error", forged
                assert no["data"]["code"] == "FORBIDDEN", forged
        await request(a, {"type": "publish", "channel": "lounge:1", "event": "chat", "data": 3})
        assert (await recv(b))["data"] == 3


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "[]",
        '{"type":"frobnicate"}',
        '{"type":"subscribe"}',
        '{"type":"subscribe","channel":"bad name"}',
        '{"type":"subscribe","channel":"a","filters":{"x":{"nested":1}}}',
        '"just a string"',
        '{"type":"subscribe","channel":"' + "x" * 300 + '"}',
    ],
)
async def test_bad_messages_get_error_and_stay_open(harness: Harness, frame: str) -> None:
    """Malformed JSON, unknown types and schema violations get INVALID_MESSAGE; still open."""
    async with harness.client() as ws:
        await ws.send(frame)
        err = await recv(ws)
        assert err["type"] == "error"
        assert err["data"]["code"] == "INVALID_MESSAGE"
        assert err["data"]["message"]
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_binary_json_frames_accepted(harness: Harness) -> None:
    """A client that sends JSON in binary frames (Node Buffers) is understood."""
    async with harness.client() as ws:
        await ws.send(b'{"type":"ping","id":"b"}')
        assert (await recv(ws))["replyTo"] == "b"


async def test_get_status(harness: Harness) -> None:
    """get_status reports clientId, userId, roles and subscriptions."""
    async with harness.client("alice", ("ADMIN",)) as ws:
        await request(ws, {"type": "subscribe", "channel": "a"})
        status = await request(ws, {"type": "GET_STATUS", "data": {}})
        data = status["data"]
        assert status["type"] == "status"
        assert (data["userId"], data["roles"]) == ("alice", ["ADMIN"])
        assert data["subscriptions"] == [{"channel": "a", "filters": None}]
        assert data["clientId"].startswith("client_")


async def test_subscription_cap(make_server: ServerFactory) -> None:
    """Past max_subscriptions, subscribe gets LIMIT_EXCEEDED; resubscribing is still fine."""
    h = await make_server(max_subscriptions=2)
    async with h.client() as ws:
        for ch in ("a", "b"):
            await request(ws, {"type": "subscribe", "channel": ch})
        over = await request(ws, {"type": "subscribe", "channel": "c"})
        assert over["data"]["code"] == "LIMIT_EXCEEDED"
        again = await request(ws, {"type": "subscribe", "channel": "a"})
        assert again["type"] == "subscribed"


async def test_tabs_each_receive_user_messages(harness: Harness) -> None:
    """A user's several connections all receive a message sent to that user."""
    async with (
        harness.client("alice") as t1,
        harness.client("alice") as t2,
        harness.client("bob") as other,
    ):
        status, body = await harness.api(
            "POST",
            "/api/users/alice/send",
            {"type": "notification", "data": {"title": "Your book is ready"}},
        )
        assert status == 200
        assert body["delivered"] == 2
        for ws in (t1, t2):
            assert (await recv_type(ws, "notification"))["data"]["title"] == "Your book is ready"
        await other.send('{"type":"ping"}')
        assert (await recv(other))["type"] == "pong"  # bob got nothing before his pong


async def test_invalid_utf8_inside_json_string(harness: Harness) -> None:
    """Invalid UTF-8 inside a JSON string is INVALID_MESSAGE, not a server error."""
    async with harness.client() as ws:
        await ws.send(b'{"type":"ping","x":"\xff"}')
        assert (await recv(ws))["data"]["code"] == "INVALID_MESSAGE"
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
    status, body = await harness.api("POST", "/api/publish", raw=b'{"channel":"\xff"}')
    assert (status, body["error"]["code"]) == (400, "BAD_REQUEST")


async def test_unsubscribe_checks_the_name(harness: Harness) -> None:
    """unsubscribe with an invalid channel name gets INVALID_MESSAGE."""
    async with harness.client() as ws:
        reply = await request(ws, {"type": "unsubscribe", "channel": "no spaces"})
        assert reply["data"]["code"] == "INVALID_MESSAGE"
