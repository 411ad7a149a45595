"""SQLite records the users of a batch set-wise: each one's last call is what is kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tidings.store.sqlite import SQLiteStore

NOW = 1_800_000_000.0


async def test_a_mixed_batch_after_restart_records_each_user_as_last_asked(
    tmp_path: Path,
) -> None:
    """After a restart (nothing cached), one batch brings unchanged users, changed roles,
    roles dropped to none, new users with and without roles, and one user twice: one
    transaction, each user ends up with the roles of their last call, and the same calls
    after another restart write nothing."""
    path = str(tmp_path / "inbox.db")
    s = SQLiteStore(path)
    await s.open()
    await asyncio.gather(*(s.remember_user(f"old{i}", ["A", "B"], now=NOW) for i in range(600)))
    await s.close()
    s = SQLiteStore(path)
    await s.open()
    try:
        calls = [(f"old{i}", ["B", "A"]) for i in range(600)]  # unchanged, beyond one chunk
        calls[3] = ("old3", ["A"])  # one role dropped
        calls[4] = ("old4", [])  # every role dropped
        calls += [("new1", ["C"]), ("new2", []), ("twice", ["X"]), ("twice", ["Y", "Y"])]
        await asyncio.gather(*(s.remember_user(u, roles, now=NOW + 1) for u, roles in calls))
        assert s.user_commits == 1
        assert await s.users_with_role("A") == sorted(f"old{i}" for i in range(600) if i != 4)
        assert await s.users_with_role("B") == sorted(
            f"old{i}" for i in range(600) if i not in (3, 4)
        )
        assert await s.users_with_role("C") == ["new1"]
        assert await s.users_with_role("X") == []
        assert await s.users_with_role("Y") == ["twice"]
        known = await s.all_users()
        assert {"old4", "new1", "new2", "twice"} <= set(known)
        assert len(known) == 603
    finally:
        await s.close()
    # Restarted again, the same calls find every user recorded as asked, past the first
    # query's chunk too: nothing to write.
    s = SQLiteStore(path)
    await s.open()
    try:
        await asyncio.gather(*(s.remember_user(u, roles, now=NOW + 2) for u, roles in calls))
        assert s.user_commits == 0
    finally:
        await s.close()


async def test_user_records_commit_unsynced_and_leave_creates_synced(tmp_path: Path) -> None:
    """A batch of user records commits with synchronous=NORMAL (no fsync of its own; the
    next create's synced commit covers it) and puts FULL back, also when it fails: a create
    after it is synced as before, and the records survive a restart."""
    import sqlite3

    path = str(tmp_path / "inbox.db")
    s = SQLiteStore(path)
    await s.open()
    statements: list[str] = []

    def trace(c: sqlite3.Connection) -> None:
        c.set_trace_callback(statements.append)

    def untrace(c: sqlite3.Connection) -> None:
        c.set_trace_callback(None)

    def synchronous(c: sqlite3.Connection) -> int:
        return int(c.execute("PRAGMA synchronous").fetchone()[0])

    try:
        await s._write(trace)  # type: ignore[attr-defined]
        await asyncio.gather(*(s.remember_user(f"u{i}", ["A"], now=NOW) for i in range(50)))
        await s._write(untrace)  # type: ignore[attr-defined]
        commit = statements.index("COMMIT")
        assert "PRAGMA synchronous=NORMAL" in statements[:commit]
        assert "PRAGMA synchronous=FULL" in statements[commit:]
        assert await s._write(synchronous) == 2  # type: ignore[attr-defined]
        # A failing batch rolls back and still puts FULL back.
        await s._write(  # type: ignore[attr-defined]
            lambda c: c.execute(
                "CREATE TRIGGER no_b BEFORE INSERT ON user_roles WHEN NEW.role = 'B' "
                "BEGIN SELECT RAISE(ABORT, 'no B'); END"
            )
        )
        failed = await asyncio.gather(s.remember_user("v", ["B"], now=NOW), return_exceptions=True)
        assert isinstance(failed[0], Exception)
        assert await s._write(synchronous) == 2  # type: ignore[attr-defined]
        assert "v" not in await s.all_users()
    finally:
        await s.close()
    s = SQLiteStore(path)
    await s.open()
    try:
        assert len(await s.users_with_role("A")) == 50
    finally:
        await s.close()
