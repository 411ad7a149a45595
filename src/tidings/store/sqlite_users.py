"""The user directory on SQLite (``UserStore``), mixed into ``SQLiteStore``.

Every write is one ``BEGIN IMMEDIATE`` transaction on the store's single writer thread, so
a record and its roles change together and a bulk import is all or nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

from . import users as q
from .users import Erased, UserRecord

T = TypeVar("T")


def _tx(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _put(c: sqlite3.Connection, user: UserRecord, now: float) -> bool:
    new = c.execute(q.USER_EXISTS, (user.id,)).fetchone() is None
    c.execute(q.UPSERT_USER, q.user_params(user, now))
    c.execute(q.DELETE_ROLES, (user.id,))
    c.executemany(q.INSERT_ROLE, [(user.id, r) for r in dict.fromkeys(user.roles)])
    return new


def _get(c: sqlite3.Connection, user_id: str) -> UserRecord | None:
    row = c.execute(q.GET_USER, (user_id,)).fetchone()
    if row is None:
        return None
    return q.user_from(row, [r[0] for r in c.execute(q.ROLES_OF, (user_id,))])


class SQLiteUsers:
    """``UserStore`` methods; ``SQLiteStore`` supplies ``_read`` and ``_write``."""

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - SQLiteStore's own

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - SQLiteStore's own

    async def put_user(self, user: UserRecord, *, now: float) -> bool:
        return await self._write(lambda c: _tx(c, lambda c: _put(c, user, now)))

    async def put_users(self, users: Sequence[UserRecord], *, now: float) -> int:
        return await self._write(lambda c: _tx(c, lambda c: sum(_put(c, u, now) for u in users)))

    async def get_user(self, user_id: str) -> UserRecord | None:
        return await self._read(lambda c: _get(c, user_id))

    async def list_users(
        self, *, after: str | None, limit: int, role: str | None = None
    ) -> list[UserRecord]:
        sql = q.list_sql(after=after is not None, role=role is not None)
        params = [p for p in (after, role) if p is not None] + [limit]

        def run(c: sqlite3.Connection) -> list[UserRecord]:
            rows = c.execute(sql, params).fetchall()
            return [q.user_from(r, [x[0] for x in c.execute(q.ROLES_OF, (r[0],))]) for r in rows]

        return await self._read(run)

    async def erase_user(self, user_id: str) -> Erased:
        def run(c: sqlite3.Connection) -> Erased:
            counts: dict[str, int] = {}
            for name, sql in q.ERASE:
                params = (user_id,) * sql.count("?")
                changed = c.execute(sql, params).rowcount
                if name:
                    counts[name] = changed
            kept = int(c.execute(q.COUNT_MESSAGES, (user_id,)).fetchone()[0])
            return Erased(
                profile=counts["profile"] > 0,
                notifications=counts["notifications"],
                preferences=counts["preferences"],
                room_memberships=counts["room_memberships"],
                blocks=counts["blocks"],
                kept_room_messages=kept,
            )

        return await self._write(lambda c: _tx(c, run))
