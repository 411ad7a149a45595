"""Schema settings one dialect has and the other does not."""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

import asyncpg

from tidings.backends import open_store
from tidings.store.schema import LATEST

PG_URL = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def test_postgres_notifications_keep_room_for_their_delivery_marks() -> None:
    """PostgreSQL fills notification pages to 80 %: the mark that follows every insert
    can then stay on the row's page (a HOT update, no index written)."""
    schema = "t_" + secrets.token_hex(6)
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        s = open_store(f"{PG_URL}?search_path={schema}")
        await s.open()
        await s.close()
        options = await admin.fetchval(
            "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = 'notifications'",
            schema,
        )
        assert options == ["fillfactor=80"]
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def test_sqlite_skips_what_only_postgres_has(tmp_path: Path) -> None:
    """SQLite has no fillfactor: it records every migration, running what it can."""
    path = tmp_path / "inbox.db"
    s = open_store(str(path))
    await s.open()
    await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT MAX(version) FROM tidings_schema").fetchone()[0] == LATEST


async def test_postgres_statements_are_planned_for_the_table_as_it_is_now() -> None:
    """The store's connections plan each execution afresh (plan_cache_mode =
    force_custom_plan). A long-lived pooled connection otherwise keeps the generic plan
    PostgreSQL picks after five executions: picked while a new table was nearly empty,
    the delivery mark stayed a hash join over a sequential scan of every notification as
    the table grew (the benchmark's creates slowed from 5,200/s to 3,300/s within 6 s,
    the database spending 152 µs per notification instead of 67)."""
    from tidings.store.postgres_create import MARK

    schema = "t_" + secrets.token_hex(6)
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        s = open_store(f"{PG_URL}?search_path={schema}")
        await s.open()
        try:
            async with s._db().acquire() as c:  # type: ignore[attr-defined]
                await c.execute(f"PREPARE mark(double precision, text[], text[]) AS {MARK}")
                for _ in range(8):  # past the five custom plans before a generic one
                    await c.execute("EXECUTE mark(1, ARRAY['u'], ARRAY['x'])")
                await c.execute(
                    "INSERT INTO notifications (id, user_id, seq, type, priority, created_at, "
                    "attempts, webhook_attempts, in_app) SELECT 'n' || g, 'u' || (g % 50), g, "
                    "'t', 'NORMAL', 0, 0, 0, 1 FROM generate_series(1, 30000) g"
                )
                plan = "\n".join(
                    r[0] for r in await c.fetch("EXPLAIN EXECUTE mark(1, ARRAY['u1'], ARRAY['n1'])")
                )
                await c.execute("DEALLOCATE mark")
        finally:
            await s.close()
        assert "Index Scan" in plan, plan
        assert "Seq Scan on notifications" not in plan, plan
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
