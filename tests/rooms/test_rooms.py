"""Chat rooms over real connections: membership, messages, edit/delete, history, blocking,
typing, presence and read markers, on one server with an injected monotonic clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection

from tidings.channels import NamespacePolicy
from tidings.rooms import Rooms
from tidings.server import Server

from ..conftest import (
    TIMEOUT,
    Harness,
    make_settings,
    recv,
    recv_type,
    request,
    token,
    wait_for,
)


class Clock:
    """A hand-driven monotonic clock (typing expiry, presence grace)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def h(clock: Clock) -> AsyncIterator[Harness]:
    """A server whose rooms run on ``clock``; rate limits off (the clock stands still)."""
    # The operator opened the room namespace to client publishing and gave it history: room
    # rules must still hold (members only, no forged events), and recovery must work.
    room_ns = NamespacePolicy(publish=True, history_size=100, history_ttl=300.0)
    settings = make_settings(rate_limit_enabled=False, namespaces={"room": room_ns})
    server = Server(settings, monotonic=clock)
    await server.start()
    http = aiohttp.ClientSession()
    try:
        yield Harness(server, http)
    finally:
        await server.stop()
        await http.close()


def rooms_of(h: Harness) -> Rooms:
    rooms = h.server.rooms
    assert rooms is not None
    return rooms


async def make_room(
    h: Harness,
    room: str = "r1",
    members: tuple[str, ...] = ("alice", "bob", "carol"),
    moderators: tuple[str, ...] = (),
    ws_post: bool = True,
) -> None:
    status, body = await h.api("POST", "/api/rooms", {"id": room, "wsPost": ws_post})
    assert status == 201, body
    status, body = await h.api("PUT", f"/api/rooms/{room}/members", {"userIds": list(members)})
    assert status == 200, body
    if moderators:
        body = {"userIds": list(moderators), "role": "moderator"}
        status, _ = await h.api("PUT", f"/api/rooms/{room}/members", body)
        assert status == 200


async def as_user(
    h: Harness, user: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    return await h.api(method, path, body, key=token(user))


async def post(h: Harness, user: str, content: str, room: str = "r1") -> dict[str, Any]:
    status, body = await as_user(
        h, user, "POST", f"/api/rooms/{room}/messages", {"content": content}
    )
    assert status == 201, body
    return body


async def subscribe(ws: ClientConnection, channel: str) -> dict[str, Any]:
    return await request(ws, {"type": "subscribe", "channel": channel})


async def joined(ws: ClientConnection, channel: str) -> None:
    reply = await subscribe(ws, channel)
    assert reply["type"] == "subscribed", reply


async def next_event(ws: ClientConnection, *types: str) -> dict[str, Any]:
    """The next message of one of ``types`` (replies and others skipped)."""
    while True:
        msg = await recv(ws)
        if msg["type"] in types:
            return msg


async def test_member_posts_over_http_and_every_member_tab_gets_it(h: Harness) -> None:
    """POST /api/rooms/{id}/messages with the member's JWT stores and broadcasts
    CHAT_MESSAGE (guide 004's fields plus seq) to every subscribed tab."""
    await make_room(h)
    async with h.client("bob") as b1, h.client("bob") as b2, h.client("alice") as a:
        for ws in (b1, b2, a):
            await joined(ws, "room:r1")
        sent = await post(h, "alice", "Hello, world!")
        assert sent["seq"] == 1
        assert sent["authorId"] == "alice"
        for ws in (b1, b2, a):
            msg = await next_event(ws, "CHAT_MESSAGE")
            assert msg["channel"] == "room:r1"
            data = msg["data"]
            assert data == sent
            assert (data["content"], data["roomId"], data["isEdited"]) == (
                "Hello, world!",
                "r1",
                False,
            )
        assert (await post(h, "bob", "second"))["seq"] == 2


async def test_non_member_is_refused_everywhere(h: Harness) -> None:
    """A non-member cannot subscribe to any of a room's channels, post, read history,
    edit, delete, mark read, type or ask presence; a missing room answers the same."""
    await make_room(h)
    msg = await post(h, "alice", "members only")
    async with h.client("mallory") as ws:
        for channel in ("room:r1", "room:r1:typing", "room:r1:online", "room:nope"):
            reply = await subscribe(ws, channel)
            assert reply["type"] == "error", reply
            assert reply["data"]["code"] == "FORBIDDEN"
        commands = [
            {"type": "chat_message", "roomId": "r1", "content": "hi"},
            {"type": "CHAT_MESSAGE", "payload": {"roomId": "r1", "content": "hi"}},
            {"type": "message_edit", "roomId": "r1", "messageId": msg["id"], "content": "x"},
            {"type": "message_delete", "roomId": "r1", "messageId": msg["id"]},
            {"type": "TYPING", "payload": {"roomId": "r1", "isTyping": True}},
            {"type": "room_read", "roomId": "r1", "seq": 1},
            {"type": "room_presence", "roomId": "r1"},
            {"type": "room_history", "roomId": "r1"},
        ]
        for command in commands:
            reply = await request(ws, command)
            assert reply["type"] == "error", (command, reply)
            assert reply["data"]["code"] == "FORBIDDEN", (command, reply)
        # Still connected and served.
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
    # Not even a member may publish raw events into a room's channels (a forged message).
    async with h.client("alice") as ws:
        for channel in ("room:r1", "room:r1:typing", "room:r1:online"):
            reply = await request(
                ws, {"type": "publish", "channel": channel, "event": "CHAT_MESSAGE", "data": {}}
            )
            assert reply["data"]["code"] == "FORBIDDEN", reply
    base = "/api/rooms/r1"
    for method, path, body in [
        ("POST", f"{base}/messages", {"content": "hi"}),
        ("GET", f"{base}/messages", None),
        ("PATCH", f"{base}/messages/{msg['id']}", {"content": "x"}),
        ("DELETE", f"{base}/messages/{msg['id']}", None),
        ("GET", f"{base}/presence", None),
        ("GET", f"{base}/presence/alice", None),
        ("POST", f"{base}/read", {"seq": 1}),
        ("POST", "/api/rooms/nope/messages", {"content": "hi"}),
    ]:
        status, reply = await as_user(h, "mallory", method, path, body)
        assert status == 403, (method, path, reply)
        assert reply["error"]["code"] == "FORBIDDEN"
    # Management needs the API key; a user token is refused, and no key at all is 401.
    status, _ = await as_user(h, "alice", "PUT", f"{base}/members", {"userIds": ["mallory"]})
    assert status == 403
    status, _ = await h.api("POST", f"{base}/messages", {"content": "x"}, key=None)
    assert status == 401
    status, _ = await h.api("POST", f"{base}/messages", {"content": "x"})
    assert status == 401  # the API key is not a member's token


async def test_edit_by_author_only(h: Harness) -> None:
    """The author edits (MESSAGE_EDIT, isEdited); anyone else, even a moderator, is refused."""
    await make_room(h, moderators=("carol",))
    msg = await post(h, "alice", "typo")
    path = f"/api/rooms/r1/messages/{msg['id']}"
    async with h.client("bob") as b:
        await joined(b, "room:r1")
        for user in ("bob", "carol"):
            status, reply = await as_user(h, user, "PATCH", path, {"content": "hijacked"})
            assert status == 403, reply
        status, edited = await as_user(h, "alice", "PATCH", path, {"content": "fixed"})
        assert status == 200, edited
        assert (edited["content"], edited["isEdited"]) == ("fixed", True)
        event = await next_event(b, "MESSAGE_EDIT")
        assert event["data"]["messageId"] == msg["id"]
        assert event["data"]["content"] == "fixed"
        assert event["data"]["roomId"] == "r1"
        assert event["data"]["isEdited"] is True
    async with h.client("bob") as b:
        reply = await request(
            b, {"type": "message_edit", "roomId": "r1", "messageId": msg["id"], "content": "x"}
        )
        assert reply["data"]["code"] == "FORBIDDEN"
    status, page = await as_user(h, "bob", "GET", "/api/rooms/r1/messages")
    assert page["messages"][0]["content"] == "fixed"
    assert page["messages"][0]["isEdited"] is True


async def test_delete_by_author_or_moderator(h: Harness) -> None:
    """A member cannot delete another's message; the author and a moderator can
    (MESSAGE_DELETE); history keeps a tombstone; deleting twice is 404."""
    await make_room(h, moderators=("carol",))
    first = await post(h, "alice", "one")
    second = await post(h, "alice", "two")
    async with h.client("bob") as b:
        await joined(b, "room:r1")
        status, _ = await as_user(h, "bob", "DELETE", f"/api/rooms/r1/messages/{first['id']}")
        assert status == 403
        status, _ = await as_user(h, "carol", "DELETE", f"/api/rooms/r1/messages/{first['id']}")
        assert status == 200
        event = await next_event(b, "MESSAGE_DELETE")
        assert event["data"]["messageId"] == first["id"]
        assert event["data"]["deletedBy"] == "carol"
        async with h.client("alice") as a:
            reply = await request(
                a, {"type": "message_delete", "roomId": "r1", "messageId": second["id"]}
            )
            assert reply["type"] == "message_deleted", reply
        event = await next_event(b, "MESSAGE_DELETE")
        assert event["data"]["messageId"] == second["id"]
    status, _ = await as_user(h, "alice", "DELETE", f"/api/rooms/r1/messages/{first['id']}")
    assert status == 404
    status, _ = await as_user(
        h, "alice", "PATCH", f"/api/rooms/r1/messages/{first['id']}", {"content": "x"}
    )
    assert status == 404
    status, page = await as_user(h, "bob", "GET", "/api/rooms/r1/messages")
    assert [(m["seq"], m["isDeleted"], m["content"]) for m in page["messages"]] == [
        (2, True, None),
        (1, True, None),
    ]


async def test_history_pages_over_http_and_websocket(h: Harness) -> None:
    """History is newest first, paged by beforeSeq, the same over HTTP and WebSocket."""
    await make_room(h)
    for i in range(7):
        await post(h, "alice", f"m{i}")
    status, page = await as_user(h, "bob", "GET", "/api/rooms/r1/messages?limit=3")
    assert status == 200
    assert [m["seq"] for m in page["messages"]] == [7, 6, 5]
    assert page["nextBeforeSeq"] == 5
    status, page = await as_user(h, "bob", "GET", "/api/rooms/r1/messages?limit=5&beforeSeq=5")
    assert [m["seq"] for m in page["messages"]] == [4, 3, 2, 1]
    assert page["nextBeforeSeq"] is None
    async with h.client("bob") as b:
        reply = await request(b, {"type": "room_history", "roomId": "r1", "limit": 2})
        assert reply["type"] == "room_history"
        assert [m["content"] for m in reply["data"]["messages"]] == ["m6", "m5"]
        reply = await request(b, {"type": "room_history", "roomId": "r1", "limit": 1000})
        assert reply["data"]["code"] == "INVALID_MESSAGE"
    for query in ("limit=0", "limit=x", "beforeSeq=-1", "limit=101"):
        status, _ = await as_user(h, "bob", "GET", f"/api/rooms/r1/messages?{query}")
        assert status == 400, query


async def test_posting_over_the_websocket_when_the_room_allows_it(h: Harness) -> None:
    """chat_message works in a wsPost room and is refused in an HTTP-only one."""
    await make_room(h, "open")
    await make_room(h, "http-only", ws_post=False)
    async with h.client("alice") as a, h.client("bob") as b:
        await joined(b, "room:open")
        reply = await request(
            a, {"type": "CHAT_MESSAGE", "payload": {"roomId": "open", "content": "via ws"}}
        )
        assert reply["type"] == "message_posted", reply
        assert reply["data"]["seq"] == 1
        assert (await next_event(b, "CHAT_MESSAGE"))["data"]["content"] == "via ws"
        reply = await request(a, {"type": "chat_message", "roomId": "http-only", "content": "x"})
        assert reply["data"]["code"] == "FORBIDDEN"
        assert "HTTP" in reply["data"]["message"]


@pytest.mark.parametrize(
    ("content", "status"),
    [
        ("", 422),
        ("   \n\t ", 422),
        ("x" * 4001, 422),
        ("bell\x07", 422),
        (42, 422),
        (None, 422),
        ({"html": "<b>"}, 422),
    ],
)
async def test_bad_content_is_refused(h: Harness, content: Any, status: int) -> None:
    """Content limits: a non-empty string of at most 4000 characters without control
    characters; anything else is 422 and nothing is stored or broadcast."""
    await make_room(h)
    got, reply = await as_user(h, "alice", "POST", "/api/rooms/r1/messages", {"content": content})
    assert got == status, reply
    assert reply["error"]["code"] == "VALIDATION_ERROR"
    assert (await post(h, "alice", "x" * 4000 + ""))["seq"] == 1


async def test_malformed_requests_get_documented_errors(h: Harness) -> None:
    """Bad JSON, unknown fields, bad ids and bad roles are 400/422; the server keeps serving."""
    status, _ = await h.api("POST", "/api/rooms", raw=b"{nope")
    assert status == 400
    status, _ = await h.api("POST", "/api/rooms", {"id": "r1", "extra": 1})
    assert status == 422
    for bad in ("", "a:b", "a b", "x" * 65, "é"):
        status, reply = await h.api("POST", "/api/rooms", {"id": bad})
        assert status == 422, (bad, reply)
    await make_room(h)
    status, _ = await h.api("POST", "/api/rooms", {"id": "r1"})
    assert status == 409
    status, _ = await h.api("PUT", "/api/rooms/r1/members", {"userIds": ["x"], "role": "owner"})
    assert status == 422
    status, _ = await h.api("PUT", "/api/rooms/nope/members", {"userIds": ["x"]})
    assert status == 404
    status, _ = await as_user(h, "alice", "POST", "/api/rooms/r1/read", {})
    assert status == 422
    async with h.client("alice") as a:
        reply = await request(a, {"type": "chat_message", "content": "no room"})
        assert reply["data"]["code"] == "INVALID_MESSAGE"
        reply = await subscribe(a, "room:r1:bogus")
        assert reply["data"]["code"] == "INVALID_MESSAGE"
        assert (await request(a, {"type": "ping"}))["type"] == "pong"


async def test_management_routes(h: Harness) -> None:
    """Rooms are created, read, listed with members, and deleted with the server API key;
    removing a member drops their live subscription at once."""
    await make_room(h, moderators=("carol",))
    status, room = await h.api("GET", "/api/rooms/r1")
    assert (status, room["id"], room["wsPost"], room["lastSeq"]) == (200, "r1", True, 0)
    status, body = await h.api("GET", "/api/rooms/r1/members")
    roles = {m["userId"]: m["role"] for m in body["members"]}
    assert roles == {"alice": "member", "bob": "member", "carol": "moderator"}
    async with h.client("bob") as b:
        await joined(b, "room:r1")
        status, _ = await h.api("DELETE", "/api/rooms/r1/members/bob")
        assert status == 200
        gone = await next_event(b, "unsubscribed")
        assert gone["data"] == {"channel": "room:r1", "byServer": True}
        status, _ = await as_user(h, "bob", "GET", "/api/rooms/r1/messages")
        assert status == 403
    status, _ = await h.api("DELETE", "/api/rooms/r1/members/bob")
    assert status == 404
    status, _ = await h.api("DELETE", "/api/rooms/r1")
    assert status == 200
    status, _ = await h.api("GET", "/api/rooms/r1")
    assert status == 404
    status, _ = await as_user(h, "alice", "GET", "/api/rooms/r1/messages")
    assert status == 403


async def test_blocked_users_messages_and_typing_are_not_delivered(h: Harness) -> None:
    """After alice blocks bob, she gets none of bob's messages or typing, live or in
    history, while carol's still arrive; unblocking restores delivery."""
    await make_room(h)
    async with h.client("alice") as a, h.client("carol") as c:
        await joined(a, "room:r1")
        await joined(a, "room:r1:typing")
        await joined(c, "room:r1")
        status, _ = await as_user(h, "alice", "PUT", "/api/me/blocks/bob")
        assert status == 200
        await post(h, "bob", "from bob")
        async with h.client("bob") as b:
            await request(b, {"type": "typing", "roomId": "r1", "isTyping": True})
        await post(h, "carol", "from carol")
        # carol's message is the next thing alice sees: bob's message and typing were dropped.
        msg = await next_event(a, "CHAT_MESSAGE", "TYPING")
        assert (msg["type"], msg["data"]["authorId"]) == ("CHAT_MESSAGE", "carol")
        # carol blocks nobody: she got both.
        assert (await next_event(c, "CHAT_MESSAGE"))["data"]["authorId"] == "bob"
        assert (await next_event(c, "CHAT_MESSAGE"))["data"]["authorId"] == "carol"
        status, page = await as_user(h, "alice", "GET", "/api/rooms/r1/messages")
        assert [m["authorId"] for m in page["messages"]] == ["carol"]
        status, blocks = await as_user(h, "alice", "GET", "/api/me/blocks")
        assert blocks == {"blocked": ["bob"]}
        status, _ = await as_user(h, "alice", "DELETE", "/api/me/blocks/bob")
        assert status == 200
        await post(h, "bob", "bob again")
        assert (await next_event(a, "CHAT_MESSAGE"))["data"]["content"] == "bob again"
    # A new connection of the blocker is filtered from its first subscription.
    await as_user(h, "alice", "PUT", "/api/me/blocks/bob")
    async with h.client("alice") as a:
        await joined(a, "room:r1")
        await post(h, "bob", "hidden")
        await post(h, "carol", "visible")
        assert (await next_event(a, "CHAT_MESSAGE"))["data"]["content"] == "visible"
    status, _ = await as_user(h, "alice", "PUT", "/api/me/blocks/alice")
    assert status == 422


async def test_typing_is_throttled_and_expires_on_its_own(h: Harness, clock: Clock) -> None:
    """TYPING true goes out once per throttle window, TYPING false when the client stops
    saying so for typing_timeout, or when it posts; nothing is stored."""
    await make_room(h)
    rooms = rooms_of(h)
    typing = {"type": "TYPING", "payload": {"roomId": "r1", "isTyping": True, "userId": "x"}}
    async with h.client("alice") as a, h.client("bob") as b:
        await joined(b, "room:r1:typing")
        await joined(a, "room:r1")
        await request(a, typing)
        event = await next_event(b, "TYPING")
        assert event["channel"] == "room:r1:typing"
        assert event["data"] == {"userId": "alice", "roomId": "r1", "isTyping": True}
        await request(a, typing)  # within the throttle window: coalesced
        clock.now += 1.0
        await request(a, typing)
        await rooms.tick()
        clock.now += 4.5  # 5.5 s after the first, 4.5 s after the last: still typing
        await rooms.tick()
        clock.now += 1.0
        await rooms.tick()
        assert [(e["data"]["isTyping"]) for e in [await next_event(b, "TYPING")]] == [True]
        assert (await next_event(b, "TYPING"))["data"]["isTyping"] is False
        # Typing then posting: the post ends the typing at once.
        await request(a, typing)
        assert (await next_event(b, "TYPING"))["data"]["isTyping"] is True
        await post(h, "alice", "done")
        assert (await next_event(b, "TYPING"))["data"]["isTyping"] is False
        # An explicit stop.
        await request(a, typing)
        assert (await next_event(b, "TYPING"))["data"]["isTyping"] is True
        await request(a, {"type": "typing", "roomId": "r1", "isTyping": False})
        assert (await next_event(b, "TYPING"))["data"]["isTyping"] is False
    assert len(rooms.typing) == 0


async def wait_settles(h: Harness, count: int) -> None:
    """Wait until the server has processed ``count`` closes (their grace checks queued)."""
    rooms = rooms_of(h)
    await wait_for(lambda: rooms.pending_settles >= count)


async def test_presence_is_per_user_with_a_grace_period(h: Harness, clock: Clock) -> None:
    """Two tabs make one USER_JOINED; closing one tab changes nothing; USER_LEFT follows
    the last tab's close once the grace period is over."""
    await make_room(h)
    rooms = rooms_of(h)
    async with h.client("carol") as watcher:
        await joined(watcher, "room:r1:online")
        async with h.client("bob") as b1:
            await joined(b1, "room:r1")
            event = await next_event(watcher, "USER_JOINED", "USER_LEFT")
            assert event["channel"] == "room:r1:online"
            assert (event["type"], event["data"]) == (
                "USER_JOINED",
                {"userId": "bob", "roomId": "r1"},
            )
            async with h.client("bob") as b2:
                await joined(b2, "room:r1")
                reply = await request(b2, {"type": "room_presence", "roomId": "r1"})
                assert reply["data"] == {"roomId": "r1", "online": ["bob"]}
            await wait_settles(h, 1)
            clock.now += 60
            await rooms.tick()
            status, body = await as_user(h, "carol", "GET", "/api/rooms/r1/presence/bob")
            assert body == {"roomId": "r1", "userId": "bob", "online": True}
        await wait_settles(h, 1)
        await rooms.tick()  # not due yet: the grace period has not passed
        status, body = await as_user(h, "carol", "GET", "/api/rooms/r1/presence")
        assert body["online"] == ["bob"]
        clock.now += rooms.grace
        await rooms.tick()
        event = await next_event(watcher, "USER_JOINED", "USER_LEFT")
        assert (event["type"], event["data"]["userId"]) == ("USER_LEFT", "bob")
        status, body = await as_user(h, "carol", "GET", "/api/rooms/r1/presence")
        assert (status, body) == (200, {"roomId": "r1", "online": []})


async def test_a_reload_does_not_flap(h: Harness, clock: Clock) -> None:
    """A tab that closes and comes back within the grace period produces neither
    USER_LEFT nor a second USER_JOINED, even after the grace period has passed."""
    await make_room(h)
    rooms = rooms_of(h)
    async with h.client("carol") as watcher:
        await joined(watcher, "room:r1:online")
        async with h.client("bob") as b:
            await joined(b, "room:r1")
        assert (await next_event(watcher, "USER_JOINED"))["data"]["userId"] == "bob"
        await wait_settles(h, 1)
        clock.now += rooms.grace / 2  # the page takes a moment to come back
        await rooms.tick()
        async with h.client("bob") as b:  # the reload
            await joined(b, "room:r1")
            clock.now += rooms.grace + 1
            await rooms.tick()
            async with h.client("alice") as a:  # a sentinel event on the same channel
                await joined(a, "room:r1")
                event = await next_event(watcher, "USER_JOINED", "USER_LEFT")
                assert (event["type"], event["data"]["userId"]) == ("USER_JOINED", "alice")


async def test_unsubscribing_leaves_the_room(h: Harness, clock: Clock) -> None:
    """Unsubscribing from room:{id} counts like closing the tab."""
    await make_room(h)
    rooms = rooms_of(h)
    async with h.client("carol") as watcher, h.client("bob") as b:
        await joined(watcher, "room:r1:online")
        await joined(b, "room:r1")
        assert (await next_event(watcher, "USER_JOINED"))["data"]["userId"] == "bob"
        reply = await request(b, {"type": "unsubscribe", "channel": "room:r1"})
        assert reply["type"] == "unsubscribed"
        await wait_settles(h, 1)
        clock.now += rooms.grace
        await rooms.tick()
        assert (await next_event(watcher, "USER_LEFT"))["data"]["userId"] == "bob"


async def test_read_markers_reach_the_other_tabs(h: Harness) -> None:
    """room_read moves the marker (never back), answers the unread count, and the user's
    other tabs get ROOM_READ; GET /api/me/rooms lists unread counts per room."""
    await make_room(h)
    await make_room(h, "r2", members=("bob",))
    msgs = [await post(h, "alice", f"m{i}") for i in range(3)]
    await post(h, "bob", "own messages are never unread")
    status, mine = await as_user(h, "bob", "GET", "/api/me/rooms")
    assert status == 200
    assert [(r["roomId"], r["unreadCount"]) for r in mine["rooms"]] == [("r1", 3), ("r2", 0)]
    async with h.client("bob") as b1, h.client("bob") as b2:
        reply = await request(b1, {"type": "room_read", "roomId": "r1", "messageId": msgs[1]["id"]})
        assert reply["type"] == "room_read", reply
        assert reply["data"] == {"roomId": "r1", "lastReadSeq": 2, "unreadCount": 1}
        pushed = await next_event(b2, "ROOM_READ")
        assert pushed["data"] == reply["data"]
        status, data = await as_user(h, "bob", "POST", "/api/rooms/r1/read", {"seq": 1})
        assert data["lastReadSeq"] == 2  # never back
        status, data = await as_user(h, "bob", "POST", "/api/rooms/r1/read", {"seq": 4})
        assert data == {"roomId": "r1", "lastReadSeq": 4, "unreadCount": 0}
        assert (await next_event(b1, "ROOM_READ"))["data"]["lastReadSeq"] == 2
        assert (await next_event(b1, "ROOM_READ"))["data"]["lastReadSeq"] == 4
    status, mine = await as_user(h, "bob", "GET", "/api/me/rooms")
    assert [(r["roomId"], r["lastReadSeq"], r["unreadCount"]) for r in mine["rooms"]] == [
        ("r1", 4, 0),
        ("r2", 0, 0),
    ]
    status, reply = await as_user(h, "bob", "POST", "/api/rooms/r1/read", {"messageId": "rm_x"})
    assert status == 404


async def test_client_filters_still_apply_with_blocks(h: Harness) -> None:
    """A client's own subscription filter on a room channel combines with its block list."""
    await make_room(h)
    await as_user(h, "alice", "PUT", "/api/me/blocks/bob")
    async with h.client("alice") as a:
        reply = await request(
            a,
            {"type": "subscribe", "channel": "room:r1", "filters": {"authorId": ["bob", "carol"]}},
        )
        assert reply["type"] == "subscribed"
        await post(h, "bob", "blocked")
        await post(h, "alice", "filtered out")
        await post(h, "carol", "wanted")
        msg = await next_event(a, "CHAT_MESSAGE")
        assert msg["data"]["content"] == "wanted"
        status = await a.send(json.dumps({"type": "get_status", "id": "s"}))
        assert status is None
        reply = await recv_type(a, "status", TIMEOUT)
        assert reply["data"]["subscriptions"] == [
            {"channel": "room:r1", "filters": {"authorId": ["bob", "carol"]}}
        ]


async def test_room_channels_recover_after_a_reconnect(h: Harness) -> None:
    """A member who reconnects with ``since`` gets the room events it missed, in order."""
    await make_room(h)
    async with h.client("bob") as b:
        reply = await subscribe(b, "room:r1")
        since = {"offset": reply["data"]["offset"], "epoch": reply["data"]["epoch"]}
        await post(h, "alice", "seen")
        seen = await next_event(b, "CHAT_MESSAGE")
        since["offset"] = seen["offset"]
    await post(h, "alice", "missed 1")
    await post(h, "alice", "missed 2")
    async with h.client("bob") as b:
        reply = await request(b, {"type": "subscribe", "channel": "room:r1", "since": since})
        assert reply["data"]["recovered"] is True, reply
        got = [await next_event(b, "CHAT_MESSAGE") for _ in range(2)]
        assert [m["data"]["content"] for m in got] == ["missed 1", "missed 2"]
        assert all(m["recovered"] for m in got)
    async with h.client("mallory") as m:
        reply = await request(m, {"type": "subscribe", "channel": "room:r1", "since": since})
        assert reply["data"]["code"] == "FORBIDDEN"


async def test_posting_is_rate_limited_per_user(clock: Clock) -> None:
    """A member posting faster than the client rate limit gets 429 RATE_LIMIT, others
    are unaffected, and time refills the bucket."""
    settings = make_settings(rate_limit_per_second=1.0, rate_limit_burst=2)
    async with Server(settings, monotonic=clock) as server, aiohttp.ClientSession() as http:
        h = Harness(server, http)
        await make_room(h)
        await post(h, "alice", "one")
        await post(h, "alice", "two")
        status, body = await as_user(h, "alice", "POST", "/api/rooms/r1/messages", {"content": "3"})
        assert (status, body["error"]["code"]) == (429, "RATE_LIMIT")
        await post(h, "bob", "bob is not limited by alice")
        clock.now += 1.0
        await post(h, "alice", "three")


async def test_events_name_registered_users(h: Harness, clock: Clock) -> None:
    """CHAT_MESSAGE, history, TYPING and USER_JOINED carry guide 004's authorName /
    authorImage / userName / userImage from the user directory; unregistered users get
    none of those fields; a rename shows once the cache's ttl has passed."""
    await make_room(h)
    alice = {"name": "Alice", "avatarUrl": "https://img.example/alice.png"}
    assert (await h.api("PUT", "/api/users/alice", alice))[0] == 201
    async with h.client("bob") as b:
        await joined(b, "room:r1")
        await joined(b, "room:r1:typing")
        await joined(b, "room:r1:online")
        async with h.client("alice") as a:
            await joined(a, "room:r1")
            online = await next_event(b, "USER_JOINED")
            assert online["data"]["userName"] == "Alice"
            assert online["data"]["userImage"] == alice["avatarUrl"]
            typing = {"type": "TYPING", "payload": {"roomId": "r1", "isTyping": True}}
            await request(a, typing)
            assert (await next_event(b, "TYPING"))["data"]["userName"] == "Alice"
            await post(h, "alice", "hello")
            msg = (await next_event(b, "CHAT_MESSAGE"))["data"]
            assert (msg["authorName"], msg["authorImage"]) == ("Alice", alice["avatarUrl"])
        await post(h, "bob", "hi")  # bob is not registered
        mine = (await next_event(b, "CHAT_MESSAGE"))["data"]
        assert "authorName" not in mine
        assert "authorImage" not in mine
        status, page = await as_user(h, "bob", "GET", "/api/rooms/r1/messages")
        assert status == 200
        names = [m.get("authorName") for m in page["messages"]]
        assert names == [None, "Alice"]
        await h.api("PUT", "/api/users/alice", {"name": "Alicia"})
        clock.now += 31  # past the cache's ttl
        await post(h, "alice", "renamed")
        assert (await next_event(b, "CHAT_MESSAGE"))["data"]["authorName"] == "Alicia"


async def test_an_operator_reads_history_and_presence_with_the_api_key(h: Harness) -> None:
    """With a server API key the GET routes of messages and presence answer as an
    operator: every message (a block hides nothing), who is online, 404 for no room."""
    await make_room(h)
    await post(h, "alice", "one")
    await post(h, "bob", "two")
    status, _ = await as_user(h, "carol", "PUT", "/api/me/blocks/bob")
    assert status == 200
    _, as_carol = await as_user(h, "carol", "GET", "/api/rooms/r1/messages")
    assert [m["content"] for m in as_carol["messages"]] == ["one"]
    async with h.client("bob") as b:
        await joined(b, "room:r1")
        status, page = await h.api("GET", "/api/rooms/r1/messages?limit=10")
        assert status == 200, page
        assert [m["content"] for m in page["messages"]] == ["two", "one"]
        status, body = await h.api("GET", "/api/rooms/r1/presence")
        assert (status, body) == (200, {"roomId": "r1", "online": ["bob"]})
        status, body = await h.api("GET", "/api/rooms/r1/presence/bob")
        assert (status, body) == (200, {"roomId": "r1", "userId": "bob", "online": True})
    for path in ("/api/rooms/nope/messages", "/api/rooms/nope/presence"):
        status, body = await h.api("GET", path)
        assert (status, body["error"]["code"]) == (404, "NOT_FOUND"), path
    # A wrong key is neither an operator nor a member.
    status, _ = await h.api("GET", "/api/rooms/r1/messages", key="not-a-key")
    assert status == 401
