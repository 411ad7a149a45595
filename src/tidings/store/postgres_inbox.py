"""The notification inbox on PostgreSQL (reads, state changes, preferences, webhooks,
retention), mixed into ``PostgresStore``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import (
    Notification,
)
from .postgres_create import MARK, _in_app_off
from .records import from_row, page_query
from .schema import COLUMNS
from .unread import UnreadCounts, by_now


def _live(now: str) -> str:
    """The condition for live (unarchived, unexpired) rows; ``now`` is a placeholder."""
    return f"archived_at IS NULL AND in_app <> 0 AND (expires_at IS NULL OR expires_at > {now})"


class PostgresInbox:
    """Inbox methods of ``Store``; ``PostgresStore`` supplies ``_db`` (the pool)."""

    # Unread counts read together (``unread.py``), made by ``PostgresStore``.
    _unread: UnreadCounts

    def _db(self) -> Any:
        raise NotImplementedError  # pragma: no cover - PostgresStore's own

    # --- reads ----------------------------------------------------------------------------

    async def get(self, user_id: str, notification_id: str) -> Notification | None:
        row = await self._db().fetchrow(
            f"SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND id = $2",
            user_id,
            notification_id,
        )
        return None if row is None else from_row(row)

    async def page(
        self,
        user_id: str,
        *,
        unread_only: bool = False,
        include_archived: bool = False,
        archived_only: bool = False,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> list[Notification]:
        sql, args = page_query(
            lambda n: f"${n}",
            user_id,
            unread_only=unread_only,
            include_archived=include_archived,
            archived_only=archived_only,
            before_seq=before_seq,
            limit=limit,
        )
        return [from_row(r) for r in await self._db().fetch(sql, *args)]

    async def _live_after(
        self, user_id: str, after_seq: int, now: float, limit: int, extra: str = ""
    ) -> list[Notification]:
        """Live rows of a user after ``after_seq``, oldest first, with an extra condition."""
        sql = (
            f"SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND seq > $2 {extra} "
            f"AND {_live('$3')} ORDER BY seq LIMIT $4"
        )
        return [from_row(r) for r in await self._db().fetch(sql, user_id, after_seq, now, limit)]

    async def since(
        self, user_id: str, after_seq: int, *, now: float, limit: int = 500
    ) -> list[Notification]:
        return await self._live_after(user_id, after_seq, now, limit)

    async def unacked(
        self, user_id: str, *, now: float, after_seq: int = 0, limit: int = 500
    ) -> list[Notification]:
        return await self._live_after(user_id, after_seq, now, limit, "AND acked_at IS NULL")

    async def unread(
        self, user_id: str, *, now: float, after_seq: int = 0, limit: int = 500
    ) -> list[Notification]:
        return await self._live_after(user_id, after_seq, now, limit, "AND read_at IS NULL")

    async def preferences(self, user_id: str) -> dict[str, bool]:
        rows = await self._db().fetch(
            "SELECT category, in_app FROM preferences WHERE user_id = $1 "
            'ORDER BY category COLLATE "C"',
            user_id,
        )
        return {r[0]: bool(r[1]) for r in rows}

    async def set_preferences(self, user_id: str, in_app: Mapping[str, bool]) -> None:
        async with self._db().acquire() as conn, conn.transaction():
            # Lock the user's row first, as remember_user does, so two instances replacing
            # the same user's switches queue instead of colliding on the primary key.
            await conn.execute(
                "INSERT INTO inbox_users (user_id) VALUES ($1) ON CONFLICT (user_id) "
                "DO UPDATE SET last_seq = inbox_users.last_seq",
                user_id,
            )
            await conn.execute("DELETE FROM preferences WHERE user_id = $1", user_id)
            await conn.executemany(
                "INSERT INTO preferences (user_id, category, in_app) VALUES ($1, $2, $3)",
                [(user_id, cat, int(on)) for cat, on in in_app.items()],
            )

    async def in_app_disabled(self, user_ids: Sequence[str], category: str | None) -> set[str]:
        async with self._db().acquire() as conn:
            return await _in_app_off(conn, list(dict.fromkeys(user_ids)), category)

    async def webhook_due(
        self, *, created_before: float, now: float, limit: int, lease: float = 0.0
    ) -> list[tuple[Notification, int]]:
        due = (
            "acked_at IS NULL AND read_at IS NULL AND "
            "webhook_state IS NULL AND created_at <= $1 AND "
            f"(webhook_next_at IS NULL OR webhook_next_at <= $2) AND {_live('$2')}"
        )
        if lease <= 0:
            sql = (
                f"SELECT {COLUMNS}, webhook_attempts FROM notifications WHERE {due} "
                "ORDER BY created_at LIMIT $3"
            )
            rows = await self._db().fetch(sql, created_before, now, limit)
        else:
            # SKIP LOCKED: instances claiming at the same moment take disjoint rows.
            returning = ", ".join(f"n.{c.strip()}" for c in COLUMNS.split(","))
            sql = (
                "UPDATE notifications AS n SET webhook_next_at = $4 FROM ("
                f"SELECT user_id, id FROM notifications WHERE {due} "
                "ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED) AS d "
                f"WHERE n.user_id = d.user_id AND n.id = d.id "
                f"RETURNING {returning}, n.webhook_attempts"
            )
            rows = await self._db().fetch(sql, created_before, now, limit, now + lease)
        out = [(from_row(r), int(r[-1])) for r in rows]
        out.sort(key=lambda item: item[0].created_at)
        return out

    async def webhook_result(
        self, user_id: str, notification_id: str, *, sent: bool, next_at: float | None
    ) -> None:
        db = self._db()
        if sent or next_at is None:
            await db.execute(
                "UPDATE notifications SET webhook_state = $3, "
                "webhook_attempts = webhook_attempts + 1 WHERE user_id = $1 AND id = $2",
                user_id,
                notification_id,
                "sent" if sent else "failed",
            )
        else:
            await db.execute(
                "UPDATE notifications SET webhook_next_at = $3, "
                "webhook_attempts = webhook_attempts + 1 WHERE user_id = $1 AND id = $2",
                user_id,
                notification_id,
                next_at,
            )

    async def unread_count(self, user_id: str, *, now: float) -> int:
        # Batched with the counts asked for meanwhile (every opening connection asks).
        return await self._unread.count(user_id, now)

    async def _count_unread(self, asks: list[tuple[str, float]]) -> list[int]:
        """The live, unread notifications of each ``(user_id, now)``, in the order asked:
        one query per distinct ``now`` (per 500 users)."""
        sql = (
            "SELECT user_id, COUNT(*) FROM notifications WHERE user_id = ANY($1::text[]) "
            f"AND read_at IS NULL AND {_live('$2')} GROUP BY user_id"
        )
        counts: dict[tuple[str, float], int] = {}
        for now, chunk in by_now(asks):
            for user_id, n in await self._db().fetch(sql, chunk, now):
                counts[user_id, now] = int(n)
        # A user with no row in the result has none.
        return [counts.get(ask, 0) for ask in asks]

    async def backlog(self, *, now: float) -> tuple[int, int]:
        sql = (
            "SELECT COUNT(*) FILTER (WHERE acked_at IS NULL), "
            "COUNT(*) FILTER (WHERE delivered_at IS NULL) "
            f"FROM notifications WHERE {_live('$1')}"
        )
        row = await self._db().fetchrow(sql, now)
        assert row is not None
        return int(row[0]), int(row[1])

    # The database's default collation may not be bytewise; "C" sorts as SQLite does.
    async def users_with_role(self, role: str) -> list[str]:
        sql = (
            "SELECT user_id FROM (SELECT user_id FROM user_roles WHERE role = $1 "
            "UNION SELECT user_id FROM directory_roles WHERE role = $1) u "
            'ORDER BY user_id COLLATE "C"'
        )
        return [r[0] for r in await self._db().fetch(sql, role)]

    async def all_users(self) -> list[str]:
        sql = (
            "SELECT user_id FROM (SELECT user_id FROM inbox_users WHERE seen_at IS NOT NULL "
            "UNION SELECT user_id FROM directory_users) u "
            'ORDER BY user_id COLLATE "C"'
        )
        return [r[0] for r in await self._db().fetch(sql)]

    # --- state changes --------------------------------------------------------------------

    async def _set_where_null(
        self, column: str, user_id: str, ids: Sequence[str] | None, now: float
    ) -> list[str]:
        if ids is not None and not ids:
            return []
        args: list[Any] = [now, user_id]
        where = f"user_id = $2 AND {column} IS NULL"
        if ids is not None:
            args.append(list(ids))
            where += " AND id = ANY($3::text[])"
        # RETURNING comes in scan order (by id for an index scan): give the ids oldest first.
        sql = (
            f"WITH changed AS (UPDATE notifications SET {column} = $1 WHERE {where} "
            "RETURNING id, seq) SELECT id FROM changed ORDER BY seq"
        )
        return [r[0] for r in await self._db().fetch(sql, *args)]

    async def ack(self, user_id: str, ids: Sequence[str], *, now: float) -> list[str]:
        return await self._set_where_null("acked_at", user_id, list(ids), now)

    async def mark_read(self, user_id: str, ids: Sequence[str] | None, *, now: float) -> list[str]:
        return await self._set_where_null(
            "read_at", user_id, None if ids is None else list(ids), now
        )

    async def archive(self, user_id: str, ids: Sequence[str], *, now: float) -> list[str]:
        return await self._set_where_null("archived_at", user_id, list(ids), now)

    async def unarchive(self, user_id: str, ids: Sequence[str]) -> list[str]:
        ids = list(ids)
        if not ids:
            return []
        sql = (
            "WITH changed AS (UPDATE notifications SET archived_at = NULL WHERE user_id = $1 "
            "AND archived_at IS NOT NULL AND id = ANY($2::text[]) RETURNING id, seq) "
            "SELECT id FROM changed ORDER BY seq"
        )
        return [r[0] for r in await self._db().fetch(sql, user_id, ids)]

    async def mark_delivered(self, deliveries: Mapping[str, Sequence[str]], *, now: float) -> None:
        users = [u for u, ids in deliveries.items() for _ in ids]
        ids = [nid for group in deliveries.values() for nid in group]
        if not ids:
            return
        # One statement for a whole batch of pushes: the pairs arrive as two arrays.
        await self._db().execute(MARK, now, users, ids)

    async def delete(self, user_id: str, ids: Sequence[str]) -> list[str]:
        ids = list(ids)
        if not ids:
            return []
        sql = (
            "WITH gone AS (DELETE FROM notifications WHERE user_id = $1 "
            "AND id = ANY($2::text[]) RETURNING id, seq) SELECT id FROM gone ORDER BY seq"
        )
        return [r[0] for r in await self._db().fetch(sql, user_id, ids)]

    async def purge(self, *, created_before: float, now: float, limit: int) -> int:
        async with self._db().acquire() as conn, conn.transaction():
            # SKIP LOCKED: purges running in several instances take different rows instead
            # of queueing behind each other; a skipped row goes in a later round.
            deleted = await conn.fetchval(
                "WITH gone AS (DELETE FROM notifications WHERE id IN (SELECT id FROM "
                "notifications WHERE created_at < $1 OR (expires_at IS NOT NULL AND "
                "expires_at <= $2) LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING 1) "
                "SELECT COUNT(*) FROM gone",
                created_before,
                now,
                limit,
            )
            # A key and its rows share created_at, so a key older than every remaining row
            # has none left. This keeps the keys of old rows a bounded round left behind:
            # keys live at least as long as their rows.
            await conn.execute(
                "DELETE FROM idempotency WHERE created_at < $1 AND created_at < "
                "COALESCE((SELECT MIN(created_at) FROM notifications), $1)",
                created_before,
            )
            return int(deleted)
