"""The user directory: the ``UserStore`` interface, its record, and the SQL both stores run.

A backend registers its users (``PUT /api/users/{id}``) so that role and ``all``
notifications reach people who never connected, and so that chat events and emails can
name them. ``Store`` (``store/__init__.py``) extends ``UserStore``; ``SQLiteUsers`` and
``PostgresUsers`` beside this module implement it, tested by one contract suite
(``tests/store/test_store_users.py``) against both.

The directory's roles are the backend's word; the roles of a user's latest token are
recorded apart (``user_roles``, by ``remember_user``), and a role target reaches the union
of both, so neither source can hide a user from the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

import msgspec


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One registered user. ``data`` is the backend's own JSON object, stored as given."""

    id: str
    name: str | None = None
    avatar_url: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    time_zone: str | None = None
    roles: tuple[str, ...] = ()
    data: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


class Erased(msgspec.Struct, frozen=True, kw_only=True):
    """What erasing a user removed, and what it kept (and why: see ``UserStore.erase_user``)."""

    profile: bool
    notifications: int
    preferences: int
    room_memberships: int
    blocks: int
    kept_room_messages: int


class UserStore(Protocol):
    """Registered users.

    Contract, for every implementation:

    * ``put_user`` replaces the whole record (roles included) in one transaction and says
      whether it created it; ``created_at`` survives a replace.
    * ``put_users`` does the same for many users in one transaction: all or none.
    * ``users_with_role`` and ``all_users`` (on ``Store``) include registered users.
    * ``erase_user`` removes, in one transaction, the profile, directory and token roles,
      notifications (with their deliveries), preferences (every channel's), quiet hours,
      push subscriptions, room memberships and blocks (both ways) of the user.
      It keeps the messages they wrote in rooms (other members' conversations stay whole;
      they can be deleted one by one through the rooms API) and the user's sequence
      counter (so a client reconnecting with an old ``lastSeq`` never skips new
      notifications), and says how many room messages it kept.
    * Time is passed in (``now``); the store never reads a clock.
    """

    async def put_user(self, user: UserRecord, *, now: float) -> bool:
        """Create or replace ``user``; True if it was created."""
        ...

    async def put_users(self, users: Sequence[UserRecord], *, now: float) -> int:
        """Create or replace every user (one transaction); returns how many were new."""
        ...

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The registered user, or None."""
        ...

    async def list_users(
        self, *, after: str | None, limit: int, role: str | None = None
    ) -> list[UserRecord]:
        """Registered users in id order (bytewise), after ``after``, at most ``limit``;
        only those whose directory roles include ``role`` when given."""
        ...

    async def erase_user(self, user_id: str) -> Erased:
        """Remove the user's personal data (see the contract above)."""
        ...


# --- the SQL both stores run ('?' placeholders; dollar() rewrites them for PostgreSQL) ---

USER_COLUMNS: Final = (
    "user_id, name, avatar_url, email, phone, locale, time_zone, data, created_at, updated_at"
)
UPSERT_USER: Final = (
    f"INSERT INTO directory_users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (user_id) DO UPDATE SET name=excluded.name, avatar_url=excluded.avatar_url, "
    "email=excluded.email, phone=excluded.phone, locale=excluded.locale, "
    "time_zone=excluded.time_zone, data=excluded.data, updated_at=excluded.updated_at"
)
USER_EXISTS: Final = "SELECT 1 FROM directory_users WHERE user_id=?"
GET_USER: Final = f"SELECT {USER_COLUMNS} FROM directory_users WHERE user_id=?"
ROLES_OF: Final = "SELECT role FROM directory_roles WHERE user_id=? ORDER BY role"
DELETE_ROLES: Final = "DELETE FROM directory_roles WHERE user_id=?"
INSERT_ROLE: Final = "INSERT INTO directory_roles (user_id, role) VALUES (?, ?)"

# What erase_user runs, in order, each counting its rows; the kept messages are counted.
ERASE: Final = (
    ("notifications", "DELETE FROM notifications WHERE user_id=?"),
    ("preferences", "DELETE FROM preferences WHERE user_id=?"),
    ("room_memberships", "DELETE FROM room_members WHERE user_id=?"),
    ("blocks", "DELETE FROM user_blocks WHERE user_id=? OR blocked_id=?"),
    ("", "DELETE FROM user_roles WHERE user_id=?"),
    # Delivery beyond the app: where and when to reach them (deliveries and their log go
    # with the notifications).
    ("", "DELETE FROM push_subscriptions WHERE user_id=?"),
    ("", "DELETE FROM channel_preferences WHERE user_id=?"),
    ("", "DELETE FROM quiet_hours WHERE user_id=?"),
    ("", "DELETE FROM directory_roles WHERE user_id=?"),
    # The row keeps last_seq (the sequence counter) but no longer counts as seen.
    ("", "UPDATE inbox_users SET seen_at=NULL WHERE user_id=?"),
    ("profile", "DELETE FROM directory_users WHERE user_id=?"),
)
COUNT_MESSAGES: Final = "SELECT COUNT(*) FROM room_messages WHERE author_id=?"


def list_sql(*, after: bool, role: bool, collate: str = "") -> str:
    """The ``list_users`` query: optional cursor and role filter, ``LIMIT ?`` last."""
    where = []
    if after:
        where.append(f"u.user_id{collate} > ?")
    if role:
        where.append(
            "EXISTS (SELECT 1 FROM directory_roles r WHERE r.user_id=u.user_id AND r.role=?)"
        )
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    cols = ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))
    return f"SELECT {cols} FROM directory_users u{clause} ORDER BY u.user_id{collate} LIMIT ?"


def user_from(row: Sequence[Any], roles: Sequence[str]) -> UserRecord:
    """A record from a ``USER_COLUMNS`` row and its roles."""
    data = msgspec.json.decode(row[7]) if row[7] is not None else None
    return UserRecord(
        id=row[0],
        name=row[1],
        avatar_url=row[2],
        email=row[3],
        phone=row[4],
        locale=row[5],
        time_zone=row[6],
        data=data,
        roles=tuple(roles),
        created_at=float(row[8]),
        updated_at=float(row[9]),
    )


def user_params(user: UserRecord, now: float) -> tuple[Any, ...]:
    """``UPSERT_USER``'s parameters; ``created_at`` is ``now`` (kept on conflict)."""
    data = msgspec.json.encode(user.data).decode() if user.data is not None else None
    return (
        user.id,
        user.name,
        user.avatar_url,
        user.email,
        user.phone,
        user.locale,
        user.time_zone,
        data,
        now,
        now,
    )
