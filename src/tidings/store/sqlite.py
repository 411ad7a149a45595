"""The SQLite store: the default, one file, WAL mode, group commit.

SQLite calls block, so each connection lives on its own one-thread executor: a writer
and a reader (WAL lets the reader see every committed transaction while the writer works).
``create`` calls that arrive while a batch is being written wait and go together in the
next transaction, set-wise (a few multi-row statements for all of them; should one fail,
the transaction starts over with each request inside a savepoint), so one bad request
fails alone and a burst costs one commit (one fsync) instead of one per notification.
``mark_delivered`` calls wait the same way and ride in that transaction, at its head (if
they fail, it starts over without them: a failed mark fails no create); with no create
to carry them they get one of their own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from . import (
    Created,
    Creation,
    NewNotification,
    StoreError,
    failure_status,
    settled,
)
from .sqlite_connection import _connect, _migrate, _Thread
from .sqlite_create import (
    _create_batch,
    _CreateArgs,
    _fan_out,
    _mark_alone,
    _remember_batch,
)
from .sqlite_deliveries import SQLiteDeliveries
from .sqlite_inbox import SQLiteInbox, count_unread
from .sqlite_rooms import SQLiteRooms
from .sqlite_users import SQLiteUsers
from .unread import UnreadCounts
from .users import Erased

log = logging.getLogger("tidings.store.sqlite")

T = TypeVar("T")
# Users remembered as recorded (user id -> roles), at most this many.
_USERS_CACHED = 200_000


class SQLiteStore(SQLiteInbox, SQLiteRooms, SQLiteUsers, SQLiteDeliveries):
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
        # Delivery marks waiting for the next group commit: (deliveries, now, caller).
        self._marks: list[tuple[Mapping[str, Sequence[str]], float, asyncio.Future[None]]] = []
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
        # unread_count: the counts connections opening together ask for, read together.
        self._unread = UnreadCounts(
            lambda asks: self._read(functools.partial(count_unread, asks=asks))
        )
        # Transactions that recorded users: none for users already recorded as they are.
        self.user_commits = 0
        # Transactions that carried creates: fewer than creates means group commit works.
        self.create_commits = 0
        # Transactions of delivery marks alone (those not carried by a create's).
        self.mark_commits = 0

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
        # queueing behind others included. A timed-out call still queued is skipped (its
        # future is done). A timer that settles the future, not asyncio.timeout: that
        # costs twice as much, and every group commit goes through here.
        timer = asyncio.get_running_loop().call_later(self._timeout, self._expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, future: asyncio.Future[T]) -> None:
        if not future.done():
            future.set_exception(
                StoreError(f"the database did not answer within {self._timeout:g} s")
            )

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

    async def create_many(self, creations: Sequence[Creation]) -> list[Created | Exception]:
        if self._w is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Created]] = []
        for content, user_ids, now, key, fingerprint in creations:
            future: asyncio.Future[Created] = loop.create_future()
            self._pending.append(((content, tuple(user_ids), now, key, fingerprint), future))
            futures.append(future)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await settled(futures)

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

    async def mark_delivered(self, deliveries: Mapping[str, Sequence[str]], *, now: float) -> None:
        if not any(deliveries.values()):
            return
        if self._w is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._marks.append((deliveries, now, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending or self._marks:
            # A caller whose deadline passed before its batch started needs nothing written.
            batch = [p for p in self._pending if not p[1].done()]
            self._pending = []
            marks, self._marks = self._marks, []
            if not batch:
                await self._flush_marks(marks)
                continue
            try:
                results, marked = await self._write(
                    functools.partial(
                        _create_batch,
                        batch=[a for a, _ in batch],
                        preferences=self._has_preferences,
                        marks=[(d, now) for d, now, _ in marks],
                    )
                )
            except Exception as exc:  # the commit itself failed: every request in it fails
                if failure_status(exc) is None:
                    log.exception("group commit of %d creates failed", len(batch))
                else:  # the database's trouble, answered 503/507: no traceback
                    log.warning("group commit of %d creates failed: %s", len(batch), exc)
                failed = StoreError(f"commit failed: {exc}")
                for future in [f for _, f in batch] + [f for _, _, f in marks]:
                    if not future.done():
                        future.set_exception(failed)
                continue
            self.create_commits += 1
            for _, _, future in marks:
                if not future.done():
                    if marked is None:
                        future.set_result(None)
                    else:
                        future.set_exception(marked)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller was cancelled; the rows are committed anyway
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _flush_marks(
        self, marks: list[tuple[Mapping[str, Sequence[str]], float, asyncio.Future[None]]]
    ) -> None:
        """Marks with no create to carry them: a transaction of their own."""
        marks = [m for m in marks if not m[2].done()]
        if not marks:
            return
        try:
            await self._write(functools.partial(_mark_alone, marks=[(d, t) for d, t, _ in marks]))
        except Exception as exc:
            for _, _, future in marks:
                if not future.done():
                    future.set_exception(exc)
            return
        self.mark_commits += 1
        for _, _, future in marks:
            if not future.done():
                future.set_result(None)

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
