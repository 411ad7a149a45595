"""The SQLite store's write transactions: group-committed creates (which carry the
delivery marks waiting meanwhile), role fan-out and the batch that records connected
users.

Each function runs on ``SQLiteStore``'s writer thread with its connection; the store
queues the calls and settles their futures.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final, TypeVar

import msgspec

from . import (
    Created,
    IdempotencyConflict,
    NewNotification,
    Notification,
    StoreError,
)
from .deliveries import PLAN, plan_rows
from .records import dumps, from_row, insert_values, new_id
from .schema import COLUMNS
from .sqlite_connection import _placeholders

log = logging.getLogger("tidings.store.sqlite")

T = TypeVar("T")

_CreateArgs = tuple[NewNotification, Sequence[str], float, str | None, str]
# Users per query when recording them: under SQLite's host-parameter limit.
_USERS_CHUNK = 500
# Delivery marks waiting for a transaction: ({user_id: [ids]}, when), one per call.
Marks = list[tuple[Mapping[str, Sequence[str]], float]]


# No recipient: what a create without preferences to check has switched off.
_NOBODY: Final[frozenset[str]] = frozenset()

# Rows per multi-row statement, at most. Every statement of a group commit costs a trip
# through the sqlite3 module (and, with the event loop wanting the GIL, a thread switch
# for each row an executemany steps): one statement for a whole round of rows costs
# little more than one row. Shorter runs get a statement of their exact length; the
# statement cache keeps each length prepared.
_ROWS: Final = 64


def _runs(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in runs of at most ``_ROWS``."""
    for i in range(0, len(items), _ROWS):
        yield items[i : i + _ROWS]


def _rows(n: int, width: int) -> str:
    """``(?,…),(?,…)…``: n rows of ``width`` parameters."""
    row = f"({_placeholders(width)})"
    return ",".join([row] * n)


def _mark(c: sqlite3.Connection, marks: Marks) -> None:
    """Count a delivery attempt for each id of ``marks``, and set ``delivered_at`` on the
    first; inside the caller's transaction."""
    for deliveries, now in marks:
        pairs = [(nid, user_id) for user_id, ids in deliveries.items() for nid in ids]
        for run in _runs(pairs):
            # Joined on the id's index (a row-value IN would scan the table); the user
            # must match too.
            c.execute(
                "UPDATE notifications SET attempts = attempts + 1, "
                "delivered_at = COALESCE(delivered_at, ?) "
                f"FROM (VALUES {_rows(len(run), 2)}) AS d "
                "WHERE notifications.id = d.column1 AND notifications.user_id = d.column2",
                [now, *itertools.chain.from_iterable(run)],
            )


def _allocate(c: sqlite3.Connection, counts: dict[str, int]) -> dict[str, int]:
    """Take ``counts[user]`` seqs for each user; returns each one's first."""
    first: dict[str, int] = {}
    for run in _runs(list(counts.items())):
        for user_id, last in c.execute(
            f"INSERT INTO inbox_users (user_id, last_seq) VALUES {_rows(len(run), 2)} "
            "ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + excluded.last_seq "
            "RETURNING user_id, last_seq",
            list(itertools.chain.from_iterable(run)),
        ):
            first[user_id] = int(last) - counts[user_id] + 1
    return first


def _insert(c: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """``rows`` into notifications, a run of them per statement."""
    for run in _runs(rows):
        c.execute(
            f"INSERT INTO notifications ({COLUMNS}) VALUES {_rows(len(run), len(run[0]))}",
            list(itertools.chain.from_iterable(run)),
        )


def _unsynced(c: sqlite3.Connection, write: Callable[[sqlite3.Connection], object]) -> None:
    """``write`` in a transaction committed without an fsync (``synchronous=NORMAL``).

    For records, never for anything a client was answered about: in WAL mode such a
    commit survives a killed process, and the next synced commit (every create's) syncs
    the log up to and including it, so after a power cut the file holds a prefix of the
    commits and no create can depend on a record that was lost. What a power cut can lose
    is only the records committed after the last create (a delivery mark, a user first
    seen a moment before), which the next connect or push writes again."""
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("BEGIN IMMEDIATE")
    try:
        write(c)
        c.execute("COMMIT")
    except BaseException:
        c.execute("ROLLBACK")
        raise
    finally:
        c.execute("PRAGMA synchronous=FULL")


def _mark_alone(c: sqlite3.Connection, marks: Marks) -> None:
    """``marks`` in a transaction of their own, when no create is there to carry them
    (not synced on its own: see ``_unsynced``)."""
    _unsynced(c, lambda c: _mark(c, marks))


def _remember_batch(c: sqlite3.Connection, users: list[tuple[str, tuple[str, ...], float]]) -> bool:
    """Record the users of a batch whose row or roles differ, in one transaction (none
    when all of them are already recorded as they are: a restart's reconnects).

    Set-wise: a reconnect storm brings hundreds of users per batch, and two statements
    per user to compare, then three to write, cost the writer more than the commit."""
    ids = list(dict.fromkeys(user_id for user_id, _, _ in users))
    seen: dict[str, float | None] = {}
    stored: dict[str, list[str]] = {user_id: [] for user_id in ids}
    for i in range(0, len(ids), _USERS_CHUNK):
        chunk = ids[i : i + _USERS_CHUNK]
        marks = _placeholders(len(chunk))
        sql = f"SELECT user_id, seen_at FROM inbox_users WHERE user_id IN ({marks})"
        seen.update(c.execute(sql, chunk).fetchall())
        sql = f"SELECT user_id, role FROM user_roles WHERE user_id IN ({marks})"
        for user_id, role in c.execute(sql, chunk):
            stored[user_id].append(role)
    # The last of a user's calls in the batch is what ends up recorded (as when each was
    # written in turn): compared with what the file holds, it is a change or it is not.
    last = {user_id: (roles, now) for user_id, roles, now in users}
    changed = [
        (user_id, roles, now)
        for user_id, (roles, now) in last.items()
        if seen.get(user_id) is None or tuple(sorted(stored[user_id])) != roles
    ]
    if not changed:
        return False

    def write(c: sqlite3.Connection) -> None:
        c.executemany(
            "INSERT INTO inbox_users (user_id, seen_at) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET seen_at=excluded.seen_at",
            [(user_id, now) for user_id, _, now in changed],
        )
        c.executemany(
            "DELETE FROM user_roles WHERE user_id=?",
            [(user_id,) for user_id, _, _ in changed if stored[user_id]],
        )
        c.executemany(
            "INSERT INTO user_roles (user_id, role) VALUES (?, ?)",
            [(user_id, r) for user_id, roles, _ in changed for r in roles],
        )

    # A user record is not synced on its own (``_unsynced``): in a storm of first
    # connects the fsync per batch was the writer's largest cost (about 27 µs a connect).
    _unsynced(c, write)
    return True


def _create_batch(
    c: sqlite3.Connection,
    batch: list[_CreateArgs],
    preferences: bool = True,
    marks: Marks | None = None,
) -> tuple[list[Created | Exception], Exception | None]:
    """Every create of a batch in one transaction: set-wise as far as it can go, then each
    of the rest in its own savepoint; and the delivery ``marks`` waiting meanwhile (a
    failed mark fails no create). Returns the creates' results and what failed the marks
    (None: written)."""
    results: list[Created | Exception] = []
    marked: Exception | None = None
    c.execute("BEGIN IMMEDIATE")
    try:
        if marks:
            # Carried by this commit instead of a transaction (and a wake-up of this
            # thread) of their own. First, so that nothing else is undone if they fail:
            # the transaction starts over without them.
            try:
                _mark(c, marks)
            except Exception as exc:
                if not c.in_transaction:
                    raise
                marked = StoreError(f"delivery marks failed: {exc}")
                c.execute("ROLLBACK")
                c.execute("BEGIN IMMEDIATE")
        try:
            plain = _create_plain(c, batch, preferences)
        except _SetWiseFailed:
            # Undone by starting over (a savepoint around it would cost two statements in
            # every batch): the marks again, then every request one by one.
            c.execute("ROLLBACK")
            c.execute("BEGIN IMMEDIATE")
            if marks and marked is None:
                _mark(c, marks)
            plain = {}
        for i, args in enumerate(batch):
            done = plain.get(i)
            if done is not None:
                results.append(done)
                continue
            c.execute("SAVEPOINT one")
            try:
                results.append(_create_one(c, *args, preferences=preferences))
            except Exception as exc:  # whatever goes wrong with one request fails it alone
                if not c.in_transaction:
                    # SQLite rolled the whole transaction back (a full disk, an I/O
                    # error): the batch fails, with the error that says why.
                    raise
                c.execute("ROLLBACK TO one")
                results.append(exc)
            c.execute("RELEASE one")
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise
    return results, marked


class _SetWiseFailed(Exception):
    """The set-wise create failed; what it wrote must be undone by the caller."""


def _create_plain(
    c: sqlite3.Connection, batch: list[_CreateArgs], preferences: bool
) -> dict[int, Created | Exception]:
    """The batch's creates, set-wise: one seq allocation and one insert for all of them
    (a burst of batch requests is thousands of rows), seqs in batch order. Returns their
    results by index in ``batch``; it stops before a key already used in the batch, and
    the requests it leaves out go one by one in savepoints, after these. If a statement
    fails it raises ``_SetWiseFailed``: the caller undoes what it wrote (it writes
    nothing before its first statement that can fail) and runs all of them one by one."""
    results: dict[int, Created | Exception] = {}
    todo: list[
        tuple[
            int,
            NewNotification,
            float,
            list[str],
            AbstractSet[str],
            AbstractSet[str],
            tuple[Any, ...],
        ]
    ] = []
    counts: dict[str, int] = {}
    keyed: dict[int, tuple[str, str]] = {}
    for i, (content, user_ids, now, key, fingerprint) in enumerate(batch):
        if key is not None:
            if key in {k for k, _ in keyed.values()}:
                break  # the one-by-one path sees the first's record and replays it
            try:
                replay = _replay(c, key, fingerprint)
            except IdempotencyConflict as exc:
                results[i] = exc
                continue
            if replay is not None:
                results[i] = replay
                continue
            keyed[i] = (key, fingerprint)
        try:
            template = insert_values("", "", 0, content, now)
        except Exception as exc:  # its data cannot be encoded: it fails alone
            results[i] = exc
            continue
        users = list(dict.fromkeys(user_ids))
        off: AbstractSet[str] = _in_app_off(c, users, content.category) if preferences else _NOBODY
        # In-app off, other channels planned: the row is kept for them ("email only").
        muted = off if content.escalation else _NOBODY
        if off and off - muted:
            users = [u for u in users if u not in off]
        todo.append((i, content, now, users, off, muted, template))
        for u in users:
            counts[u] = counts.get(u, 0) + 1
    if not todo:
        return results
    try:
        next_seq = _allocate(c, counts)
        rows: list[tuple[Any, ...]] = []
        plans: list[tuple[Any, ...]] = []
        replace = msgspec.structs.replace
        # As in a fan-out: ids of one random prefix and a counter append to the id index.
        prefix = new_id()[:-8]
        count = 0
        for i, content, now, users, off, muted, template in todo:
            # Built once per request and copied per recipient; a request for one
            # recipient (the common create) is built from its row straight away.
            first = None if len(users) == 1 else from_row(template)
            created = []
            for user_id in users:
                seq = next_seq[user_id]
                next_seq[user_id] = seq + 1
                nid = f"{prefix}{count:08x}"
                count += 1
                if user_id in muted or user_id in content.texts:
                    # A row of its own: its rendered text, or in-app off.
                    row = insert_values(
                        nid, user_id, seq, content, now, template[8:10], in_app=user_id not in muted
                    )
                    rows.append(row)
                    created.append(from_row(row))
                    continue
                row = (nid, user_id, seq, *template[3:])
                rows.append(row)
                if first is None:
                    created.append(from_row(row))
                else:
                    created.append(replace(first, id=nid, user_id=user_id, seq=seq))
            if content.escalation:
                plans += plan_rows(created, content.escalation)
            results[i] = Created(
                tuple(created),
                replayed=False,
                skipped=tuple(sorted(off - muted)) if off else (),
                in_app_off=tuple(sorted(muted)) if muted else (),
            )
        if rows:
            _insert(c, rows)
        if plans:
            c.executemany(PLAN, plans)
        if keyed:
            c.executemany(
                "INSERT INTO idempotency (key, fingerprint, ids, created_at) VALUES (?,?,?,?)",
                [
                    (key, fp, dumps([n.id for n in r.notifications]), batch[i][2])
                    for i, (key, fp) in keyed.items()
                    if isinstance(r := results[i], Created)
                ],
            )
    except Exception as exc:
        if not c.in_transaction:
            raise  # the transaction is gone (a full disk): the batch fails
        log.warning("set-wise create of %d requests failed (%r); one by one", len(todo), exc)
        raise _SetWiseFailed from exc
    return results


# Recipients of a role or of everyone, as users_with_role and all_users resolve them.
_ROLE_TARGETS = (
    "SELECT user_id FROM user_roles WHERE role = ?1 "
    "UNION SELECT user_id FROM directory_roles WHERE role = ?1"
)
_ALL_TARGETS = (
    "SELECT user_id FROM inbox_users WHERE seen_at IS NOT NULL "
    "UNION SELECT user_id FROM directory_users"
)
# A recipient whose in-app switch for the category (or else "*") is off gets no row.
_OFF_WHERE = (
    "WHERE COALESCE("
    "(SELECT in_app FROM preferences p WHERE p.user_id = fan_out.user_id AND p.category = ?),"
    "(SELECT in_app FROM preferences p WHERE p.user_id = fan_out.user_id AND p.category = '*'),"
    " 1) = 0"
)
_SWITCHED_OFF = f"DELETE FROM temp.fan_out {_OFF_WHERE} RETURNING user_id"
_MUTED = f"SELECT user_id FROM temp.fan_out {_OFF_WHERE}"


def _fan_out(
    c: sqlite3.Connection,
    content: NewNotification,
    role: str | None,
    now: float,
    key: str | None,
    fingerprint: str,
    preferences: bool,
) -> Created:
    """One notification for every user of ``role`` (None: everyone), set-wise: the
    recipients, their seqs and their rows are each one statement, whatever their number
    (100,000 users in well under a second), in one transaction."""
    c.execute("BEGIN IMMEDIATE")
    try:
        if key is not None:
            replay = _replay(c, key, fingerprint)
            if replay is not None:
                c.execute("ROLLBACK")
                return replay
        # Rowids follow user id order (the targets come sorted): they number the rows.
        c.execute("CREATE TEMP TABLE IF NOT EXISTS fan_out (user_id TEXT PRIMARY KEY NOT NULL)")
        c.execute("DELETE FROM temp.fan_out")
        if role is not None:
            c.execute(f"INSERT INTO temp.fan_out (user_id) {_ROLE_TARGETS} ORDER BY 1", (role,))
        else:
            c.execute(f"INSERT INTO temp.fan_out (user_id) {_ALL_TARGETS} ORDER BY 1")
        off: list[str] = []
        muted: set[str] = set()
        if preferences:
            cat = content.category if content.category is not None else "*"
            if content.escalation:
                # In-app off, other channels planned: their rows are kept for them.
                muted = {r[0] for r in c.execute(_MUTED, (cat,))}
            else:
                off = sorted(r[0] for r in c.execute(_SWITCHED_OFF, (cat,)))
        c.execute(
            "INSERT INTO inbox_users (user_id, last_seq) SELECT user_id, 0 FROM temp.fan_out "
            "WHERE true ON CONFLICT (user_id) DO NOTHING"
        )
        c.execute(
            "UPDATE inbox_users SET last_seq = last_seq + 1 "
            "WHERE user_id IN (SELECT user_id FROM temp.fan_out)"
        )
        # Ids share a random prefix and end in a counter: unguessable enough (96 random
        # bits per transaction, and every read checks the owner anyway), and in index
        # order, so 100,000 of them append to the id index instead of landing all over it.
        prefix = new_id()[:-8]
        template = insert_values("", "", 0, content, now)
        c.execute(
            f"INSERT INTO notifications ({COLUMNS}) SELECT ? || printf('%08x', f.rowid), "
            f"f.user_id, i.last_seq, {_placeholders(len(template) - 3)} "
            "FROM temp.fan_out f JOIN inbox_users i ON i.user_id = f.user_id",
            (prefix, *template[3:]),
        )
        first = from_row(template)
        replace = msgspec.structs.replace
        created = tuple(
            replace(
                first, id=f"{prefix}{n:08x}", user_id=user_id, seq=seq, in_app=user_id not in muted
            )
            for n, user_id, seq in c.execute(
                "SELECT f.rowid, f.user_id, i.last_seq FROM temp.fan_out f "
                "JOIN inbox_users i ON i.user_id = f.user_id ORDER BY f.rowid"
            )
        )
        if muted:
            c.executemany(
                "UPDATE notifications SET in_app = 0 WHERE id = ?",
                [(n.id,) for n in created if not n.in_app],
            )
        if content.escalation:
            c.executemany(PLAN, plan_rows(created, content.escalation))
        if key is not None:
            c.execute(
                "INSERT INTO idempotency (key, fingerprint, ids, created_at) VALUES (?,?,?,?)",
                (key, fingerprint, dumps([n.id for n in created]), now),
            )
        c.execute("DELETE FROM temp.fan_out")
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise
    return Created(created, replayed=False, skipped=tuple(off), in_app_off=tuple(sorted(muted)))


def _replay(c: sqlite3.Connection, key: str, fingerprint: str) -> Created | None:
    """What an idempotency key already created (None: the key is new).

    Raises:
        IdempotencyConflict: the key was used by a different request.
    """
    row = c.execute("SELECT fingerprint, ids FROM idempotency WHERE key=?", (key,)).fetchone()
    if row is None:
        return None
    if row[0] != fingerprint:
        raise IdempotencyConflict(key)
    ids: list[str] = msgspec.json.decode(row[1])
    found: dict[str, Notification] = {}
    # Chunks keep the statement under SQLite's variable limit.
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        sql = f"SELECT {COLUMNS} FROM notifications WHERE id IN ({_placeholders(len(chunk))})"
        found.update((r[0], from_row(r)) for r in c.execute(sql, chunk))
    return Created(tuple(found[i] for i in ids if i in found), replayed=True)


def _in_app_off(c: sqlite3.Connection, users: list[str], category: str | None) -> set[str]:
    """Those of ``users`` whose switch for ``category`` (or else ``*``) is off."""
    cat = category if category is not None else "*"
    off: set[str] = set()
    # Chunks keep the statement under SQLite's variable limit.
    for i in range(0, len(users), 500):
        chunk = users[i : i + 500]
        rows = c.execute(
            "SELECT user_id, category, in_app FROM preferences WHERE category IN (?, '*') "
            f"AND user_id IN ({_placeholders(len(chunk))})",
            [cat, *chunk],
        )
        switches: dict[str, dict[str, int]] = {}
        for user, category_, on in rows:
            switches.setdefault(user, {})[category_] = on
        off.update(u for u, s in switches.items() if not s.get(cat, s.get("*", 1)))
    return off


def _create_one(
    c: sqlite3.Connection,
    content: NewNotification,
    user_ids: Sequence[str],
    now: float,
    key: str | None,
    fingerprint: str,
    *,
    preferences: bool = True,
) -> Created:
    if key is not None:
        replay = _replay(c, key, fingerprint)
        if replay is not None:
            return replay
    created = []
    users = list(dict.fromkeys(user_ids))
    off = _in_app_off(c, users, content.category) if preferences else set()
    # In-app off, other channels planned: the row is kept for them ("email only").
    muted = off if content.escalation else set()
    for user_id in users:
        if user_id in off and user_id not in muted:
            continue
        seq = c.execute(
            "INSERT INTO inbox_users (user_id, last_seq) VALUES (?, 1) ON CONFLICT (user_id) "
            "DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
            (user_id,),
        ).fetchone()[0]
        values = insert_values(
            new_id(), user_id, int(seq), content, now, in_app=user_id not in muted
        )
        c.execute(
            f"INSERT INTO notifications ({COLUMNS}) VALUES ({_placeholders(len(values))})", values
        )
        created.append(from_row(values))
    if content.escalation:
        c.executemany(PLAN, plan_rows(created, content.escalation))
    if key is not None:
        c.execute(
            "INSERT INTO idempotency (key, fingerprint, ids, created_at) VALUES (?,?,?,?)",
            (key, fingerprint, dumps([n.id for n in created]), now),
        )
    return Created(
        tuple(created),
        replayed=False,
        skipped=tuple(sorted(off - muted)),
        in_app_off=tuple(sorted(muted)),
    )
