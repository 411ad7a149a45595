"""A store that stalls (a lock held by another connection): requests that need it fail
503 with Retry-After after ``store_timeout``, and connections keep being served."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ..conftest import API_KEY, Harness, ServerFactory, recv, token
from ..processes import pg_schema
from ..security import assert_no_error_logged, assert_still_serving

STALL = 0.5  # store_timeout in these tests


async def create_timed(h: Harness, user: str) -> tuple[int, str | None, float]:
    """POST a notification: (status, Retry-After, seconds taken)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with h.http.post(
        h.url + "/api/notifications",
        json={"userId": user, "title": "stalled"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as r:
        await r.read()
        return r.status, r.headers.get("Retry-After"), loop.time() - started


async def replies(ws: Any, ids: set[str]) -> list[dict[str, Any]]:
    """Messages up to the replies to every one of ``ids``, in arrival order."""
    got: list[dict[str, Any]] = []
    waiting = set(ids)
    while waiting:
        msg = await recv(ws)
        got.append(msg)
        waiting.discard(msg.get("replyTo", ""))
    return got


async def live_while_stalled(h: Harness, ws: Any, store_command: dict[str, Any]) -> None:
    """A store-bound command, then ping, subscribe and publish on the same connection:
    the others are answered first; the store-bound one gets UNAVAILABLE."""
    await ws.send(json.dumps({"id": "store", **store_command}))
    await ws.send(json.dumps({"id": "p", "type": "ping"}))
    await ws.send(json.dumps({"id": "s", "type": "subscribe", "channel": "live"}))
    await ws.send(json.dumps({"id": "u", "type": "publish", "channel": "live", "data": 1}))
    got = await replies(ws, {"store", "p", "s", "u"})
    order = [m.get("replyTo") for m in got if m.get("replyTo")]
    assert order[-1] == "store", order  # everything else was answered during the stall
    assert order[:3] == ["p", "s", "u"], order  # in the order sent
    last = got[-1]
    assert (last["type"], last["data"]["code"]) == ("error", "UNAVAILABLE")


@asynccontextmanager
async def sqlite_locked(path: Path) -> AsyncIterator[None]:
    """Another connection holds the file's write lock (BEGIN EXCLUSIVE) meanwhile."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_sqlite_lock_is_503_fast_and_connections_serve(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """SQLite locked by another connection past store_timeout: a create answers 503 with
    Retry-After after about store_timeout (not SQLite's 30 s), a new connection is
    welcomed, and ping/subscribe/publish are answered while its mark_read waits."""
    db = tmp_path / "locked.db"
    h = await make_server(store_url=str(db), store_timeout=STALL)
    async with h.client("ann") as ws, sqlite_locked(db):
        status, retry, took = await create_timed(h, "ann")
        print(f"SQLite locked: create answered {status} in {took:.2f} s")
        assert (status, retry) == (503, "1")
        assert took < STALL + 1.5
        async with h.client("bob") as other:  # welcomed during the stall (WAL reads)
            assert (await recv_ping(other))["type"] == "pong"
        await live_while_stalled(h, ws, {"type": "mark_read", "all": True})
    status, _, _ = await create_timed(h, "ann")
    assert status == 201
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


async def recv_ping(ws: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"id": "ping", "type": "ping"}))
    return await recv(ws)


async def test_postgres_lock_table_is_503_fast_and_connections_serve(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL's notifications table locked (LOCK TABLE, reads blocked too): creates
    answer 503 after about store_timeout, a new connection opens with the inbox said
    unavailable, and a connection's other messages are answered during the stall."""
    import asyncpg

    async with pg_schema() as url:
        h = await make_server(store_url=url, store_timeout=STALL)
        locker = await asyncpg.connect(url)
        try:
            async with h.client("ann") as ws:
                tx = locker.transaction()
                await tx.start()
                await locker.execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
                try:
                    status, retry, took = await create_timed(h, "ann")
                    print(f"PostgreSQL locked: create answered {status} in {took:.2f} s")
                    assert (status, retry) == (503, "1")
                    assert took < STALL + 1.5
                    async with h.connect(f"?token={token('bob')}") as other:
                        welcome = await recv(other)
                        assert welcome["type"] == "welcome"
                        assert welcome["data"]["inboxAvailable"] is False
                        assert (await recv_ping(other))["type"] == "pong"
                    await live_while_stalled(h, ws, {"type": "get_notifications"})
                finally:
                    await tx.rollback()
            status, _, _ = await create_timed(h, "ann")
            assert status == 201
            await assert_still_serving(h)
        finally:
            await locker.close()
    assert_no_error_logged(caplog)
