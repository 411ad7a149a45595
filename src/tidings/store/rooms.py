"""Chat-room storage: the ``RoomStore`` interface, its records, and the SQL both stores run.

``Store`` (in ``store/__init__.py``) extends ``RoomStore``, so every store keeps rooms
beside the inbox; ``sqlite_rooms.SQLiteRooms`` and ``postgres_rooms.PostgresRooms`` are
the implementations, tested by ``tests/test_store_rooms.py`` against both.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

import msgspec


class Room(msgspec.Struct, frozen=True, kw_only=True):
    """One room. ``ws_post``: members may post over the WebSocket (HTTP always works)."""

    id: str
    name: str | None
    ws_post: bool
    last_seq: int
    created_at: float


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """One member of one room, with their read marker (the last ``seq`` they read)."""

    room_id: str
    user_id: str
    role: str
    joined_at: float
    last_read_seq: int


class RoomMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One stored chat message; a deleted one keeps its row (``body`` None) so ``seq``
    stays gapless and clients can drop it from what they show."""

    id: str
    room_id: str
    seq: int
    author_id: str
    body: str | None
    created_at: float
    edited_at: float | None = None
    deleted_at: float | None = None
    deleted_by: str | None = None


def new_message_id() -> str:
    """A message id: random, URL-safe, 128 bits."""
    return "rm_" + secrets.token_hex(16)


class RoomStore(Protocol):
    """Rooms, members, messages, blocks and read markers.

    Contract, for every implementation:

    * **Commit before return**: a method that changes something returns after its commit.
    * **Per-room order.** ``add_message`` gives each room's messages ``seq`` 1, 2, 3, …
      with no gaps and no repeats, in commit order, whatever the concurrency (and across
      instances sharing one database). A deleted message keeps its ``seq``.
    * **Missing rooms.** ``add_message`` on a room that does not exist returns None;
      deleting a room removes its members and messages.
    * **Membership** is one row per (room, user) with a role; ``set_member`` on an
      existing member changes the role and keeps the read marker.
    * **Edits and deletes** touch a message only inside the room named, and never a
      deleted message (both return None then); ``delete_message`` clears the body.
    * **History** (``messages``) is newest first, below ``before_seq`` if given, and leaves
      out the authors in ``exclude_authors`` (someone's block list).
    * **Read markers** only move forward (``mark_read`` keeps the higher ``seq``) and never
      past the room's last message. Unread counts leave out deleted messages, the member's
      own, and those of users they blocked.
    * **Blocks** are one-way: ``block(a, b)`` is about what ``a`` sees.
    * **Time is passed in** (``now``); the store never reads a clock.
    """

    async def create_room(
        self, room_id: str, *, name: str | None, ws_post: bool, now: float
    ) -> bool:
        """Create a room; False if one with that id exists (it is left unchanged)."""
        ...

    async def get_room(self, room_id: str) -> Room | None:
        """The room, or None."""
        ...

    async def delete_room(self, room_id: str) -> bool:
        """Remove a room with its members and messages; False if there was none."""
        ...

    async def set_member(self, room_id: str, user_id: str, role: str, *, now: float) -> bool:
        """Add a member or change their role; True if they were not a member before."""
        ...

    async def remove_member(self, room_id: str, user_id: str) -> bool:
        """Remove a member; False if they were not one."""
        ...

    async def get_member(self, room_id: str, user_id: str) -> Member | None:
        """The membership of ``user_id`` in ``room_id``, or None."""
        ...

    async def members(self, room_id: str) -> list[Member]:
        """Every member of the room, by user id."""
        ...

    async def rooms_of(self, user_id: str) -> list[Member]:
        """Every membership of the user, by room id."""
        ...

    async def add_message(
        self, room_id: str, author_id: str, body: str, *, now: float
    ) -> RoomMessage | None:
        """Store a message with the room's next ``seq``; None if the room does not exist."""
        ...

    async def get_message(self, room_id: str, message_id: str) -> RoomMessage | None:
        """One message of the room (deleted ones too), or None."""
        ...

    async def edit_message(
        self, room_id: str, message_id: str, body: str, *, now: float
    ) -> RoomMessage | None:
        """Replace the body and set ``edited_at``; None if missing or deleted."""
        ...

    async def delete_message(
        self, room_id: str, message_id: str, *, by: str, now: float
    ) -> RoomMessage | None:
        """Clear the body and set ``deleted_at``/``deleted_by``; None if missing or already
        deleted."""
        ...

    async def messages(
        self,
        room_id: str,
        *,
        before_seq: int | None = None,
        limit: int = 50,
        exclude_authors: Iterable[str] = (),
    ) -> list[RoomMessage]:
        """Newest first: the room's messages with ``seq < before_seq`` (all when None)."""
        ...

    async def mark_room_read(self, room_id: str, user_id: str, seq: int) -> int | None:
        """Move the member's read marker to ``seq`` (never back, never past the last
        message); the marker after the call, or None if they are not a member."""
        ...

    async def unread_counts(self, user_id: str) -> dict[str, int]:
        """Unread messages per room the user is a member of (every room, zeros too)."""
        ...

    async def block(self, user_id: str, blocked_id: str, *, now: float) -> bool:
        """``user_id`` stops seeing ``blocked_id``; False if already blocked."""
        ...

    async def unblock(self, user_id: str, blocked_id: str) -> bool:
        """Undo a block; False if there was none."""
        ...

    async def blocked(self, user_id: str) -> set[str]:
        """The users ``user_id`` blocked."""
        ...


# --- SQL shared by both dialects ('?' placeholders; see ``dollar``) --------------------------

ROOM_COLUMNS: Final = "id, name, ws_post, last_seq, created_at"
MEMBER_COLUMNS: Final = "room_id, user_id, role, joined_at, last_read_seq"
MESSAGE_COLUMNS: Final = (
    "id, room_id, seq, author_id, body, created_at, edited_at, deleted_at, deleted_by"
)

INSERT_ROOM: Final = (
    "INSERT INTO rooms (id, name, ws_post, last_seq, created_at) VALUES (?, ?, ?, 0, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
GET_ROOM: Final = f"SELECT {ROOM_COLUMNS} FROM rooms WHERE id = ?"
DELETE_ROOM: Final = "DELETE FROM rooms WHERE id = ?"
# Members and messages go with the room (ON DELETE CASCADE); spelled out as well, so a
# SQLite connection opened without foreign_keys still leaves nothing behind.
DELETE_ROOM_MEMBERS: Final = "DELETE FROM room_members WHERE room_id = ?"
DELETE_ROOM_MESSAGES: Final = "DELETE FROM room_messages WHERE room_id = ?"
UPSERT_MEMBER: Final = (
    "INSERT INTO room_members (room_id, user_id, role, joined_at, last_read_seq) "
    "VALUES (?, ?, ?, ?, 0) ON CONFLICT (room_id, user_id) DO UPDATE SET role = excluded.role"
)
GET_MEMBER: Final = f"SELECT {MEMBER_COLUMNS} FROM room_members WHERE room_id = ? AND user_id = ?"
REMOVE_MEMBER: Final = "DELETE FROM room_members WHERE room_id = ? AND user_id = ?"
MEMBERS: Final = f"SELECT {MEMBER_COLUMNS} FROM room_members WHERE room_id = ? ORDER BY user_id"
ROOMS_OF: Final = f"SELECT {MEMBER_COLUMNS} FROM room_members WHERE user_id = ? ORDER BY room_id"
NEXT_SEQ: Final = "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq"
INSERT_MESSAGE: Final = (
    f"INSERT INTO room_messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL)"
)
GET_MESSAGE: Final = f"SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE room_id = ? AND id = ?"
EDIT_MESSAGE: Final = (
    "UPDATE room_messages SET body = ?, edited_at = ? "
    f"WHERE room_id = ? AND id = ? AND deleted_at IS NULL RETURNING {MESSAGE_COLUMNS}"
)
DELETE_MESSAGE: Final = (
    "UPDATE room_messages SET body = NULL, deleted_at = ?, deleted_by = ? "
    f"WHERE room_id = ? AND id = ? AND deleted_at IS NULL RETURNING {MESSAGE_COLUMNS}"
)
MARK_READ: Final = (
    "UPDATE room_members SET last_read_seq = MAX(last_read_seq, "
    "(SELECT MIN(?, last_seq) FROM rooms WHERE rooms.id = room_members.room_id)) "
    "WHERE room_id = ? AND user_id = ? RETURNING last_read_seq"
)
UNREAD: Final = (
    "SELECT m.room_id, COUNT(r.id) FROM room_members m "
    "LEFT JOIN room_messages r ON r.room_id = m.room_id AND r.seq > m.last_read_seq "
    "AND r.deleted_at IS NULL AND r.author_id <> m.user_id "
    "AND r.author_id NOT IN (SELECT blocked_id FROM user_blocks WHERE user_id = m.user_id) "
    "WHERE m.user_id = ? GROUP BY m.room_id ORDER BY m.room_id"
)
BLOCK: Final = (
    "INSERT INTO user_blocks (user_id, blocked_id, created_at) VALUES (?, ?, ?) "
    "ON CONFLICT (user_id, blocked_id) DO NOTHING"
)
UNBLOCK: Final = "DELETE FROM user_blocks WHERE user_id = ? AND blocked_id = ?"
BLOCKED: Final = "SELECT blocked_id FROM user_blocks WHERE user_id = ?"


def messages_query(
    room_id: str, before_seq: int | None, limit: int, exclude: Sequence[str]
) -> tuple[str, list[Any]]:
    """History SQL ('?' placeholders) and its arguments."""
    sql = f"SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE room_id = ?"
    args: list[Any] = [room_id]
    if before_seq is not None:
        sql += " AND seq < ?"
        args.append(before_seq)
    if exclude:
        sql += f" AND author_id NOT IN ({', '.join('?' * len(exclude))})"
        args.extend(exclude)
    sql += " ORDER BY seq DESC LIMIT ?"
    args.append(limit)
    return sql, args


_QMARK: Final = re.compile(r"\?")


def dollar(sql: str) -> str:
    """The PostgreSQL spelling of a '?' statement ($1, $2, …; none of ours has a '?' in a
    literal); SQLite's two-value ``MIN``/``MAX`` are ``LEAST``/``GREATEST`` there."""
    counter = iter(range(1, 1000))
    out = _QMARK.sub(lambda _: f"${next(counter)}", sql)
    return out.replace("MAX(last_read_seq,", "GREATEST(last_read_seq,").replace(
        "MIN($1, last_seq)", "LEAST($1::bigint, last_seq)"
    )


def room_from(row: Sequence[Any]) -> Room:
    return Room(
        id=row[0], name=row[1], ws_post=bool(row[2]), last_seq=int(row[3]), created_at=row[4]
    )


def member_from(row: Sequence[Any]) -> Member:
    return Member(
        room_id=row[0],
        user_id=row[1],
        role=row[2],
        joined_at=row[3],
        last_read_seq=int(row[4]),
    )


def message_from(row: Sequence[Any]) -> RoomMessage:
    return RoomMessage(
        id=row[0],
        room_id=row[1],
        seq=int(row[2]),
        author_id=row[3],
        body=row[4],
        created_at=row[5],
        edited_at=row[6],
        deleted_at=row[7],
        deleted_by=row[8],
    )
