"""The delivery part of the PostgreSQL store (``DeliveryStore`` on PostgreSQL), mixed into
``PostgresStore``. A claim picks due rows with ``FOR UPDATE SKIP LOCKED`` and moves their
due time in the same statement, so instances sharing the database never claim one
delivery twice, and never wait on each other's claims."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from . import deliveries as q
from .deliveries import Contact, Delivery, Event, PushSubscription, State
from .records import from_row
from .rooms import dollar
from .schema import COLUMNS

if TYPE_CHECKING:
    from . import Notification

_D: Final = {
    name: dollar(getattr(q, name))
    for name in (
        "CONTACT_GET",
        "QUIET_GET",
        "QUIET_SET",
        "QUIET_CLEAR",
        "PUSH_ADD",
        "PUSH_REMOVE_ANY",
        "PUSH_REMOVE",
        "PUSH_LIST",
        "PREFS_GET",
        "PREFS_CLEAR",
        "PREFS_ADD",
        "RECORD",
        "LOG_ADD",
        "OF_NOTIFICATION",
        "LOG_OF",
    )
}
_CLAIM: Final = (
    "UPDATE deliveries d SET due_at = $1 FROM (SELECT notification_id, channel FROM deliveries "
    "WHERE state = 'pending' AND due_at <= $2 ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) s "
    "WHERE d.notification_id = s.notification_id AND d.channel = s.channel "
    "RETURNING d.notification_id, d.user_id, d.channel, d.unless, d.state, d.attempts, d.due_at, "
    "d.queued_at"
)


class PostgresDeliveries:
    """``DeliveryStore`` methods; ``PostgresStore`` supplies ``_db`` (the pool)."""

    def _db(self) -> Any:
        raise NotImplementedError  # pragma: no cover - PostgresStore's own

    async def contact(self, user_id: str) -> Contact:
        async with self._db().acquire() as conn:
            directory = await conn.fetchrow(_D["CONTACT_GET"], user_id)
            return q.contact_from(directory, await conn.fetchrow(_D["QUIET_GET"], user_id))

    async def set_quiet_hours(self, user_id: str, start: str | None, end: str | None) -> None:
        if start is None or end is None:
            await self._db().execute(_D["QUIET_CLEAR"], user_id)
        else:
            await self._db().execute(_D["QUIET_SET"], user_id, start, end)

    async def add_push_subscription(
        self, user_id: str, sub: PushSubscription, *, now: float
    ) -> bool:
        async with self._db().acquire() as conn, conn.transaction():
            known = await conn.fetchval(
                "SELECT user_id FROM push_subscriptions WHERE endpoint = $1 FOR UPDATE",
                sub.endpoint,
            )
            await conn.execute(_D["PUSH_ADD"], sub.endpoint, user_id, sub.p256dh, sub.auth, now)
            return bool(known != user_id)

    async def remove_push_subscription(self, endpoint: str, user_id: str | None = None) -> bool:
        if user_id is None:
            status = await self._db().execute(_D["PUSH_REMOVE_ANY"], endpoint)
        else:
            status = await self._db().execute(_D["PUSH_REMOVE"], endpoint, user_id)
        return bool(status.rsplit(" ", 1)[-1] != "0")

    async def push_subscriptions(self, user_id: str) -> list[PushSubscription]:
        rows = await self._db().fetch(_D["PUSH_LIST"], user_id)
        return [
            PushSubscription(endpoint=r[0], p256dh=r[1], auth=r[2], user_id=r[3], created_at=r[4])
            for r in rows
        ]

    async def channel_preferences(self, user_id: str) -> dict[str, dict[str, bool]]:
        return q.switches_from(await self._db().fetch(_D["PREFS_GET"], user_id))

    async def set_channel_preferences(
        self, user_id: str, channel: str, switches: Mapping[str, bool]
    ) -> None:
        async with self._db().acquire() as conn, conn.transaction():
            await conn.execute(_D["PREFS_CLEAR"], user_id, channel)
            await conn.executemany(
                _D["PREFS_ADD"], [(user_id, channel, k, int(v)) for k, v in switches.items()]
            )

    async def claim_deliveries(
        self, *, now: float, limit: int, lease: float
    ) -> list[tuple[Delivery, Notification | None]]:
        async with self._db().acquire() as conn, conn.transaction():
            claimed = [
                q.delivery_from(r) for r in await conn.fetch(_CLAIM, now + lease, now, limit)
            ]
            if not claimed:
                return []
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM notifications WHERE id = ANY($1::text[])",
                [d.notification_id for d in claimed],
            )
        found = {r[0]: from_row(r) for r in rows}
        return [(d, found.get(d.notification_id)) for d in claimed]

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
        async with self._db().acquire() as conn, conn.transaction():
            n = await conn.fetchval(
                _D["RECORD"], state.value, attempts, due_at, notification_id, channel
            )
            if n is None:
                return False
            await conn.execute(
                _D["LOG_ADD"],
                notification_id,
                channel,
                n,
                event.at,
                event.event,
                event.attempt,
                event.reason,
                event.nextAttemptAt,
            )
            return True

    async def deliveries(self, user_id: str, notification_id: str) -> list[Delivery]:
        async with self._db().acquire() as conn:
            rows = await conn.fetch(_D["OF_NOTIFICATION"], notification_id, user_id)
            if not rows:
                return []
            return q.with_logs(rows, await conn.fetch(_D["LOG_OF"], notification_id))
