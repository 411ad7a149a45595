"""The delivery part of the SQLite store (``DeliveryStore`` on SQLite), mixed into
``SQLiteStore``. One process owns a SQLite file and its writes run on one thread, so a
claim (an ``UPDATE … RETURNING``) is atomic without further locking."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from . import deliveries as q
from .deliveries import Contact, Delivery, Event, PushSubscription, State
from .records import from_row
from .schema import COLUMNS

if TYPE_CHECKING:
    from . import Notification

T = TypeVar("T")

_CLAIM = (
    "UPDATE deliveries SET due_at = ? WHERE (notification_id, channel) IN "
    f"({q.DUE}) RETURNING {q.DELIVERY_COLUMNS}"
)


def _tx(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class SQLiteDeliveries:
    """``DeliveryStore`` methods; ``SQLiteStore`` supplies ``_read`` and ``_write``."""

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - SQLiteStore's own

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - SQLiteStore's own

    async def contact(self, user_id: str) -> Contact:
        def run(c: sqlite3.Connection) -> Contact:
            directory = c.execute(q.CONTACT_GET, (user_id,)).fetchone()
            return q.contact_from(directory, c.execute(q.QUIET_GET, (user_id,)).fetchone())

        return await self._read(run)

    async def set_quiet_hours(self, user_id: str, start: str | None, end: str | None) -> None:
        if start is None or end is None:
            await self._write(lambda c: c.execute(q.QUIET_CLEAR, (user_id,)))
        else:
            await self._write(lambda c: c.execute(q.QUIET_SET, (user_id, start, end)))

    async def add_push_subscription(
        self, user_id: str, sub: PushSubscription, *, now: float
    ) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            known = c.execute(q.PUSH_EXISTS, (sub.endpoint, user_id)).fetchone() is not None
            c.execute(q.PUSH_ADD, (sub.endpoint, user_id, sub.p256dh, sub.auth, now))
            return not known

        return await self._write(lambda c: _tx(c, run))

    async def remove_push_subscription(self, endpoint: str, user_id: str | None = None) -> bool:
        if user_id is None:
            return await self._write(
                lambda c: c.execute(q.PUSH_REMOVE_ANY, (endpoint,)).rowcount > 0
            )
        return await self._write(
            lambda c: c.execute(q.PUSH_REMOVE, (endpoint, user_id)).rowcount > 0
        )

    async def push_subscriptions(self, user_id: str) -> list[PushSubscription]:
        rows = await self._read(lambda c: c.execute(q.PUSH_LIST, (user_id,)).fetchall())
        return [
            PushSubscription(endpoint=r[0], p256dh=r[1], auth=r[2], user_id=r[3], created_at=r[4])
            for r in rows
        ]

    async def channel_preferences(self, user_id: str) -> dict[str, dict[str, bool]]:
        rows = await self._read(lambda c: c.execute(q.PREFS_GET, (user_id,)).fetchall())
        return q.switches_from(rows)

    async def set_channel_preferences(
        self, user_id: str, channel: str, switches: Mapping[str, bool]
    ) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute(q.PREFS_CLEAR, (user_id, channel))
            c.executemany(q.PREFS_ADD, [(user_id, channel, k, int(v)) for k, v in switches.items()])

        await self._write(lambda c: _tx(c, run))

    async def claim_deliveries(
        self, *, now: float, limit: int, lease: float
    ) -> list[tuple[Delivery, Notification | None]]:
        def run(c: sqlite3.Connection) -> list[tuple[Delivery, Notification | None]]:
            claimed = [q.delivery_from(r) for r in c.execute(_CLAIM, (now + lease, now, limit))]
            if not claimed:
                return []
            ids = [d.notification_id for d in claimed]
            marks = ",".join("?" * len(ids))
            sql = f"SELECT {COLUMNS} FROM notifications WHERE id IN ({marks})"
            found = {r[0]: from_row(r) for r in c.execute(sql, ids)}
            return [(d, found.get(d.notification_id)) for d in claimed]

        return await self._write(lambda c: _tx(c, run))

    async def record_delivery(
        self,
        notification_id: str,
        channel: str,
        *,
        state: State,
        attempts: int,
        due_at: float,
        event: Event,
    ) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            row = c.execute(
                q.RECORD, (state.value, attempts, due_at, notification_id, channel)
            ).fetchone()
            if row is None:
                return False
            c.execute(
                q.LOG_ADD,
                (
                    notification_id,
                    channel,
                    row[0],
                    event.at,
                    event.event,
                    event.attempt,
                    event.reason,
                    event.nextAttemptAt,
                ),
            )
            return True

        return await self._write(lambda c: _tx(c, run))

    async def deliveries(self, user_id: str, notification_id: str) -> list[Delivery]:
        def run(c: sqlite3.Connection) -> list[Delivery]:
            rows = c.execute(q.OF_NOTIFICATION, (notification_id, user_id)).fetchall()
            if not rows:
                return []
            return q.with_logs(rows, c.execute(q.LOG_OF, (notification_id,)).fetchall())

        return await self._read(run)
