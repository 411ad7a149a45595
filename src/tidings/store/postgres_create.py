"""The PostgreSQL store's create transactions: the statements a batch of creates runs,
set-wise for unkeyed requests and one savepoint per keyed one, the delivery marks at
its head, and the request a caller waits on while its batch is written.

Each function runs inside a transaction ``PostgresStore`` opened for the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import asyncpg
import msgspec

from . import (
    Created,
    IdempotencyConflict,
    NewNotification,
    Notification,
    StoreError,
)
from .deliveries import PLAN, plan_rows
from .records import dumps, encoded, from_row, insert_values, new_id
from .rooms import dollar
from .schema import COLUMNS

log = logging.getLogger("tidings.store.postgres")

_CreateArgs = tuple[NewNotification, Sequence[str], float, str | None, str]
# Delivery marks waiting for a transaction: ({user_id: [ids]}, when), one per call.
Marks = list[tuple[Mapping[str, Sequence[str]], float]]

# Counts a delivery attempt of each (user, id) pair, which arrive as two arrays, and sets
# delivered_at on the first.
MARK: Final = (
    "UPDATE notifications AS n SET attempts = n.attempts + 1, "
    "delivered_at = COALESCE(n.delivered_at, $1) "
    "FROM unnest($2::text[], $3::text[]) AS d(user_id, id) "
    "WHERE n.user_id = d.user_id AND n.id = d.id"
)

_INSERT: Final = (
    f"INSERT INTO notifications ({COLUMNS}) VALUES "
    f"({', '.join(f'${i}' for i in range(1, len(COLUMNS.split(',')) + 1))})"
)
# One statement for every recipient. The batch already holds these rows (_LOCK_USERS), so
# this never waits; the upsert only keeps it right on its own.
_NEXT_SEQ: Final = (
    "INSERT INTO inbox_users (user_id, last_seq) "
    "SELECT u, 1 FROM unnest($1::text[]) AS u ORDER BY u "
    "ON CONFLICT (user_id) DO UPDATE SET last_seq = inbox_users.last_seq + 1 "
    "RETURNING user_id, last_seq"
)
# The set-wise path (``_create_plain``): one seq allocation for every (user, count) pair
# of a batch's unkeyed requests, and one insert of all their rows.
_ALLOCATE: Final = (
    "INSERT INTO inbox_users (user_id, last_seq) "
    "SELECT u, n FROM unnest($1::text[], $2::bigint[]) AS t(u, n) ORDER BY u "
    "ON CONFLICT (user_id) DO UPDATE SET last_seq = inbox_users.last_seq + excluded.last_seq "
    "RETURNING user_id, last_seq"
)
_NEW_COLUMNS: Final = (
    "id, user_id, seq, type, title, message, priority, category, data, actions, expires_at, "
    "created_at, in_app"
)
_PLAN: Final = dollar(PLAN)
_INSERT_MANY: Final = (
    f"INSERT INTO notifications ({_NEW_COLUMNS}) SELECT * FROM unnest("
    "$1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], "
    "$8::text[], $9::text[], $10::text[], $11::float8[], $12::float8[], $13::integer[])"
)
_PREFERENCES: Final = (
    "SELECT user_id, category, in_app FROM preferences "
    "WHERE user_id = ANY($1::text[]) AND (category = '*' OR category = ANY($2::text[]))"
)
# Takes every row of a batch's users, in user_id order, creating missing ones: DO UPDATE
# locks the row it conflicts with even when its WHERE is false, and so writes nothing.
_LOCK_USERS: Final = (
    "INSERT INTO inbox_users (user_id) SELECT u FROM unnest($1::text[]) AS u ORDER BY u "
    "ON CONFLICT (user_id) DO UPDATE SET last_seq = inbox_users.last_seq WHERE false"
)


class _Retry(Exception):
    """A request that could not finish through no fault of its own; run it again later."""


class _Fallback(Exception):
    """The set-wise path failed; the batch is rolled back and run request by request."""


class _Request:
    __slots__ = ("args", "future", "tries")

    def __init__(self, args: _CreateArgs, future: asyncio.Future[Created]) -> None:
        self.args = args
        self.future = future
        self.tries = 0


async def _in_app_off(conn: Any, users: list[str], category: str | None) -> set[str]:
    """Those of ``users`` whose switch for ``category`` (or else ``*``) is off."""
    if not users:
        return set()
    cat = category if category is not None else "*"
    rows = await conn.fetch(
        "SELECT user_id, category, in_app FROM preferences "
        "WHERE category IN ($1, '*') AND user_id = ANY($2::text[])",
        cat,
        users,
    )
    switches: dict[str, dict[str, int]] = {}
    for user, category_, on in rows:
        switches.setdefault(user, {})[category_] = on
    return {u for u, s in switches.items() if not s.get(cat, s.get("*", 1))}


class _MarksFailed(Exception):
    """The delivery marks at the head of a batch failed; the batch runs again without."""

    def __init__(self, error: StoreError) -> None:
        super().__init__(str(error))
        self.error = error


async def _mark(conn: Any, marks: Marks) -> None:
    """``marks`` first in the caller's transaction, with no savepoint (two more round
    trips in every batch): if the database refuses them, ``_MarksFailed`` rolls the
    transaction back with nothing else in it, and the caller runs it again without."""
    try:
        for deliveries, now in marks:
            # In id order: another instance marking some of the same rows (its user has
            # tabs there too) takes them in the same order, so the two wait rather than
            # deadlock; the inbox_users locks come after, in user order, in both.
            pairs = sorted((nid, u) for u, group in deliveries.items() for nid in group)
            await conn.execute(MARK, now, [u for _, u in pairs], [nid for nid, _ in pairs])
    except Exception as exc:
        if isinstance(exc, TimeoutError | OSError):
            raise  # the database is stalled or gone: the whole batch fails
        # A value it refused (client or server side).
        raise _MarksFailed(StoreError(f"delivery marks failed: {exc}")) from exc


async def _create_keyed(
    conn: Any, batch: Sequence[_Request], results: list[Created | Exception]
) -> None:
    """Each request of ``batch`` in its own savepoint, appending its result to ``results``;
    a deadlock stops the loop (the requests after it get no result)."""
    for done, r in enumerate(batch):
        try:
            # A nested transaction is a savepoint: a failure undoes this request only. If
            # even the rollback to it fails, that error escapes and the whole batch fails.
            async with conn.transaction():
                results.append(await _create_one(conn, *r.args))
        except (IdempotencyConflict, ValueError, _Retry) as exc:
            results.append(exc)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
            # The other transaction waits for locks this one holds: going on would deadlock
            # again on every later request. Commit what is done, which lets it finish, and
            # run the rest in the next batch.
            log.warning("create lost a deadlock; %d retried", len(batch) - done)
            results.append(_Retry(str(exc)))
            break
        except asyncpg.PostgresError as exc:
            results.append(StoreError(f"create failed: {exc}"))


async def _create_plain(conn: Any, batch: Sequence[_Request]) -> list[Created | Exception]:
    """Unkeyed creates, set-wise: one preferences query, one seq allocation and one insert
    for all of them, whatever their number. The caller holds every recipient's
    ``inbox_users`` row, so the preferences read here are the latest committed ones and
    the seqs allocated follow the last commit. Raises if any statement fails."""
    results: list[Created | Exception] = []
    # Per request: (content, now, recipients, encoded data, encoded actions).
    todo: list[tuple[int, NewNotification, float, list[str], str | None, str | None]] = []
    for r in batch:
        content, user_ids, now, _, _ = r.args
        try:
            data, actions = encoded(content)
        except Exception as exc:  # not encodable: this request fails, before any statement
            results.append(exc)
            continue
        todo.append((len(results), content, now, list(dict.fromkeys(user_ids)), data, actions))
        results.append(Created((), replayed=False))
    users = sorted({u for item in todo for u in item[3]})
    if not users:
        return results
    categories = sorted({item[1].category for item in todo if item[1].category is not None})
    switches: dict[str, dict[str, int]] = {}
    for user, category, on in await conn.fetch(_PREFERENCES, users, categories):
        switches.setdefault(user, {})[category] = on
    counts: dict[str, int] = {}
    skipped: dict[int, tuple[str, ...]] = {}
    muted: dict[int, set[str]] = {}
    for item in todo:
        cat = item[1].category if item[1].category is not None else "*"
        recipients = item[3]
        off = {u for u in recipients if (s := switches.get(u)) and not s.get(cat, s.get("*", 1))}
        if off and item[1].escalation:
            # In-app off, other channels planned: the rows are kept for them.
            muted[item[0]] = off
        elif off:
            skipped[item[0]] = tuple(sorted(off))
            recipients[:] = [u for u in recipients if u not in off]
        for u in recipients:
            counts[u] = counts.get(u, 0) + 1
    if counts:
        rows = await conn.fetch(_ALLOCATE, list(counts), list(counts.values()))
        # Each user's new seqs, last_seq - count + 1 … last_seq, go out in request order.
        next_seq = {u: int(last) - counts[u] + 1 for u, last in rows}
        columns: list[list[Any]] = [[] for _ in range(13)]
        values: list[list[tuple[Any, ...]]] = []
        for at, content, now, recipients, data, actions in todo:
            mine = []
            off = muted.get(at, set())
            for u in recipients:
                seq = next_seq[u]
                next_seq[u] = seq + 1
                full = insert_values(
                    new_id(), u, seq, content, now, (data, actions), in_app=u not in off
                )
                # The first 12 columns and in_app are the ones a new row sets; the rest
                # start empty.
                for column, value in zip(columns, (*full[:12], full[-1]), strict=True):
                    column.append(value)
                mine.append(full)
            values.append(mine)
        await conn.execute(_INSERT_MANY, *columns)
    else:
        values = [[] for _ in todo]
    plans: list[tuple[Any, ...]] = []
    for item, mine in zip(todo, values, strict=True):
        created = tuple(from_row(v) for v in mine)
        results[item[0]] = Created(
            created,
            replayed=False,
            skipped=skipped.get(item[0], ()),
            in_app_off=tuple(sorted(muted.get(item[0], ()))),
        )
        if item[1].escalation:
            plans += plan_rows(created, item[1].escalation)
    if plans:
        await conn.executemany(_PLAN, plans)
    return results


async def _create_one(
    conn: Any,
    content: NewNotification,
    user_ids: Sequence[str],
    now: float,
    key: str | None,
    fingerprint: str,
) -> Created:
    if key is not None:
        # Claim the key before writing anything. A concurrent transaction with the same key,
        # here or in another instance, blocks on the unique index until this one commits
        # (then replays or conflicts) or rolls back (then claims it itself).
        claimed = await conn.fetchval(
            "INSERT INTO idempotency (key, fingerprint, ids, created_at) "
            "VALUES ($1, $2, '[]', $3) ON CONFLICT (key) DO NOTHING RETURNING key",
            key,
            fingerprint,
            now,
        )
        if claimed is None:
            row = await conn.fetchrow(
                "SELECT fingerprint, ids FROM idempotency WHERE key = $1", key
            )
            if row is None:  # purged between the two statements
                raise _Retry(f"idempotency key {key!r} vanished")
            if row[0] != fingerprint:
                raise IdempotencyConflict(key)
            ids = msgspec.json.decode(row[1], type=list[str])
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM notifications WHERE id = ANY($1::text[])", ids
            )
            found = {r[0]: from_row(r) for r in rows}
            return Created(tuple(found[i] for i in ids if i in found), replayed=True)
    created: list[Notification] = []
    users = list(dict.fromkeys(user_ids))
    off = await _in_app_off(conn, users, content.category)
    # In-app off, other channels planned: the row is kept for them ("email only").
    muted = off if content.escalation else set()
    if off - muted:
        users = [u for u in users if u not in off]
    if users:
        seqs = {r[0]: int(r[1]) for r in await conn.fetch(_NEXT_SEQ, users)}
        values = [
            insert_values(new_id(), u, seqs[u], content, now, in_app=u not in muted) for u in users
        ]
        await conn.executemany(_INSERT, values)
        created = [from_row(v) for v in values]
        if content.escalation:
            await conn.executemany(_PLAN, plan_rows(created, content.escalation))
    if key is not None:
        await conn.execute(
            "UPDATE idempotency SET ids = $2 WHERE key = $1",
            key,
            dumps([n.id for n in created]),
        )
    return Created(
        tuple(created),
        replayed=False,
        skipped=tuple(sorted(off - muted)),
        in_app_off=tuple(sorted(muted)),
    )
