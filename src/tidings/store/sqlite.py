"""The SQLite store: the default, one file, WAL mode, group commit.

SQLite calls block, so each connection lives on its own one-thread executor: a writer
and a reader (WAL lets the reader see every committed transaction while the writer works).
``create`` calls that arrive while a batch is being written wait and go together in the
next transaction, each inside a savepoint, so one bad request fails alone and a burst
costs one commit (one fsync) instead of one per notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from . import (
    Created,
    IdempotencyConflict,
    NewNotification,
    Notification,
    StoreError,
    failure_status,
)
from .deliveries import PLAN, plan_rows
from .records import dumps, from_row, insert_values, new_id, page_query
from .schema import COLUMNS, LATEST, MIGRATIONS
from .sqlite_deliveries import SQLiteDeliveries
from .sqlite_rooms import SQLiteRooms
from .sqlite_users import SQLiteUsers
from .users import Erased

log = logging.getLogger("tidings.store.sqlite")

T = TypeVar("T")
_CreateArgs = tuple[NewNotification, Sequence[str], float, str | None, str]
# Users remembered as recorded (user id -> roles), at most this many.
_USERS_CACHED = 200_000
_LIVE = "archived_at IS NULL AND in_app <> 0 AND (expires_at IS NULL OR expires_at > ?)"


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    # timeout: how long a statement waits for a lock another connection holds.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed create survives a power cut too, not only a killed process; group
    # commit keeps the fsyncs few.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    # 64 MiB of page cache at most (the default is 2): a fan-out to 100,000 users touches
    # more pages than that, and spilling them mid-transaction doubles its time.
    conn.execute("PRAGMA cache_size=-65536")
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS tidings_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM tidings_schema").fetchone()
        current = row[0] or 0
        if current > LATEST:
            raise StoreError(f"database schema {current} is newer than this tidings ({LATEST})")
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO tidings_schema (version) VALUES (?)", (version,))
                log.info("applied schema migration %d", version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class _Thread:
    """One thread that runs blocking calls in order; each call's result comes back to
    the event loop as an asyncio future.

    Not a ThreadPoolExecutor: its submit() takes a Condition and a Semaphore on every
    call, and with the event loop and the thread on one core those handoffs cost more
    than a short query (under a connect storm, about a tenth of the server's CPU). A
    SimpleQueue and call_soon_threadsafe are all a call needs.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[
            tuple[
                asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]
            ]
            | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return future

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, fn, args = call
            if future.cancelled():  # its caller's deadline passed while it queued
                continue
            try:
                outcome = (True, fn(*args))
            except BaseException as exc:
                outcome = (False, exc)
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, *outcome)

    def shutdown(self) -> None:
        """Finish the calls already queued, then stop the thread."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


class SQLiteStore(SQLiteRooms, SQLiteUsers, SQLiteDeliveries):
    """The ``Store`` on SQLite. ``path`` is a file path or ``:memory:`` (tests).

    Every operation fails (``StoreError``, a 503) after ``timeout`` seconds: a lock held
    by another process on the file, or calls queued behind one that waits for it. A
    call whose caller gave up before it started is not run.
    """

    def __init__(self, path: str, *, timeout: float = 5.0) -> None:
        self._path = path
        self._timeout = timeout
        self._writer = _Thread("tidings-sqlite-writer")
        # An in-memory database is private to its connection: read through the writer.
        self._reader = self._writer if path == ":memory:" else _Thread("tidings-sqlite-reader")
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._pending: list[tuple[_CreateArgs, asyncio.Future[Created]]] = []
        # Whether any preference row exists. One process owns a SQLite file, so this stays
        # exact, and a create skips the preference query while nobody has any.
        self._has_preferences = True
        self._flusher: asyncio.Task[None] | None = None
        # remember_user: what this process committed, and the calls waiting to be.
        self._users: dict[str, tuple[str, ...]] = {}
        self._users_pending: list[
            tuple[tuple[str, tuple[str, ...], float], asyncio.Future[None]]
        ] = []
        self._users_flusher: asyncio.Task[None] | None = None
        # Transactions that recorded users: none for users already recorded as they are.
        self.user_commits = 0
        # Transactions that carried creates: fewer than creates means group commit works.
        self.create_commits = 0

    # --- plumbing -----------------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._w
        if conn is None:
            raise StoreError("store is not open")
        return await self._deadline(self._writer.run(fn, conn))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._r
        if conn is None:
            raise StoreError("store is not open")
        return await self._deadline(self._reader.run(fn, conn))

    async def _deadline(self, future: asyncio.Future[T]) -> T:
        # The busy timeout bounds one statement's wait for a lock; this bounds the call,
        # queueing behind others included. A timed-out call still queued is skipped.
        try:
            async with asyncio.timeout(self._timeout):
                return await future
        except TimeoutError:
            raise StoreError(f"the database did not answer within {self._timeout:g} s") from None

    async def open(self) -> None:
        self._w = await self._writer.run(_connect, self._path, self._timeout)
        await self._write(_migrate)
        self._has_preferences = await self._write(
            lambda c: c.execute("SELECT EXISTS (SELECT 1 FROM preferences)").fetchone()[0] == 1
        )
        if self._reader is self._writer:
            self._r = self._w
        else:
            self._r = await self._reader.run(_connect, self._path, self._timeout)

    async def close(self) -> None:
        while busy := [f for f in (self._flusher, self._users_flusher) if f and not f.done()]:
            await asyncio.gather(*busy)
        if self._r is not None and self._r is not self._w:
            await self._reader.run(self._r.close)
        if self._w is not None:
            await self._writer.run(self._w.close)
        self._r = self._w = None
        self._writer.shutdown()
        self._reader.shutdown()

    # --- create with group commit --------------------------------------------------------

    async def create(
        self,
        content: NewNotification,
        user_ids: Sequence[str],
        *,
        now: float,
        idempotency_key: str | None = None,
        fingerprint: str = "",
    ) -> Created:
        if self._w is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Created] = loop.create_future()
        self._pending.append(
            ((content, tuple(user_ids), now, idempotency_key, fingerprint), future)
        )
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await future

    async def create_for_role(
        self,
        content: NewNotification,
        role: str | None,
        *,
        now: float,
        idempotency_key: str | None = None,
        fingerprint: str = "",
    ) -> Created:
        if self._w is None:
            raise StoreError("store is not open")
        return await self._write(
            functools.partial(
                _fan_out,
                content=content,
                role=role,
                now=now,
                key=idempotency_key,
                fingerprint=fingerprint,
                preferences=self._has_preferences,
            )
        )

    async def _flush(self) -> None:
        while self._pending:
            # A caller whose deadline passed before its batch started needs nothing written.
            batch = [p for p in self._pending if not p[1].done()]
            self._pending = []
            if not batch:
                continue
            try:
                results = await self._write(
                    functools.partial(
                        _create_batch,
                        batch=[a for a, _ in batch],
                        preferences=self._has_preferences,
                    )
                )
            except Exception as exc:  # the commit itself failed: every request in it fails
                if failure_status(exc) is None:
                    log.exception("group commit of %d creates failed", len(batch))
                else:  # the database's trouble, answered 503/507: no traceback
                    log.warning("group commit of %d creates failed: %s", len(batch), exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreError(f"commit failed: {exc}"))
                continue
            self.create_commits += 1
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller was cancelled; the rows are committed anyway
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

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
        sql = f"SELECT COUNT(*) FROM notifications WHERE user_id=? AND read_at IS NULL AND {_LIVE}"
        return await self._read(lambda c: int(c.execute(sql, (user_id, now)).fetchone()[0]))

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

        def run(c: sqlite3.Connection) -> None:
            # One transaction for a whole batch of pushes, and one statement per user and
            # 500 ids: per-row statements cost more than the rows. Not synced on its own
            # (synchronous=NORMAL): a mark is a record, and the next create's commit, which
            # is synced, makes it durable along with itself; without this every round of
            # pushes costs a second fsync beside its creates'.
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("BEGIN IMMEDIATE")
            try:
                for user_id, ids in deliveries.items():
                    for i in range(0, len(ids), 500):
                        chunk = list(ids[i : i + 500])
                        c.execute(
                            "UPDATE notifications SET attempts = attempts + 1, "
                            "delivered_at = COALESCE(delivered_at, ?) "
                            # +user_id: look the rows up by id, not by scanning every row
                            # of the user (the planner prefers the (user_id, seq) index).
                            f"WHERE id IN ({_placeholders(len(chunk))}) AND +user_id = ?",
                            [now, *chunk, user_id],
                        )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            finally:
                c.execute("PRAGMA synchronous=FULL")

        await self._write(run)

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

    async def remember_user(self, user_id: str, roles: Sequence[str], *, now: float) -> None:
        # Every connection calls this, so a reconnect storm must not become a storm of
        # fsyncs: a user already recorded with these roles costs nothing (one process
        # owns the file, so what it committed is what the file holds), and the others
        # wait for the next group commit, one transaction for all of them.
        wanted = tuple(sorted(set(roles)))
        if self._users.get(user_id) == wanted:
            return
        if self._w is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._users_pending.append(((user_id, wanted, now), future))
        if self._users_flusher is None or self._users_flusher.done():
            self._users_flusher = loop.create_task(self._flush_users())
        await future

    async def erase_user(self, user_id: str) -> Erased:
        # Erasure unrecords the user: a later connection must record them again.
        self._users.pop(user_id, None)
        erased = await super().erase_user(user_id)
        self._users.pop(user_id, None)
        return erased

    async def _flush_users(self) -> None:
        while self._users_pending:
            batch, self._users_pending = self._users_pending, []
            try:
                wrote = await self._write(
                    functools.partial(_remember_batch, users=[a for a, _ in batch])
                )
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreError(f"commit failed: {exc}"))
                continue
            self.user_commits += wrote
            if len(self._users) + len(batch) > _USERS_CACHED:
                self._users.clear()  # only an optimisation: start over rather than grow
            for (user_id, wanted, _), future in batch:
                self._users[user_id] = wanted
                if not future.done():
                    future.set_result(None)

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


def _remember_batch(c: sqlite3.Connection, users: list[tuple[str, tuple[str, ...], float]]) -> bool:
    """Record the users of a batch whose row or roles differ, in one transaction (none
    when all of them are already recorded as they are: a restart's reconnects)."""
    changed = []
    for user_id, roles, now in users:
        row = c.execute("SELECT seen_at FROM inbox_users WHERE user_id=?", (user_id,)).fetchone()
        stored = sorted(
            r[0] for r in c.execute("SELECT role FROM user_roles WHERE user_id=?", (user_id,))
        )
        if row is None or row[0] is None or tuple(stored) != roles:
            changed.append((user_id, roles, now))
    if not changed:
        return False
    c.execute("BEGIN IMMEDIATE")
    try:
        for user_id, roles, now in changed:
            c.execute(
                "INSERT INTO inbox_users (user_id, seen_at) VALUES (?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET seen_at=excluded.seen_at",
                (user_id, now),
            )
            c.execute("DELETE FROM user_roles WHERE user_id=?", (user_id,))
            c.executemany(
                "INSERT INTO user_roles (user_id, role) VALUES (?, ?)",
                [(user_id, r) for r in roles],
            )
        c.execute("COMMIT")
    except BaseException:
        c.execute("ROLLBACK")
        raise
    return True


def _create_batch(
    c: sqlite3.Connection, batch: list[_CreateArgs], preferences: bool = True
) -> list[Created | Exception]:
    """Every create of a batch in one transaction: set-wise as far as it can go, then each
    of the rest in its own savepoint."""
    results: list[Created | Exception] = []
    c.execute("BEGIN IMMEDIATE")
    try:
        plain = _create_plain(c, batch, preferences)
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
    return results


def _create_plain(
    c: sqlite3.Connection, batch: list[_CreateArgs], preferences: bool
) -> dict[int, Created | Exception]:
    """The batch's creates, set-wise: one seq allocation and one insert for all of them
    (a burst of batch requests is thousands of rows), seqs in batch order. Returns their
    results by index in ``batch``; it stops before a key already used in the batch, and
    the requests it leaves out (those, and all of them if a statement fails, rolled back)
    go one by one in savepoints, after these."""
    results: dict[int, Created | Exception] = {}
    todo: list[
        tuple[int, NewNotification, float, list[str], set[str], set[str], tuple[Any, ...]]
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
        off = _in_app_off(c, users, content.category) if preferences else set()
        # In-app off, other channels planned: the row is kept for them ("email only").
        muted = off if content.escalation else set()
        if off - muted:
            users = [u for u in users if u not in off]
        todo.append((i, content, now, users, off, muted, template))
        for u in users:
            counts[u] = counts.get(u, 0) + 1
    if not todo:
        return results
    c.execute("SAVEPOINT plain")
    try:
        next_seq: dict[str, int] = {}
        if counts:
            c.executemany(
                "INSERT INTO inbox_users (user_id, last_seq) VALUES (?, ?) ON CONFLICT (user_id) "
                "DO UPDATE SET last_seq = last_seq + excluded.last_seq",
                list(counts.items()),
            )
            users = list(counts)
            for start in range(0, len(users), 500):
                chunk = users[start : start + 500]
                sql = (
                    "SELECT user_id, last_seq FROM inbox_users "
                    f"WHERE user_id IN ({_placeholders(len(chunk))})"
                )
                for user_id, last in c.execute(sql, chunk):
                    next_seq[user_id] = int(last) - counts[user_id] + 1
        rows: list[tuple[Any, ...]] = []
        plans: list[tuple[Any, ...]] = []
        replace = msgspec.structs.replace
        # As in a fan-out: ids of one random prefix and a counter append to the id index.
        prefix = new_id()[:-8]
        count = 0
        for i, content, now, users, off, muted, template in todo:
            first = from_row(template)
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
                rows.append((nid, user_id, seq, *template[3:]))
                created.append(replace(first, id=nid, user_id=user_id, seq=seq))
            if content.escalation:
                plans += plan_rows(created, content.escalation)
            results[i] = Created(
                tuple(created),
                replayed=False,
                skipped=tuple(sorted(off - muted)),
                in_app_off=tuple(sorted(muted)),
            )
        c.executemany(
            f"INSERT INTO notifications ({COLUMNS}) VALUES ({_placeholders(len(template))})", rows
        )
        if plans:
            c.executemany(PLAN, plans)
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
        c.execute("ROLLBACK TO plain")
        c.execute("RELEASE plain")
        return {}
    c.execute("RELEASE plain")
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
