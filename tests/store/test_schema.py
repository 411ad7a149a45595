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
