"""Turning notifications into rows and back; shared by the SQL stores."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from . import Action, NewNotification, Notification, Priority
from .schema import COLUMNS

_actions_decoder = msgspec.json.Decoder(tuple[Action, ...])
# A stored priority's member by its value: a dict hit instead of an Enum call (a tenth
# of the cost), for every row read and every row a create builds.
_PRIORITIES = {p.value: p for p in Priority}


def new_id() -> str:
    """A notification id: random, URL-safe, 128 bits."""
    # os.urandom is what secrets.token_hex calls, without its three Python layers.
    return "ntf_" + os.urandom(16).hex()


def dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def encoded(content: NewNotification) -> tuple[str | None, str | None]:
    """The JSON columns (data, actions) of a notification, encoded once per request."""
    return (
        None if content.data is None else dumps(content.data),
        dumps(content.actions) if content.actions else None,
    )


def insert_values(
    nid: str,
    user_id: str,
    seq: int,
    content: NewNotification,
    now: float,
    json_columns: tuple[str | None, str | None] | None = None,
    *,
    in_app: bool = True,
) -> tuple[Any, ...]:
    """Values for ``INSERT INTO notifications (COLUMNS)`` of a new row; pass
    ``json_columns`` (from ``encoded``) to reuse one encoding for many recipients;
    ``in_app=False`` for a recipient who switched in-app off (kept for other channels)."""
    data, actions = encoded(content) if json_columns is None else json_columns
    title, message = content.texts.get(user_id, (content.title, content.message))
    return (
        nid,
        user_id,
        seq,
        content.type,
        title,
        message,
        content.priority.value,
        content.category,
        data,
        actions,
        content.expires_at,
        now,
        None,
        None,
        None,
        None,
        0,
        1 if in_app else 0,
    )


def from_row(row: Sequence[Any]) -> Notification:
    """A ``SELECT COLUMNS`` row as a Notification."""
    return Notification(
        id=row[0],
        user_id=row[1],
        seq=int(row[2]),
        type=row[3],
        title=row[4],
        message=row[5],
        priority=_PRIORITIES.get(row[6]) or Priority(row[6]),
        category=row[7],
        data=None if row[8] is None else msgspec.json.decode(row[8]),
        actions=() if row[9] is None else _actions_decoder.decode(row[9]),
        expires_at=row[10],
        created_at=row[11],
        delivered_at=row[12],
        acked_at=row[13],
        read_at=row[14],
        archived_at=row[15],
        attempts=int(row[16]),
        in_app=bool(row[17]),
    )


def page_query(
    mark: Callable[[int], str],
    user_id: str,
    *,
    unread_only: bool,
    include_archived: bool,
    before_seq: int | None,
    limit: int,
    archived_only: bool = False,
) -> tuple[str, list[Any]]:
    """SQL and arguments of ``Store.page``; ``mark(n)`` is the dialect's n-th placeholder
    (``?`` for SQLite, ``$n`` for PostgreSQL)."""
    args: list[Any] = [user_id]
    where = [f"user_id = {mark(1)}"]
    if unread_only:
        where.append("read_at IS NULL")
    if not include_archived:
        # In-app off: never in the app's lists (it is there for the other channels).
        where.append("in_app <> 0")
    if archived_only:
        where.append("archived_at IS NOT NULL")
    elif not include_archived:
        where.append("archived_at IS NULL")
    if before_seq is not None:
        args.append(before_seq)
        where.append(f"seq < {mark(len(args))}")
    args.append(limit)
    sql = (
        f"SELECT {COLUMNS} FROM notifications WHERE {' AND '.join(where)} "
        f"ORDER BY seq DESC LIMIT {mark(len(args))}"
    )
    return sql, args
