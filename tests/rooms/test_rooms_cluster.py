"""Rooms across instances: tidings processes on one Redis and one PostgreSQL (issue 6).

Room events cross the broker; presence lives in Redis (``presence.redis``), per user, with
each instance's entries kept alive by its heartbeat, so a SIGKILLed instance's users are
cleaned up by the survivors.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from ..conftest import TIMEOUT, closed_with, recv, request, token
from ..processes import Instance, cluster, pg_schema


@pytest.fixture
async def three(tmp_path: Path) -> Any:
    settings = {"TIDINGS_PRESENCE_GRACE": "0.3"}
    async with pg_schema() as store, cluster(3, tmp_path, store_url=store, settings=settings) as n:
        yield n


async def make_room(via: Instance, members: list[str]) -> None:
    status, body = await via.api("POST", "/api/rooms", {"id": "r1"})
    assert status == 201, body
    status, body = await via.api("PUT", "/api/rooms/r1/members", {"userIds": members})
    assert status == 200, body


async def joined(ws: Any, channel: str) -> None:
    reply = await request(ws, {"type": "subscribe", "channel": channel})
    assert reply["type"] == "subscribed", reply


async def next_event(ws: Any, *types: str) -> dict[str, Any]:
    while True:
        msg = await recv(ws, TIMEOUT)
        if msg["type"] in types:
            return msg


async def test_room_events_reach_members_on_every_instance(three: list[Instance]) -> None:
    """A post, an edit, a delete and typing made through one instance reach members on
    the others; a non-member is refused on every instance (membership is in the store)."""
    await make_room(three[0], ["alice", "bob", "carol"])
    async with three[1].client("alice") as a, three[2].client("bob") as b:
        for ws in (a, b):
            await joined(ws, "room:r1")
        await joined(a, "room:r1:typing")
        status, sent = await three[0].api(
            "POST", "/api/rooms/r1/messages", {"content": "hi all"}, key=token("carol")
        )
        assert status == 201, sent
        for ws in (a, b):
            assert (await next_event(ws, "CHAT_MESSAGE"))["data"]["id"] == sent["id"]
        path = f"/api/rooms/r1/messages/{sent['id']}"
        status, _ = await three[2].api("PATCH", path, {"content": "hi!"}, key=token("carol"))
        assert status == 200
        for ws in (a, b):
            assert (await next_event(ws, "MESSAGE_EDIT"))["data"]["content"] == "hi!"
        await request(b, {"type": "typing", "roomId": "r1", "isTyping": True})
        typing = await next_event(a, "TYPING")
        assert typing["data"] == {"userId": "bob", "roomId": "r1", "isTyping": True}
        status, _ = await three[1].api("DELETE", path, key=token("carol"))
        assert status == 200
        for ws in (a, b):
            assert (await next_event(ws, "MESSAGE_DELETE"))["data"]["messageId"] == sent["id"]
    for inst in three:
        async with inst.client("mallory") as m:
            reply = await request(m, {"type": "subscribe", "channel": "room:r1"})
            assert reply["data"]["code"] == "FORBIDDEN"


async def test_presence_with_tabs_on_two_instances_and_a_killed_instance(
    three: list[Instance],
) -> None:
    """bob's tabs on two instances make one USER_JOINED; killing one of those instances
    leaves him online (dave, only on the killed one, leaves); his last tab closing makes
    USER_LEFT. Presence queries agree on every instance."""
    await make_room(three[0], ["bob", "carol", "dave"])

    async def online(inst: Instance) -> list[str]:
        status, body = await inst.api("GET", "/api/rooms/r1/presence", key=token("carol"))
        assert status == 200, body
        users: list[str] = body["online"]
        return users

    async with three[0].client("carol") as watcher:
        await joined(watcher, "room:r1:online")
        async with three[1].client("bob") as tab1:
            await joined(tab1, "room:r1")
            event = await next_event(watcher, "USER_JOINED", "USER_LEFT")
            assert (event["type"], event["data"]["userId"]) == ("USER_JOINED", "bob")
            async with three[2].client("bob") as tab2, three[2].client("dave") as d:
                await joined(tab2, "room:r1")
                await joined(d, "room:r1")
                # bob's second tab announced nothing: the next presence event is dave's.
                event = await next_event(watcher, "USER_JOINED", "USER_LEFT")
                assert (event["type"], event["data"]["userId"]) == ("USER_JOINED", "dave")
                for inst in three:
                    assert await online(inst) == ["bob", "dave"]
                three[2].kill()
                await closed_with_any(tab2)
                # The survivors sweep the dead instance once its heartbeat runs out: dave
                # (no other tab) leaves; bob (a tab on a live instance) stays. Pairs are
                # settled in user order, so bob's fate was decided before dave's leave.
                event = await next_event(watcher, "USER_JOINED", "USER_LEFT")
                assert (event["type"], event["data"]["userId"]) == ("USER_LEFT", "dave")
            for inst in three[:2]:
                assert await online(inst) == ["bob"]
        event = await next_event(watcher, "USER_JOINED", "USER_LEFT")
        assert (event["type"], event["data"]["userId"]) == ("USER_LEFT", "bob")
        assert await online(three[1]) == []


async def closed_with_any(ws: Any) -> None:
    """The connection ends, by a close frame or by the peer vanishing."""
    with contextlib.suppress(AssertionError):  # no close frame: the process was killed
        await closed_with(ws)


async def test_a_block_applies_on_every_instance_at_once(three: list[Instance]) -> None:
    """alice blocks bob through one instance while her tab is on another: from the
    answer on, none of bob's messages reach that tab."""
    await make_room(three[0], ["alice", "bob", "carol"])
    async with three[1].client("alice") as a:
        await joined(a, "room:r1")
        status, _ = await three[0].api("PUT", "/api/me/blocks/bob", key=token("alice"))
        assert status == 200
        for author, text in (("bob", "hidden"), ("carol", "visible")):
            status, _ = await three[2].api(
                "POST", "/api/rooms/r1/messages", {"content": text}, key=token(author)
            )
            assert status == 201
        assert (await next_event(a, "CHAT_MESSAGE"))["data"]["content"] == "visible"


async def test_removed_member_loses_the_room_on_every_instance(three: list[Instance]) -> None:
    """Removing a member through one instance unsubscribes their tabs on the others."""
    await make_room(three[0], ["alice", "bob"])
    async with three[1].client("bob") as b1, three[2].client("bob") as b2:
        for ws in (b1, b2):
            await joined(ws, "room:r1")
        status, _ = await three[0].api("DELETE", "/api/rooms/r1/members/bob")
        assert status == 200
        for ws in (b1, b2):
            gone = await next_event(ws, "unsubscribed")
            assert gone["data"] == {"channel": "room:r1", "byServer": True}


async def test_users_of_a_stopped_instance_leave_once_it_is_gone(three: list[Instance]) -> None:
    """SIGTERM an instance: its users are left to the survivors' sweep, which publishes
    USER_LEFT for the one who did not come back (and not for the one who did)."""
    await make_room(three[0], ["bob", "carol", "dave"])
    async with three[0].client("carol") as watcher:
        await joined(watcher, "room:r1:online")
        async with three[2].client("bob") as b, three[2].client("dave") as d:
            for ws in (b, d):
                await joined(ws, "room:r1")
            for _ in range(2):
                assert (await next_event(watcher, "USER_JOINED"))["type"] == "USER_JOINED"
            three[2].proc.terminate()
            await closed_with_any(b)
            await closed_with_any(d)
        async with three[1].client("bob") as b:  # bob's client reconnects elsewhere
            await joined(b, "room:r1")
            event = await next_event(watcher, "USER_JOINED", "USER_LEFT")
            assert (event["type"], event["data"]["userId"]) == ("USER_LEFT", "dave")
