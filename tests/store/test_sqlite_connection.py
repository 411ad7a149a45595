"""How the SQLite store's connections are set up."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tidings.store.sqlite import SQLiteStore


async def test_statement_journals_and_temp_tables_stay_in_memory(tmp_path: Path) -> None:
    """Both connections keep temp data in memory: a group commit then opens no temp file
    (a statement journal) of its own, which cost system calls in every commit."""
    s = SQLiteStore(str(tmp_path / "inbox.db"))
    await s.open()
    try:
        pragma = "PRAGMA temp_store"
        assert await s._write(lambda c: c.execute(pragma).fetchone()[0]) == 2  # MEMORY
        assert await s._read(lambda c: c.execute(pragma).fetchone()[0]) == 2
    finally:
        await s.close()


async def test_none_binds_as_null_without_the_adaptation_protocol(tmp_path: Path) -> None:
    """sqlite3 sends a None parameter through its adaptation protocol (two failed
    attribute lookups, each building an AttributeError) unless an adapter is registered
    for it: the store registers one, and None still binds as NULL."""
    assert sqlite3.adapters.get((type(None), sqlite3.PrepareProtocol)) is not None
    s = SQLiteStore(str(tmp_path / "inbox.db"))
    await s.open()
    try:
        sql = "SELECT typeof(?), ? IS NULL"
        assert await s._write(lambda c: c.execute(sql, (None, None)).fetchone()) == ("null", 1)
    finally:
        await s.close()
