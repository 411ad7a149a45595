"""One notification to a role or to everyone of 100,000 users: committed within 2 s on
SQLite, pushed to those online, every user's read state exact."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from tidings.store.sqlite import SQLiteStore

from ..conftest import ServerFactory, recv_type, request

USERS = 100_000
# Seconds, issue 14's target; scaled as the timeouts are on a busy machine (a quiet core
# takes about 1 s; beside six other test suites on two cores, 1.5 to 2.5 s).
BUDGET = 2.0 * float(os.environ.get("TIDINGS_TEST_TIMEOUT_SCALE", "1"))


def user(i: int) -> str:
    return f"u{i:06d}"


async def seed(store: SQLiteStore) -> None:
    """100,000 users who connected once; the even ones hold the role "staff"."""

    def run(c: sqlite3.Connection) -> None:
        c.execute("BEGIN IMMEDIATE")
        c.executemany(
            "INSERT INTO inbox_users (user_id, seen_at) VALUES (?, 1.0)",
            [(user(i),) for i in range(USERS)],
        )
        c.executemany(
            "INSERT INTO user_roles (user_id, role) VALUES (?, 'staff')",
            [(user(i),) for i in range(0, USERS, 2)],
        )
        c.execute("COMMIT")

    await store._write(run)


async def test_everyone_and_a_role_of_100000_users(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """`all` of 100,000 users is committed within 2 s (one row each, gapless seqs) and
    pushed to the online ones; then a role of 50,000; unread counts and mark_read stay
    exact per user."""
    h = await make_server(store_url=str(tmp_path / "fan.db"), store_timeout=10.0)
    inbox = h.server.inbox
    assert inbox is not None
    store = inbox.store
    assert isinstance(store, SQLiteStore)
    await seed(store)
    loop = asyncio.get_running_loop()
    async with h.client(user(0), ("staff",)) as staff, h.client(user(1)) as other:
        started = loop.time()
        created = await inbox.notify(all=True, title="All")  # returns once committed
        took = loop.time() - started
        print(f"\nall of {USERS:,} users: committed in {took:.2f} s")
        assert took < BUDGET
        everyone = created.notifications
        assert len(everyone) == USERS
        assert {n.seq for n in everyone} == {1}
        assert len({n.id for n in everyone}) == USERS
        for ws in (staff, other):
            pushed = await recv_type(ws, "notification")
            assert (pushed["data"]["title"], pushed["data"]["seq"]) == ("All", 1)

        started = loop.time()
        status, body = await h.api(
            "POST", "/api/notifications", {"role": "staff", "title": "Staff"}
        )
        took = loop.time() - started
        # Over HTTP: the answer lists every row (6 MB of JSON for 50,000), read and parsed.
        print(f"role of {USERS // 2:,} users over HTTP: 201 in {took:.2f} s")
        assert status == 201
        assert took < BUDGET
        assert len(body["notifications"]) == USERS // 2
        assert (await recv_type(staff, "notification"))["data"]["seq"] == 2
        # Read state, per user: one read on one user's side changes only theirs.
        reply = await request(staff, {"type": "mark_read", "ids": [everyone[0].id]})
        assert reply["data"]["unreadCount"] == 1
        assert (await request(other, {"type": "ping"}))["type"] == "pong"
    now = h.server.node.clock()
    assert await store.unread_count(user(0), now=now) == 1
    assert await store.unread_count(user(1), now=now) == 1  # not staff
    assert await store.unread_count(user(2), now=now) == 2
    assert await store.unread_count(user(USERS - 1), now=now) == 1
    assert [n.seq for n in await store.since(user(2), 0, now=now)] == [1, 2]
