"""The rooms part of the SQLite store (``RoomStore`` on SQLite), mixed into ``SQLiteStore``.

Writes run on the store's single writer thread, so a room's next ``seq`` (an update of its
``rooms`` row) and the message insert sit in one ``BEGIN IMMEDIATE`` transaction that
nothing else can interleave with. Posts that arrive while one is being written wait and go
together in the next transaction (group commit): with ``synchronous=FULL`` a commit is an
fsync, and one fsync per message would cap a busy room at the disk's fsync rate.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable, Iterable
from typing import TypeVar

from . import StoreError
from . import rooms as q
from .rooms import Member, Room, RoomMessage

T = TypeVar("T")
log = logging.getLogger("tidings.store.sqlite")
_Post = tuple[str, str, str, float]


def _add(
    c: sqlite3.Connection, room_id: str, author_id: str, body: str, now: float
) -> RoomMessage | None:
    row = c.execute(q.NEXT_SEQ, (room_id,)).fetchone()
    if row is None:
        return None
    msg = RoomMessage(
        id=q.new_message_id(),
        room_id=room_id,
        seq=int(row[0]),
        author_id=author_id,
        body=body,
        created_at=now,
    )
    c.execute(q.INSERT_MESSAGE, (msg.id, room_id, msg.seq, author_id, body, now))
    return msg


def _tx(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _add_all(c: sqlite3.Connection, posts: list[_Post]) -> list[RoomMessage | None]:
    return _tx(c, lambda c: [_add(c, *post) for post in posts])


class SQLiteRooms:
    """``RoomStore`` methods; ``SQLiteStore`` supplies ``_read`` and ``_write``."""

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - SQLiteStore's own

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - SQLiteStore's own

    async def create_room(
        self, room_id: str, *, name: str | None, ws_post: bool, now: float
    ) -> bool:
        return await self._write(
            lambda c: c.execute(q.INSERT_ROOM, (room_id, name, int(ws_post), now)).rowcount == 1
        )

    async def get_room(self, room_id: str) -> Room | None:
        row = await self._read(lambda c: c.execute(q.GET_ROOM, (room_id,)).fetchone())
        return None if row is None else q.room_from(row)

    async def delete_room(self, room_id: str) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute(q.DELETE_ROOM_MESSAGES, (room_id,))
            c.execute(q.DELETE_ROOM_MEMBERS, (room_id,))
            return c.execute(q.DELETE_ROOM, (room_id,)).rowcount == 1

        return await self._write(lambda c: _tx(c, run))

    async def set_member(self, room_id: str, user_id: str, role: str, *, now: float) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            new = c.execute(q.GET_MEMBER, (room_id, user_id)).fetchone() is None
            c.execute(q.UPSERT_MEMBER, (room_id, user_id, role, now))
            return new

        return await self._write(lambda c: _tx(c, run))

    async def remove_member(self, room_id: str, user_id: str) -> bool:
        return await self._write(
            lambda c: c.execute(q.REMOVE_MEMBER, (room_id, user_id)).rowcount == 1
        )

    async def get_member(self, room_id: str, user_id: str) -> Member | None:
        row = await self._read(lambda c: c.execute(q.GET_MEMBER, (room_id, user_id)).fetchone())
        return None if row is None else q.member_from(row)

    async def members(self, room_id: str) -> list[Member]:
        rows = await self._read(lambda c: c.execute(q.MEMBERS, (room_id,)).fetchall())
        return [q.member_from(r) for r in rows]

    async def rooms_of(self, user_id: str) -> list[Member]:
        rows = await self._read(lambda c: c.execute(q.ROOMS_OF, (user_id,)).fetchall())
        return [q.member_from(r) for r in rows]

    # Posts waiting for the next group commit, and the task writing them (created on use).
    _posts: list[tuple[_Post, asyncio.Future[RoomMessage | None]]] | None = None
    _post_flusher: asyncio.Task[None] | None = None

    async def add_message(
        self, room_id: str, author_id: str, body: str, *, now: float
    ) -> RoomMessage | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RoomMessage | None] = loop.create_future()
        if self._posts is None:
            self._posts = []
        self._posts.append(((room_id, author_id, body, now), future))
        if self._post_flusher is None or self._post_flusher.done():
            self._post_flusher = loop.create_task(self._flush_posts())
        return await future

    async def _flush_posts(self) -> None:
        while self._posts:
            batch, self._posts = self._posts, []

            posts = [args for args, _ in batch]
            try:
                results = await self._write(functools.partial(_add_all, posts=posts))
            except Exception as exc:  # the commit failed: every post in it fails
                log.exception("group commit of %d room messages failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreError(f"commit failed: {exc}"))
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # a cancelled caller: the row is committed anyway
                    future.set_result(result)

    async def get_message(self, room_id: str, message_id: str) -> RoomMessage | None:
        row = await self._read(lambda c: c.execute(q.GET_MESSAGE, (room_id, message_id)).fetchone())
        return None if row is None else q.message_from(row)

    async def edit_message(
        self, room_id: str, message_id: str, body: str, *, now: float
    ) -> RoomMessage | None:
        row = await self._write(
            lambda c: c.execute(q.EDIT_MESSAGE, (body, now, room_id, message_id)).fetchone()
        )
        return None if row is None else q.message_from(row)

    async def delete_message(
        self, room_id: str, message_id: str, *, by: str, now: float
    ) -> RoomMessage | None:
        row = await self._write(
            lambda c: c.execute(q.DELETE_MESSAGE, (now, by, room_id, message_id)).fetchone()
        )
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
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [q.message_from(r) for r in rows]

    async def mark_room_read(self, room_id: str, user_id: str, seq: int) -> int | None:
        row = await self._write(
            lambda c: c.execute(q.MARK_READ, (seq, room_id, user_id)).fetchone()
        )
        return None if row is None else int(row[0])

    async def unread_counts(self, user_id: str) -> dict[str, int]:
        rows = await self._read(lambda c: c.execute(q.UNREAD, (user_id,)).fetchall())
        return {room: int(n) for room, n in rows}

    async def block(self, user_id: str, blocked_id: str, *, now: float) -> bool:
        return await self._write(
            lambda c: c.execute(q.BLOCK, (user_id, blocked_id, now)).rowcount == 1
        )

    async def unblock(self, user_id: str, blocked_id: str) -> bool:
        return await self._write(
            lambda c: c.execute(q.UNBLOCK, (user_id, blocked_id)).rowcount == 1
        )

    async def blocked(self, user_id: str) -> set[str]:
        rows = await self._read(lambda c: c.execute(q.BLOCKED, (user_id,)).fetchall())
        return {r[0] for r in rows}
