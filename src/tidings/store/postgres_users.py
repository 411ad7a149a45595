"""The user directory on PostgreSQL (``UserStore``), mixed into ``PostgresStore``.

A record and its roles change in one transaction; a bulk import is one transaction, its
users taken in id order so that two imports of overlapping sets cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from . import users as q
from .rooms import dollar
from .users import Erased, UserRecord

# Bytewise order, as SQLite sorts: the database's default collation may not be.
_C: Final = ' COLLATE "C"'
_UPSERT: Final = dollar(q.UPSERT_USER) + " RETURNING (xmax = 0)"
_GET: Final = dollar(q.GET_USER)
_ROLES_OF: Final = dollar(q.ROLES_OF)
_DELETE_ROLES: Final = dollar(q.DELETE_ROLES)
_INSERT_ROLE: Final = dollar(q.INSERT_ROLE)
_ERASE: Final = tuple((name, dollar(sql)) for name, sql in q.ERASE)
_COUNT_MESSAGES: Final = dollar(q.COUNT_MESSAGES)


def _count(status: str) -> int:
    """The row count of a command tag (``DELETE 3``, ``UPDATE 1``)."""
    return int(status.rsplit(" ", 1)[-1])


async def _put(conn: Any, user: UserRecord, now: float) -> bool:
    new = bool(await conn.fetchval(_UPSERT, *q.user_params(user, now)))
    await conn.execute(_DELETE_ROLES, user.id)
    roles = list(dict.fromkeys(user.roles))
    if roles:
        await conn.executemany(_INSERT_ROLE, [(user.id, r) for r in roles])
    return new


class PostgresUsers:
    """``UserStore`` methods; ``PostgresStore`` supplies ``_db`` (the pool)."""

    def _db(self) -> Any:
        raise NotImplementedError  # pragma: no cover - PostgresStore's own

    async def put_user(self, user: UserRecord, *, now: float) -> bool:
        async with self._db().acquire() as conn, conn.transaction():
            return await _put(conn, user, now)

    async def put_users(self, users: Sequence[UserRecord], *, now: float) -> int:
        async with self._db().acquire() as conn, conn.transaction():
            created = 0
            for user in sorted(users, key=lambda u: u.id.encode()):
                created += await _put(conn, user, now)
            return created

    async def get_user(self, user_id: str) -> UserRecord | None:
        async with self._db().acquire() as conn:
            row = await conn.fetchrow(_GET, user_id)
            if row is None:
                return None
            return q.user_from(row, [r[0] for r in await conn.fetch(_ROLES_OF, user_id)])

    async def list_users(
        self, *, after: str | None, limit: int, role: str | None = None
    ) -> list[UserRecord]:
        sql = dollar(q.list_sql(after=after is not None, role=role is not None, collate=_C))
        params = [p for p in (after, role) if p is not None] + [limit]
        async with self._db().acquire() as conn:
            rows = await conn.fetch(sql, *params)
            return [q.user_from(r, [x[0] for x in await conn.fetch(_ROLES_OF, r[0])]) for r in rows]

    async def erase_user(self, user_id: str) -> Erased:
        async with self._db().acquire() as conn, conn.transaction():
            counts: dict[str, int] = {}
            for name, sql in _ERASE:
                changed = _count(await conn.execute(sql, *(user_id,) * sql.count("$")))
                if name:
                    counts[name] = changed
            kept = int(await conn.fetchval(_COUNT_MESSAGES, user_id))
        return Erased(
            profile=counts["profile"] > 0,
            notifications=counts["notifications"],
            preferences=counts["preferences"],
            room_memberships=counts["room_memberships"],
            blocks=counts["blocks"],
            kept_room_messages=kept,
        )
