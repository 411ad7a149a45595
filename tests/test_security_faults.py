"""A failing store: a full disk and a store that cannot be read. Requests that need it get
507/503 with Retry-After (never 500), and connections still open and serve live traffic."""

from __future__ import annotations

import asyncio
import errno
import signal
import sqlite3
from pathlib import Path

import pytest

from tidings.store import StoreError, failure_status
from tidings.store.sqlite import SQLiteStore

from .conftest import TIMEOUT, Harness, ServerFactory, recv, request, token
from .processes import PrivateRedis
from .security import assert_no_error_logged, assert_still_serving


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (StoreError("commit failed: database or disk is full"), 507),
        (sqlite3.OperationalError("database or disk is full"), 507),
        (OSError(errno.ENOSPC, "No space left on device"), 507),
        (sqlite3.OperationalError("database is locked"), 503),
        (StoreError("store is not open"), 503),
        (ConnectionRefusedError(), 503),
        (TimeoutError(), 503),
        (ValueError("a bug"), None),
        (KeyError("a bug"), None),
    ],
)
def test_failure_status(exc: BaseException, status: int | None) -> None:
    """Store failures map to 507 (disk full) or 503; anything else stays a bug (None)."""
    assert failure_status(exc) == status


def sqlite_of(h: Harness) -> SQLiteStore:
    inbox = h.server.inbox
    assert inbox is not None
    store = inbox.store
    assert isinstance(store, SQLiteStore)
    return store


async def fill_the_disk(store: SQLiteStore) -> None:
    """SQLite's own 'database or disk is full': the file may not grow by one page."""

    def cap(conn: sqlite3.Connection) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await store._write(cap)


async def test_full_disk_is_507_and_connections_still_open(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """With the store's disk full, creates get 507 with Retry-After (never 500, nothing
    half-stored), and a new user's connection (whose first store write fails) still opens,
    is welcomed with its count, and receives live messages."""
    h = await make_server(store_url=str(tmp_path / "full.db"))
    await fill_the_disk(sqlite_of(h))
    statuses = set()
    for n in range(300):  # free space in the last pages goes first; bounded
        status, body = await h.api(
            "POST", "/api/notifications", {"userId": "ann", "title": f"n{n}"}
        )
        statuses.add(status)
        if status == 507:
            assert body["error"]["code"] == "INSUFFICIENT_STORAGE"
            break
    assert statuses <= {201, 507}, statuses
    assert 507 in statuses
    # Now no write at all succeeds (a small one could still fit in a free page).
    await sqlite_of(h)._write(lambda c: c.execute("PRAGMA query_only = ON"))
    errors = h.server.node.metrics.store_errors
    async with h.client("newcomer") as ws:  # remember_user cannot be written
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        status, _ = await h.api("POST", "/api/users/newcomer/send", {"type": "live", "data": 1})
        assert status == 200
        assert (await recv(ws))["type"] == "live"
    # The user record is written beside the connection's messages: wait for it to fail.
    assert h.server.inbox is not None
    await h.server.inbox.settled()
    assert h.server.node.metrics.store_errors == errors + 1  # remember_user's write
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


async def test_store_unreadable_opens_with_inbox_unavailable(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """With the store gone, a connection opens (welcome says inboxAvailable: false),
    inbox commands get UNAVAILABLE, API reads get 503 with Retry-After."""
    h = await make_server(store_url=str(tmp_path / "gone.db"))
    await sqlite_of(h).close()
    async with h.connect(f"?token={token('ann')}") as ws:
        welcome = await recv(ws)
        assert welcome["type"] == "welcome"
        assert welcome["data"]["inboxAvailable"] is False
        assert "unreadCount" not in welcome["data"]
        reply = await request(ws, {"type": "get_notifications"})
        assert (reply["type"], reply["data"]["code"]) == ("error", "UNAVAILABLE")
    status, body = await h.api("GET", "/api/users/ann/notifications")
    assert status == 503
    assert body["error"]["code"] == "UNAVAILABLE"
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


async def test_hung_redis_is_unhealthy_within_two_heartbeats(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A Redis that hangs with its socket open (SIGSTOP): /health says unhealthy within two
    heartbeats, publications fail 503 within the command deadline instead of hanging, and
    once Redis runs again the link comes back and the server serves."""
    redis = PrivateRedis(tmp_path)
    await redis.start()
    try:
        heartbeat = 0.5
        h = await make_server(
            broker_url=redis.url, cluster_heartbeat=heartbeat, redis_command_timeout=0.5
        )
        broker = h.server.node.broker
        assert broker is not None
        await broker.wait_until(lambda: broker.healthy)
        assert redis.proc is not None
        loop = asyncio.get_running_loop()
        redis.proc.send_signal(signal.SIGSTOP)
        stopped = loop.time()
        try:
            status, _ = await h.api("POST", "/api/publish", {"channel": "c", "data": 1})
            first_503 = loop.time() - stopped
            assert status == 503
            async with asyncio.timeout(TIMEOUT):
                await broker.wait_until(lambda: not broker.healthy)
            unhealthy = loop.time() - stopped
            _, health = await h.api("GET", "/health")
            assert health["data"]["pubsub"]["isHealthy"] is False
            print(
                f"hung Redis: /health unhealthy after {unhealthy:.2f} s "
                f"(heartbeat {heartbeat} s), first 503 after {first_503:.2f} s"
            )
            assert unhealthy <= 2 * heartbeat + 1.5
            assert first_503 <= 0.5 + 1.5
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        async with asyncio.timeout(TIMEOUT):
            await broker.wait_until(lambda: broker.healthy)
        await assert_still_serving(h)
    finally:
        await redis.stop()
    assert_no_error_logged(caplog)
