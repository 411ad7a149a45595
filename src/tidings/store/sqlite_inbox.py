"""The notification inbox on SQLite (reads, state changes, preferences, webhooks,
retention), mixed into ``SQLiteStore``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import (
    Notification,
)
from .records import from_row, page_query
from .schema import COLUMNS
from .sqlite_connection import _placeholders
from .sqlite_create import _in_app_off, _mark_alone
from .unread import by_now

if TYPE_CHECKING:
    from .unread import UnreadCounts

T = TypeVar("T")
_LIVE = "archived_at IS NULL AND in_app <> 0 AND (expires_at IS NULL OR expires_at > ?)"


def count_unread(c: sqlite3.Connection, asks: list[tuple[str, float]]) -> list[int]:
    """On SQLite: the live, unread notifications of each ``(user_id, now)``, in the order
    asked."""
    counts: dict[tuple[str, float], int] = {}
    for now, chunk in by_now(asks):
        sql = (
            f"SELECT user_id, COUNT(*) FROM notifications WHERE user_id IN "
            f"({_placeholders(len(chunk))}) AND read_at IS NULL AND {_LIVE} GROUP BY user_id"
        )
        for user_id, n in c.execute(sql, (*chunk, now)):
            counts[user_id, now] = int(n)
    # A user with no row in the result has none.
    return [counts.get(ask, 0) for ask in asks]


class SQLiteInbox:
    """Inbox methods of ``Store``; ``SQLiteStore`` supplies ``_read`` and ``_write``."""

    # Whether any preference row may exist; set_preferences turns it on.
    _has_preferences: bool
    # Unread counts read together (``unread.py``), made by ``SQLiteStore``.
    _unread: UnreadCounts

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - SQLiteStore's own

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - SQLiteStore's own

    # --- reads ----------------------------------------------------------------------------

    async def get(self, user_id: str, notification_id: str) -> Notification | None:
        def run(c: sqlite3.Connection) -> Notification | None:
            row = c.execute(
                f"SELECT {COLUMNS} FROM notifications WHERE user_id=? AND id=?",
                (user_id, notification_id),
            ).fetchone()
            return None if row is None else from_row(row)

        return await self._read(run)

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
            lambda n: "?",
            user_id,
            unread_only=unread_only,
            include_archived=include_archived,
            archived_only=archived_only,
            before_seq=before_seq,
            limit=limit,
        )
        return await self._read(lambda c: [from_row(r) for r in c.execute(sql, args)])

    async def _live_after(
        self, user_id: str, after_seq: int, now: float, limit: int, extra: str = ""
    ) -> list[Notification]:
        """Live rows of a user after ``after_seq``, oldest first, with an extra condition."""
        sql = (
            f"SELECT {COLUMNS} FROM notifications WHERE user_id=? AND seq > ? {extra} "
            f"AND {_LIVE} ORDER BY seq LIMIT ?"
        )
        args = (user_id, after_seq, now, limit)
        return await self._read(lambda c: [from_row(r) for r in c.execute(sql, args)])

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
        sql = "SELECT category, in_app FROM preferences WHERE user_id=? ORDER BY category"
        return await self._read(lambda c: {r[0]: bool(r[1]) for r in c.execute(sql, (user_id,))})

    async def set_preferences(self, user_id: str, in_app: Mapping[str, bool]) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute("DELETE FROM preferences WHERE user_id=?", (user_id,))
                c.executemany(
                    "INSERT INTO preferences (user_id, category, in_app) VALUES (?,?,?)",
                    [(user_id, cat, int(on)) for cat, on in in_app.items()],
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        await self._write(run)
        if in_app:
            self._has_preferences = True

    async def in_app_disabled(self, user_ids: Sequence[str], category: str | None) -> set[str]:
        users = list(dict.fromkeys(user_ids))
        if not users:
            return set()
        return await self._read(lambda c: _in_app_off(c, users, category))

    async def webhook_due(
        self, *, created_before: float, now: float, limit: int, lease: float = 0.0
    ) -> list[tuple[Notification, int]]:
        sql = (
            f"SELECT {COLUMNS}, webhook_attempts FROM notifications WHERE acked_at IS NULL AND "
            "read_at IS NULL AND "
            "webhook_state IS NULL AND created_at <= ? AND "
            f"(webhook_next_at IS NULL OR webhook_next_at <= ?) AND {_LIVE} "
            "ORDER BY created_at LIMIT ?"
        )
        args = (created_before, now, now, limit)
        if lease <= 0:
            return await self._read(
                lambda c: [(from_row(r), int(r[-1])) for r in c.execute(sql, args)]
            )

        def claim(c: sqlite3.Connection) -> list[tuple[Notification, int]]:
            # IMMEDIATE: another process on the same file waits rather than claims too.
            c.execute("BEGIN IMMEDIATE")
            try:
                rows = [(from_row(r), int(r[-1])) for r in c.execute(sql, args)]
                c.executemany(
                    "UPDATE notifications SET webhook_next_at=? WHERE user_id=? AND id=?",
                    [(now + lease, n.user_id, n.id) for n, _ in rows],
                )
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return rows

        return await self._write(claim)

    async def webhook_result(
        self, user_id: str, notification_id: str, *, sent: bool, next_at: float | None
    ) -> None:
        args: list[Any]
        if sent:
            sql, args = (
                "UPDATE notifications SET webhook_state='sent', "
                "webhook_attempts = webhook_attempts + 1 WHERE user_id=? AND id=?",
                [user_id, notification_id],
            )
        elif next_at is None:
            sql, args = (
                "UPDATE notifications SET webhook_state='failed', "
                "webhook_attempts = webhook_attempts + 1 WHERE user_id=? AND id=?",
                [user_id, notification_id],
            )
        else:
            sql, args = (
                "UPDATE notifications SET webhook_next_at=?, "
                "webhook_attempts = webhook_attempts + 1 WHERE user_id=? AND id=?",
                [next_at, user_id, notification_id],
            )
        await self._write(lambda c: c.execute(sql, args))

    async def unread_count(self, user_id: str, *, now: float) -> int:
        # Batched with the counts asked for meanwhile (every opening connection asks).
        return await self._unread.count(user_id, now)

    async def backlog(self, *, now: float) -> tuple[int, int]:
        sql = (
            "SELECT COUNT(*) FILTER (WHERE acked_at IS NULL), "
            f"COUNT(*) FILTER (WHERE delivered_at IS NULL) FROM notifications WHERE {_LIVE}"
        )

        def run(c: sqlite3.Connection) -> tuple[int, int]:
            unacked, undelivered = c.execute(sql, (now,)).fetchone()
            return int(unacked or 0), int(undelivered or 0)

        return await self._read(run)

    async def users_with_role(self, role: str) -> list[str]:
        sql = (
            "SELECT user_id FROM user_roles WHERE role=? "
            "UNION SELECT user_id FROM directory_roles WHERE role=? ORDER BY 1"
        )
        return await self._read(lambda c: [r[0] for r in c.execute(sql, (role, role))])

    async def all_users(self) -> list[str]:
        sql = (
            "SELECT user_id FROM inbox_users WHERE seen_at IS NOT NULL "
            "UNION SELECT user_id FROM directory_users ORDER BY 1"
        )
        return await self._read(lambda c: [r[0] for r in c.execute(sql)])

    # --- state changes --------------------------------------------------------------------

    async def _set_where_null(
        self, column: str, user_id: str, ids: Sequence[str] | None, now: float
    ) -> list[str]:
        def run(c: sqlite3.Connection) -> list[str]:
            if ids is not None and not ids:
                return []
            sql = f"UPDATE notifications SET {column}=? WHERE user_id=? AND {column} IS NULL"
            args: list[Any] = [now, user_id]
            if ids is not None:
                sql += f" AND id IN ({_placeholders(len(ids))})"
                args.extend(ids)
            # RETURNING has no ORDER BY: sort here, oldest first, as the contract says.
            return [
                r[0]
                for r in sorted(c.execute(sql + " RETURNING id, seq", args), key=lambda r: r[1])
            ]

        return await self._write(run)

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
            "UPDATE notifications SET archived_at = NULL WHERE user_id=? "
            f"AND archived_at IS NOT NULL AND id IN ({_placeholders(len(ids))}) RETURNING id, seq"
        )
        return await self._write(
            lambda c: [r[0] for r in sorted(c.execute(sql, [user_id, *ids]), key=lambda r: r[1])]
        )

    async def mark_delivered(self, deliveries: Mapping[str, Sequence[str]], *, now: float) -> None:
        if not any(deliveries.values()):
            return
        await self._write(lambda c: _mark_alone(c, [(deliveries, now)]))

    async def delete(self, user_id: str, ids: Sequence[str]) -> list[str]:
        ids = list(ids)
        if not ids:
            return []
        sql = (
            f"DELETE FROM notifications WHERE user_id=? AND id IN "
            f"({_placeholders(len(ids))}) RETURNING id, seq"
        )
        return await self._write(
            lambda c: [r[0] for r in sorted(c.execute(sql, [user_id, *ids]), key=lambda r: r[1])]
        )

    async def purge(self, *, created_before: float, now: float, limit: int) -> int:
        def run(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                deleted = c.execute(
                    "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications "
                    "WHERE created_at < ? OR (expires_at IS NOT NULL AND expires_at <= ?) "
                    "LIMIT ?)",
                    (created_before, now, limit),
                ).rowcount
                # A key and its rows share created_at, so a key older than every remaining
                # row has none left; keys live at least as long as their rows.
                c.execute(
                    "DELETE FROM idempotency WHERE created_at < ? AND created_at < "
                    "COALESCE((SELECT MIN(created_at) FROM notifications), ?)",
                    (created_before, created_before),
                )
                c.execute("COMMIT")
                return int(deleted)
            except BaseException:
                c.execute("ROLLBACK")
                raise

        return await self._write(run)
