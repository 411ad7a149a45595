"""The PostgreSQL store: an asyncpg pool, migrations under an advisory lock, group commit.

Several tidings instances may share one database, so whatever must be unique or ordered
is decided by PostgreSQL, not by this process: a user's next ``seq`` comes from an upsert
of their ``inbox_users`` row, whose row lock queues every other create for that user (in
any instance) until the holder commits, so seq order is commit order; an idempotency key
is claimed by inserting it before any notification is written, so a second transaction
with the same key waits on the unique index and then replays or conflicts.

As in the SQLite store, ``create`` calls that arrive while a batch is being written wait
and go together in the next transaction, so a burst costs one commit (one WAL flush)
instead of one per notification; ``mark_delivered`` calls waiting meanwhile ride in that
transaction too, at its head (if the database refuses them, the transaction runs again
without them: a failed mark fails no create; with no create to carry them, they are a
statement of their own). Requests without an idempotency key are written
set-wise, a fixed handful of statements for the whole batch; each keyed one goes inside a
savepoint. If the set-wise part fails, the batch is rolled back and rerun with every request
in a savepoint, so one bad request fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import asyncpg

from . import (
    Created,
    Creation,
    NewNotification,
    StoreError,
    failure_status,
    settled,
)
from .postgres_create import (
    _LOCK_USERS,
    Marks,
    _create_keyed,
    _create_plain,
    _Fallback,
    _mark,
    _MarksFailed,
    _Request,
    _Retry,
)
from .postgres_deliveries import PostgresDeliveries
from .postgres_inbox import PostgresInbox
from .postgres_rooms import PostgresRooms
from .postgres_users import PostgresUsers
from .schema import LATEST, MIGRATIONS
from .unread import UnreadCounts

log = logging.getLogger("tidings.store.postgres")

# Every tidings takes the same lock, so migrations of any schema in the database are
# serialised; they are rare and short, and a per-schema key would buy nothing.
_MIGRATION_LOCK: Final = 0x7469_6469_6E67  # "tiding"
# A request that lost a deadlock (possible only against another instance's transaction)
# goes into the next batch, after this one has committed and released its row locks; so
# does a replay whose key was purged under it. After this many tries it fails.
_TRIES: Final = 3


async def _migrate(conn: Any) -> None:
    """Apply pending migrations; the caller holds a transaction on ``conn``."""
    # Instances starting together: the second waits here (the lock is released at commit)
    # and then finds the migrations applied. It also keeps CREATE TABLE IF NOT EXISTS from
    # racing, which PostgreSQL does not make safe on its own.
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
    await conn.execute("CREATE TABLE IF NOT EXISTS tidings_schema (version INTEGER NOT NULL)")
    current = int(await conn.fetchval("SELECT MAX(version) FROM tidings_schema") or 0)
    if current > LATEST:
        raise StoreError(f"database schema {current} is newer than this tidings ({LATEST})")
    for version, statements in MIGRATIONS:
        if version > current:
            for statement in statements:
                await conn.execute(str(statement))  # asyncpg takes an exact str
            await conn.execute("INSERT INTO tidings_schema (version) VALUES ($1)", version)
            log.info("applied schema migration %d", version)


def _settle_marks(
    marks: list[tuple[Mapping[str, Sequence[str]], float, asyncio.Future[None]]],
    failed: Exception | None,
) -> None:
    """Answer the callers of ``mark_delivered`` whose marks were written (or not)."""
    for _, _, future in marks:
        if not future.done():
            if failed is None:
                future.set_result(None)
            else:
                future.set_exception(failed)


class PostgresStore(PostgresInbox, PostgresRooms, PostgresUsers, PostgresDeliveries):
    """The ``Store`` on PostgreSQL. ``url`` is a ``postgresql://`` DSN; query parameters
    asyncpg does not know are sent as server settings (``?search_path=inbox``).

    Every statement fails (``TimeoutError``, a 503) after ``timeout`` seconds: a lock
    held elsewhere (``LOCK TABLE``), a stalled server; asyncpg then cancels it.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout
        self._pool: Any = None
        self._pending: list[_Request] = []
        # Delivery marks waiting for the next group commit: (deliveries, now, caller).
        self._marks: list[tuple[Mapping[str, Sequence[str]], float, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Transactions that carried creates: fewer than creates means group commit works.
        self.create_commits = 0
        # Transactions that recorded users: none for users already recorded as they are.
        self.user_commits = 0
        # unread_count: the counts connections opening together ask for, read together.
        self._unread = UnreadCounts(self._count_unread)
        # Transactions of delivery marks alone (those not carried by a create's).
        self.mark_commits = 0

    # --- plumbing -----------------------------------------------------------------------

    def _db(self) -> Any:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    async def open(self) -> None:
        pool = await asyncpg.create_pool(
            self._url,
            min_size=1,
            max_size=10,
            command_timeout=self._timeout,
            # Every execution planned for the tables as they are now: a pooled connection
            # lives long, and the generic plan PostgreSQL settles on after five runs of a
            # prepared statement, if picked while a table was small, stays for good (the
            # delivery mark stayed a sequential scan of every notification as the table
            # grew: tests/store/test_schema.py). Planning costs less than that risk.
            server_settings={"plan_cache_mode": "force_custom_plan"},
        )
        try:
            async with pool.acquire() as conn, conn.transaction():
                await _migrate(conn)
        except Exception:
            await pool.close()
            raise
        except BaseException:  # cancelled: no awaiting now
            pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        # A create arriving meanwhile starts a new flusher: wait until none is left.
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

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
        self._db()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Created] = loop.create_future()
        self._pending.append(
            _Request((content, tuple(user_ids), now, idempotency_key, fingerprint), future)
        )
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await future

    async def create_many(self, creations: Sequence[Creation]) -> list[Created | Exception]:
        self._db()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Created]] = []
        for content, user_ids, now, key, fingerprint in creations:
            future: asyncio.Future[Created] = loop.create_future()
            self._pending.append(
                _Request((content, tuple(user_ids), now, key, fingerprint), future)
            )
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
        # The recipients are resolved first; the group commit's set-wise path then writes
        # their rows with a handful of statements, however many there are.
        users = await (self.users_with_role(role) if role is not None else self.all_users())
        return await self.create(
            content, users, now=now, idempotency_key=idempotency_key, fingerprint=fingerprint
        )

    async def mark_delivered(self, deliveries: Mapping[str, Sequence[str]], *, now: float) -> None:
        if not any(deliveries.values()):
            return
        self._db()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._marks.append((deliveries, now, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        # One connection for a whole burst of batches, returned when the queue is empty:
        # each return to the pool costs a reset query (a round trip) in every batch.
        while True:
            held: list[Any] = [None]
            try:
                await self._flush_on(held)
            finally:
                if held[0] is not None:
                    await self._db().release(held[0])
            # Creates that came while it was being returned: create() saw this task
            # still running and started none.
            if not (self._pending or self._marks):
                return

    async def _flush_on(self, held: list[Any]) -> None:
        """The flusher's loop; ``held[0]`` is its connection (None: none yet)."""
        while self._pending or self._marks:
            # A caller cancelled before its batch started needs nothing written.
            batch = [r for r in self._pending if not r.future.done()]
            self._pending = []
            marks, self._marks = [m for m in self._marks if not m[2].done()], []
            # Keys are claimed in one global order, so two instances' batches holding the
            # same keys cannot deadlock; requests of one transaction have no order to keep.
            # Unkeyed requests go first: they are written set-wise, as one block.
            batch.sort(key=lambda r: (r.args[3] is not None, r.args[3] or ""))
            marked: Exception | None = None
            try:
                if (batch or marks) and held[0] is None:
                    held[0] = await self._db().acquire()
                if not batch:
                    if marks:
                        await self._mark_alone(held[0], [(d, t) for d, t, _ in marks])
                        _settle_marks(marks, None)
                    continue
                results, marked = await self._create_batch(
                    held[0], batch, [(d, t) for d, t, _ in marks]
                )
            except Exception as exc:  # the commit itself failed: every request in it fails
                if batch:
                    if failure_status(exc) is None:
                        log.exception("group commit of %d creates failed", len(batch))
                    else:  # the database's trouble, answered 503/507: no traceback
                        log.warning("group commit of %d creates failed: %s", len(batch), exc)
                failed = StoreError(f"commit failed: {exc}")
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(failed)
                _settle_marks(marks, failed)
                # The connection may be what failed (a timeout, a lost link): the pool
                # checks it on its return, and the next batch takes another.
                conn, held[0] = held[0], None
                if conn is not None:
                    await self._db().release(conn)
                continue
            except BaseException:  # this task was cancelled: leave no caller waiting forever
                closing = StoreError("store is closing")
                for r in batch + self._pending:
                    if not r.future.done():
                        r.future.set_exception(closing)
                _settle_marks(marks + self._marks, closing)
                self._pending, self._marks = [], []
                raise
            self.create_commits += 1
            _settle_marks(marks, marked)
            retry = []
            for r, result in zip(batch, results, strict=False):
                if r.future.done():  # the caller was cancelled; the rows are committed anyway
                    continue
                if isinstance(result, _Retry):
                    r.tries += 1
                    if r.tries < _TRIES:
                        retry.append(r)
                        continue
                    result = StoreError(f"create failed: {result}")
                if isinstance(result, BaseException):
                    r.future.set_exception(result)
                else:
                    r.future.set_result(result)
            # Requests after a deadlock were not tried; they and the retries go first
            # into the next batch.
            retry += batch[len(results) :]
            if retry:
                self._pending[:0] = retry

    async def _mark_alone(self, conn: Any, marks: Marks) -> None:
        """Delivery marks with no create to carry them."""
        self.mark_commits += 1
        if len(marks) == 1:  # the usual case: one statement, its own transaction
            await _mark(conn, marks)
            return
        async with conn.transaction():
            await _mark(conn, marks)

    async def _create_batch(
        self, conn: Any, batch: list[_Request], marks: Marks
    ) -> tuple[list[Created | Exception], Exception | None]:
        """Every create of a batch in one transaction, with the delivery ``marks``
        waiting meanwhile at its head. Returns the creates' results and what failed the
        marks (None: written): then the batch ran again without them."""
        if marks:
            try:
                return await self._create_all(conn, batch, marks), None
            except _MarksFailed as exc:
                return await self._create_all(conn, batch, []), exc.error
        return await self._create_all(conn, batch, []), None

    async def _create_all(
        self, conn: Any, batch: list[_Request], marks: Marks
    ) -> list[Created | Exception]:
        """``_create_batch`` once.

        The unkeyed requests (first in the batch) are written set-wise, with a few
        statements for all of them (``_create_plain``); each keyed request then goes in a
        savepoint of its own. Should the set-wise part fail (a value PostgreSQL rejects, say),
        the transaction is rolled back and the whole batch run request by request, so the
        failing request fails alone.

        Returns one result per request, or fewer when a deadlock cut the batch short: the
        requests after it were not tried.
        """
        plain = 0
        while plain < len(batch) and batch[plain].args[3] is None:
            plain += 1
        if not plain:
            return await self._create_each(conn, batch, marks)
        users = sorted({u for r in batch for u in r.args[1]})
        try:
            async with conn.transaction():
                await _mark(conn, marks)
                # As in _create_each: every user of the batch first, in one global order.
                try:
                    await conn.execute(_LOCK_USERS, users)
                    results: list[Created | Exception] = await _create_plain(conn, batch[:plain])
                except Exception as exc:
                    if isinstance(exc, TimeoutError | OSError):
                        raise  # the database is stalled or gone: one by one would be too
                    raise _Fallback(exc) from exc
                await _create_keyed(conn, batch[plain:], results)
            return results
        except _Fallback as exc:
            log.warning(
                "set-wise create of %d requests failed (%r); one by one instead",
                plain,
                exc.__cause__,
            )
        return await self._create_each(conn, batch, marks)

    async def _create_each(
        self, conn: Any, batch: list[_Request], marks: Marks
    ) -> list[Created | Exception]:
        """Every create of a batch in one transaction, each in its own savepoint, after
        the delivery ``marks``."""
        results: list[Created | Exception] = []
        users = sorted({u for r in batch for u in r.args[1]})
        async with conn.transaction():
            await _mark(conn, marks)
            # Each request locks its users as it goes, so the batch as a whole would lock
            # them in no particular order, and two instances' batches could deadlock. Taking
            # them all first, in one global order, rules that out (as sorting the batch by
            # key does for key claims); a deadlock that happens all the same is handled
            # below.
            await conn.execute(_LOCK_USERS, users)
            await _create_keyed(conn, batch, results)
        return results

    async def remember_user(self, user_id: str, roles: Sequence[str], *, now: float) -> None:
        wanted = sorted(set(roles))
        # Every connection calls this: a user already recorded with these roles (a
        # reconnect) costs one read, not a write transaction.
        stored = await self._db().fetchval(
            "SELECT ARRAY(SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role "
            'COLLATE "C") FROM inbox_users WHERE user_id = $1 AND seen_at IS NOT NULL',
            user_id,
        )
        if stored is not None and list(stored) == wanted:
            return
        self.user_commits += 1
        async with self._db().acquire() as conn, conn.transaction():
            # The upsert comes first: its row lock queues a concurrent remember_user of the
            # same user (another tab, another instance), so the two role rewrites cannot
            # interleave into a duplicate key.
            await conn.execute(
                "INSERT INTO inbox_users (user_id, seen_at) VALUES ($1, $2) "
                "ON CONFLICT (user_id) DO UPDATE SET seen_at = excluded.seen_at",
                user_id,
                now,
            )
            await conn.execute("DELETE FROM user_roles WHERE user_id = $1", user_id)
            await conn.execute(
                "INSERT INTO user_roles (user_id, role) SELECT $1, unnest($2::text[])",
                user_id,
                wanted,
            )
