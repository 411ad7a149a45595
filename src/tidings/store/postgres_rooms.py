"""The rooms part of the PostgreSQL store (``RoomStore`` on PostgreSQL), mixed into
``PostgresStore``.

A room's next ``seq`` is an ``UPDATE … RETURNING`` of its ``rooms`` row in the message's
own transaction: the row lock queues every other post to that room (from any instance)
until the holder commits, so seq order is commit order, with no gaps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from . import rooms as q
from .rooms import Member, Room, RoomMessage

_D: Final = {
    name: q.dollar(getattr(q, name))
    for name in (
        "INSERT_ROOM",
        "GET_ROOM",
        "DELETE_ROOM",
        "UPSERT_MEMBER",
        "GET_MEMBER",
        "REMOVE_MEMBER",
        "MEMBERS",
        "ROOMS_OF",
        "NEXT_SEQ",
        "INSERT_MESSAGE",
        "GET_MESSAGE",
        "EDIT_MESSAGE",
        "DELETE_MESSAGE",
        "MARK_READ",
        "UNREAD",
        "BLOCK",
        "UNBLOCK",
        "BLOCKED",
    )
}
# INSERT … ON CONFLICT DO UPDATE cannot say whether it inserted; xmax = 0 does.
_UPSERT_MEMBER: Final = _D["UPSERT_MEMBER"] + " RETURNING (xmax = 0)"


def _changed(status: str) -> bool:
    """True if a command tag (``INSERT 0 1``, ``DELETE 1``) counts at least one row."""
    return status.rsplit(" ", 1)[-1] != "0"


class PostgresRooms:
    """``RoomStore`` methods; ``PostgresStore`` supplies ``_db`` (the pool)."""

    def _db(self) -> Any:
        raise NotImplementedError  # pragma: no cover - PostgresStore's own

    async def create_room(
        self, room_id: str, *, name: str | None, ws_post: bool, now: float
    ) -> bool:
        status = await self._db().execute(_D["INSERT_ROOM"], room_id, name, int(ws_post), now)
        return _changed(status)

    async def get_room(self, room_id: str) -> Room | None:
        row = await self._db().fetchrow(_D["GET_ROOM"], room_id)
        return None if row is None else q.room_from(row)

    async def delete_room(self, room_id: str) -> bool:
        return _changed(await self._db().execute(_D["DELETE_ROOM"], room_id))

    async def set_member(self, room_id: str, user_id: str, role: str, *, now: float) -> bool:
        return bool(await self._db().fetchval(_UPSERT_MEMBER, room_id, user_id, role, now))

    async def remove_member(self, room_id: str, user_id: str) -> bool:
        return _changed(await self._db().execute(_D["REMOVE_MEMBER"], room_id, user_id))

    async def get_member(self, room_id: str, user_id: str) -> Member | None:
        row = await self._db().fetchrow(_D["GET_MEMBER"], room_id, user_id)
        return None if row is None else q.member_from(row)

    async def members(self, room_id: str) -> list[Member]:
        return [q.member_from(r) for r in await self._db().fetch(_D["MEMBERS"], room_id)]

    async def rooms_of(self, user_id: str) -> list[Member]:
        return [q.member_from(r) for r in await self._db().fetch(_D["ROOMS_OF"], user_id)]

    async def add_message(
        self, room_id: str, author_id: str, body: str, *, now: float
    ) -> RoomMessage | None:
        async with self._db().acquire() as conn, conn.transaction():
            seq = await conn.fetchval(_D["NEXT_SEQ"], room_id)
            if seq is None:
                return None
            msg = RoomMessage(
                id=q.new_message_id(),
                room_id=room_id,
                seq=int(seq),
                author_id=author_id,
                body=body,
                created_at=now,
            )
            await conn.execute(_D["INSERT_MESSAGE"], msg.id, room_id, msg.seq, author_id, body, now)
            return msg

    async def get_message(self, room_id: str, message_id: str) -> RoomMessage | None:
        row = await self._db().fetchrow(_D["GET_MESSAGE"], room_id, message_id)
        return None if row is None else q.message_from(row)

    async def edit_message(
        self, room_id: str, message_id: str, body: str, *, now: float
    ) -> RoomMessage | None:
        row = await self._db().fetchrow(_D["EDIT_MESSAGE"], body, now, room_id, message_id)
        return None if row is None else q.message_from(row)

    async def delete_message(
        self, room_id: str, message_id: str, *, by: str, now: float
    ) -> RoomMessage | None:
        row = await self._db().fetchrow(_D["DELETE_MESSAGE"], now, by, room_id, message_id)
        return None if row is None else q.message_from(row)

    async def messages(
        self,
        room_id: str,
        *,
        before_seq: int | None = None,
        limit: int = 50,
        exclude_authors: Iterable[str] = (),
    ) -> list[RoomMessage]:
        sql, args = q.messages_query(room_id, before_seq, limit, sorted(exclude_authors))
        return [q.message_from(r) for r in await self._db().fetch(q.dollar(sql), *args)]

    async def mark_room_read(self, room_id: str, user_id: str, seq: int) -> int | None:
        value = await self._db().fetchval(_D["MARK_READ"], seq, room_id, user_id)
        return None if value is None else int(value)

    async def unread_counts(self, user_id: str) -> dict[str, int]:
        rows = await self._db().fetch(_D["UNREAD"], user_id)
        return {r[0]: int(r[1]) for r in rows}

    async def block(self, user_id: str, blocked_id: str, *, now: float) -> bool:
        return _changed(await self._db().execute(_D["BLOCK"], user_id, blocked_id, now))

    async def unblock(self, user_id: str, blocked_id: str) -> bool:
        return _changed(await self._db().execute(_D["UNBLOCK"], user_id, blocked_id))

    async def blocked(self, user_id: str) -> set[str]:
        return {r[0] for r in await self._db().fetch(_D["BLOCKED"], user_id)}
