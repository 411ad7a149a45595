"""How the SQLite store's connections are set up."""

from __future__ import annotations

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
