"""Opening connections in a burst: each welcome's count and catch-up are its user's own,
whether the count was read with others and whether there was anything to catch up."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection

from ..conftest import Harness, recv, request, token


async def notify(h: Harness, user: str, title: str) -> dict[str, Any]:
    got, reply = await h.api("POST", "/api/notifications", {"userId": user, "title": title})
    assert got == 201, reply
    created: dict[str, Any] = reply["notifications"][0]
    return created


async def before_inbox_reply(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every message before the answer to an inbox command, which waits for the
    connection's catch-up: what the catch-up sent, and anything else before it."""
    await ws.send('{"type":"get_notifications","limit":1,"id":"end"}')
    got = []
    while (msg := await recv(ws)).get("replyTo") != "end":
        got.append(msg)
    return got


async def test_a_burst_of_users_with_and_without_unread(harness: Harness) -> None:
    """Users with unread notifications open in the same burst as users without: each
    welcome counts its own, only the former are caught up, and live ones reach all."""
    users = [f"burst{i}" for i in range(12)]
    unread: dict[str, list[str]] = {u: [] for u in users}
    for user in users[:4]:
        first = await notify(harness, user, "read one")
        await harness.api("POST", f"/api/users/{user}/notifications/read", {"ids": [first["id"]]})
        for k in range(2):
            unread[user].append((await notify(harness, user, f"missed {k}"))["id"])

    async def open_one(user: str) -> tuple[ClientConnection, dict[str, Any]]:
        ws = await harness.connect(f"?token={token(user)}").__aenter__()
        return ws, await recv(ws)

    opened = await asyncio.gather(*(open_one(u) for u in users))
    try:
        for user, (ws, welcome) in zip(users, opened, strict=True):
            assert welcome["type"] == "welcome"
            assert welcome["data"]["unreadCount"] == len(unread[user]), user
            caught_up = await before_inbox_reply(ws)
            assert [m["id"] for m in caught_up] == unread[user], user
            assert all(m["data"]["recovered"] for m in caught_up)
        for user, (ws, _) in zip(users, opened, strict=True):
            live = await notify(harness, user, "live")
            msg = await recv(ws)
            assert (msg["type"], msg["id"]) == ("notification", live["id"]), user
            assert await before_inbox_reply(ws) == []  # once, and nothing else
    finally:
        for ws, _ in opened:
            await ws.close()


async def test_a_notification_pushed_during_the_count_follows_the_welcome(
    harness: Harness,
) -> None:
    """The count says 0, but a notification committed just after it was read was pushed
    while the welcome was being prepared: it was held, and it follows the welcome (a
    connection with nothing to catch up still sends what it held)."""
    inbox = harness.server.inbox
    assert inbox is not None
    store = inbox.store
    real_count = store.unread_count
    created: list[dict[str, Any]] = []

    async def count_then_create(user_id: str, *, now: float) -> int:
        count = await real_count(user_id, now=now)
        if user_id == "late":
            created.append(await notify(harness, "late", "just after the count"))
        return count

    store.unread_count = count_then_create  # type: ignore[method-assign]
    async with harness.connect(f"?token={token('late')}") as ws:
        welcome = await recv(ws)
        assert (welcome["type"], welcome["data"]["unreadCount"]) == ("welcome", 0)
        msg = await recv(ws)
        assert (msg["type"], msg["id"]) == ("notification", created[0]["id"])
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
