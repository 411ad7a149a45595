"""The PostgreSQL store: an asyncpg pool, migrations under an advisory lock, group commit.

Several tidings instances may share one database, so whatever must be unique or ordered
is decided by PostgreSQL, not by this process: a user's next ``seq`` comes from an upsert
of their ``inbox_users`` row, whose row lock queues every other create for that user (in
any instance) until the holder commits, so seq order is commit order; an idempotency key
is claimed by inserting it before any notification is written, so a second transaction
with the same key waits on the unique index and then replays or conflicts.

As in the SQLite store, ``create`` calls that arrive while a batch is being written wait
and go together in the next transaction, so a burst costs one commit (one WAL flush)
instead of one per notification. Requests without an idempotency key are written
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
from .postgres_deliveries import PostgresDeliveries
from .postgres_rooms import PostgresRooms
from .postgres_users import PostgresUsers
from .records import dumps, encoded, from_row, insert_values, new_id, page_query
from .rooms import dollar
from .schema import COLUMNS, LATEST, MIGRATIONS

log = logging.getLogger("tidings.store.postgres")

_CreateArgs = tuple[NewNotification, Sequence[str], float, str | None, str]

# Every tidings takes the same lock, so migrations of any schema in the database are
# serialised; they are rare and short, and a per-schema key would buy nothing.
_MIGRATION_LOCK: Final = 0x7469_6469_6E67  # "tiding"
# A request that lost a deadlock (possible only against another instance's transaction)
# goes into the next batch, after this one has committed and released its row locks; so
# does a replay whose key was purged under it. After this many tries it fails.
_TRIES: Final = 3

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


def _live(now: str) -> str:
    """The condition for live (unarchived, unexpired) rows; ``now`` is a placeholder."""
    return f"archived_at IS NULL AND in_app <> 0 AND (expires_at IS NULL OR expires_at > {now})"


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
                await conn.execute(statement)
            await conn.execute("INSERT INTO tidings_schema (version) VALUES ($1)", version)
            log.info("applied schema migration %d", version)


class PostgresStore(PostgresRooms, PostgresUsers, PostgresDeliveries):
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
        self._flusher: asyncio.Task[None] | None = None
        # Transactions that carried creates: fewer than creates means group commit works.
        self.create_commits = 0
        # Transactions that recorded users: none for users already recorded as they are.
        self.user_commits = 0

    # --- plumbing -----------------------------------------------------------------------

    def _db(self) -> Any:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    async def open(self) -> None:
        pool = await asyncpg.create_pool(
            self._url, min_size=1, max_size=10, command_timeout=self._timeout
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

    async def _flush(self) -> None:
        while self._pending:
            # A caller cancelled before its batch started needs nothing written.
            batch = [r for r in self._pending if not r.future.done()]
            self._pending = []
            # Keys are claimed in one global order, so two instances' batches holding the
            # same keys cannot deadlock; requests of one transaction have no order to keep.
            # Unkeyed requests go first: they are written set-wise, as one block.
            batch.sort(key=lambda r: (r.args[3] is not None, r.args[3] or ""))
            if not batch:
                continue
            try:
                results = await self._create_batch(batch)
            except Exception as exc:  # the commit itself failed: every request in it fails
                if failure_status(exc) is None:
                    log.exception("group commit of %d creates failed", len(batch))
                else:  # the database's trouble, answered 503/507: no traceback
                    log.warning("group commit of %d creates failed: %s", len(batch), exc)
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(StoreError(f"commit failed: {exc}"))
                continue
            except BaseException:  # this task was cancelled: leave no caller waiting forever
                for r in batch + self._pending:
                    if not r.future.done():
                        r.future.set_exception(StoreError("store is closing"))
                self._pending = []
                raise
            self.create_commits += 1
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

    async def _create_batch(self, batch: list[_Request]) -> list[Created | Exception]:
        """Every create of a batch in one transaction.

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
            return await self._create_each(batch)
        users = sorted({u for r in batch for u in r.args[1]})
        async with self._db().acquire() as conn:
            try:
                async with conn.transaction():
                    # As in _create_each: every user of the batch first, in one global order.
                    try:
                        await conn.execute(_LOCK_USERS, users)
                        results: list[Created | Exception] = await _create_plain(
                            conn, batch[:plain]
                        )
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
        return await self._create_each(batch)

    async def _create_each(self, batch: list[_Request]) -> list[Created | Exception]:
        """Every create of a batch in one transaction, each in its own savepoint."""
        results: list[Created | Exception] = []
        users = sorted({u for r in batch for u in r.args[1]})
        async with self._db().acquire() as conn, conn.transaction():
            # Each request locks its users as it goes, so the batch as a whole would lock
            # them in no particular order, and two instances' batches could deadlock. Taking
            # them all first, in one global order, rules that out (as sorting the batch by
            # key does for key claims); a deadlock that happens all the same is handled
            # below.
            await conn.execute(_LOCK_USERS, users)
            await _create_keyed(conn, batch, results)
        return results

    # --- reads ----------------------------------------------------------------------------

    async def get(self, user_id: str, notification_id: str) -> Notification | None:
        row = await self._db().fetchrow(
            f"SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND id = $2",
            user_id,
            notification_id,
        )
        return None if row is None else from_row(row)

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
            lambda n: f"${n}",
            user_id,
            unread_only=unread_only,
            include_archived=include_archived,
            archived_only=archived_only,
            before_seq=before_seq,
            limit=limit,
        )
        return [from_row(r) for r in await self._db().fetch(sql, *args)]

    async def _live_after(
        self, user_id: str, after_seq: int, now: float, limit: int, extra: str = ""
    ) -> list[Notification]:
        """Live rows of a user after ``after_seq``, oldest first, with an extra condition."""
        sql = (
            f"SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND seq > $2 {extra} "
            f"AND {_live('$3')} ORDER BY seq LIMIT $4"
        )
        return [from_row(r) for r in await self._db().fetch(sql, user_id, after_seq, now, limit)]

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
        rows = await self._db().fetch(
            "SELECT category, in_app FROM preferences WHERE user_id = $1 "
            'ORDER BY category COLLATE "C"',
            user_id,
        )
        return {r[0]: bool(r[1]) for r in rows}

    async def set_preferences(self, user_id: str, in_app: Mapping[str, bool]) -> None:
        async with self._db().acquire() as conn, conn.transaction():
            # Lock the user's row first, as remember_user does, so two instances replacing
            # the same user's switches queue instead of colliding on the primary key.
            await conn.execute(
                "INSERT INTO inbox_users (user_id) VALUES ($1) ON CONFLICT (user_id) "
                "DO UPDATE SET last_seq = inbox_users.last_seq",
                user_id,
            )
            await conn.execute("DELETE FROM preferences WHERE user_id = $1", user_id)
            await conn.executemany(
                "INSERT INTO preferences (user_id, category, in_app) VALUES ($1, $2, $3)",
                [(user_id, cat, int(on)) for cat, on in in_app.items()],
            )

    async def in_app_disabled(self, user_ids: Sequence[str], category: str | None) -> set[str]:
        async with self._db().acquire() as conn:
            return await _in_app_off(conn, list(dict.fromkeys(user_ids)), category)

    async def webhook_due(
        self, *, created_before: float, now: float, limit: int, lease: float = 0.0
    ) -> list[tuple[Notification, int]]:
        due = (
            "acked_at IS NULL AND read_at IS NULL AND "
            "webhook_state IS NULL AND created_at <= $1 AND "
            f"(webhook_next_at IS NULL OR webhook_next_at <= $2) AND {_live('$2')}"
        )
        if lease <= 0:
            sql = (
                f"SELECT {COLUMNS}, webhook_attempts FROM notifications WHERE {due} "
                "ORDER BY created_at LIMIT $3"
            )
            rows = await self._db().fetch(sql, created_before, now, limit)
        else:
            # SKIP LOCKED: instances claiming at the same moment take disjoint rows.
            returning = ", ".join(f"n.{c.strip()}" for c in COLUMNS.split(","))
            sql = (
                "UPDATE notifications AS n SET webhook_next_at = $4 FROM ("
                f"SELECT user_id, id FROM notifications WHERE {due} "
                "ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED) AS d "
                f"WHERE n.user_id = d.user_id AND n.id = d.id "
                f"RETURNING {returning}, n.webhook_attempts"
            )
            rows = await self._db().fetch(sql, created_before, now, limit, now + lease)
        out = [(from_row(r), int(r[-1])) for r in rows]
        out.sort(key=lambda item: item[0].created_at)
        return out

    async def webhook_result(
        self, user_id: str, notification_id: str, *, sent: bool, next_at: float | None
    ) -> None:
        db = self._db()
        if sent or next_at is None:
            await db.execute(
                "UPDATE notifications SET webhook_state = $3, "
                "webhook_attempts = webhook_attempts + 1 WHERE user_id = $1 AND id = $2",
                user_id,
                notification_id,
                "sent" if sent else "failed",
            )
        else:
            await db.execute(
                "UPDATE notifications SET webhook_next_at = $3, "
                "webhook_attempts = webhook_attempts + 1 WHERE user_id = $1 AND id = $2",
                user_id,
                notification_id,
                next_at,
            )

    async def unread_count(self, user_id: str, *, now: float) -> int:
        sql = (
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL "
            f"AND {_live('$2')}"
        )
        return int(await self._db().fetchval(sql, user_id, now))

    async def backlog(self, *, now: float) -> tuple[int, int]:
        sql = (
            "SELECT COUNT(*) FILTER (WHERE acked_at IS NULL), "
            "COUNT(*) FILTER (WHERE delivered_at IS NULL) "
            f"FROM notifications WHERE {_live('$1')}"
        )
        row = await self._db().fetchrow(sql, now)
        assert row is not None
        return int(row[0]), int(row[1])

    # The database's default collation may not be bytewise; "C" sorts as SQLite does.
    async def users_with_role(self, role: str) -> list[str]:
        sql = (
            "SELECT user_id FROM (SELECT user_id FROM user_roles WHERE role = $1 "
            "UNION SELECT user_id FROM directory_roles WHERE role = $1) u "
            'ORDER BY user_id COLLATE "C"'
        )
        return [r[0] for r in await self._db().fetch(sql, role)]

    async def all_users(self) -> list[str]:
        sql = (
            "SELECT user_id FROM (SELECT user_id FROM inbox_users WHERE seen_at IS NOT NULL "
            "UNION SELECT user_id FROM directory_users) u "
            'ORDER BY user_id COLLATE "C"'
        )
        return [r[0] for r in await self._db().fetch(sql)]

    # --- state changes --------------------------------------------------------------------

    async def _set_where_null(
        self, column: str, user_id: str, ids: Sequence[str] | None, now: float
    ) -> list[str]:
        if ids is not None and not ids:
            return []
        args: list[Any] = [now, user_id]
        where = f"user_id = $2 AND {column} IS NULL"
        if ids is not None:
            args.append(list(ids))
            where += " AND id = ANY($3::text[])"
        # RETURNING comes in scan order (by id for an index scan): give the ids oldest first.
        sql = (
            f"WITH changed AS (UPDATE notifications SET {column} = $1 WHERE {where} "
            "RETURNING id, seq) SELECT id FROM changed ORDER BY seq"
        )
        return [r[0] for r in await self._db().fetch(sql, *args)]

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
            "WITH changed AS (UPDATE notifications SET archived_at = NULL WHERE user_id = $1 "
            "AND archived_at IS NOT NULL AND id = ANY($2::text[]) RETURNING id, seq) "
            "SELECT id FROM changed ORDER BY seq"
        )
        return [r[0] for r in await self._db().fetch(sql, user_id, ids)]

    async def mark_delivered(self, deliveries: Mapping[str, Sequence[str]], *, now: float) -> None:
        users = [u for u, ids in deliveries.items() for _ in ids]
        ids = [nid for group in deliveries.values() for nid in group]
        if not ids:
            return
        # One statement for a whole batch of pushes: the pairs arrive as two arrays.
        await self._db().execute(
            "UPDATE notifications AS n SET attempts = n.attempts + 1, "
            "delivered_at = COALESCE(n.delivered_at, $1) "
            "FROM unnest($2::text[], $3::text[]) AS d(user_id, id) "
            "WHERE n.user_id = d.user_id AND n.id = d.id",
            now,
            users,
            ids,
        )

    async def delete(self, user_id: str, ids: Sequence[str]) -> list[str]:
        ids = list(ids)
        if not ids:
            return []
        sql = (
            "WITH gone AS (DELETE FROM notifications WHERE user_id = $1 "
            "AND id = ANY($2::text[]) RETURNING id, seq) SELECT id FROM gone ORDER BY seq"
        )
        return [r[0] for r in await self._db().fetch(sql, user_id, ids)]

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

    async def purge(self, *, created_before: float, now: float, limit: int) -> int:
        async with self._db().acquire() as conn, conn.transaction():
            # SKIP LOCKED: purges running in several instances take different rows instead
            # of queueing behind each other; a skipped row goes in a later round.
            deleted = await conn.fetchval(
                "WITH gone AS (DELETE FROM notifications WHERE id IN (SELECT id FROM "
                "notifications WHERE created_at < $1 OR (expires_at IS NOT NULL AND "
                "expires_at <= $2) LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING 1) "
                "SELECT COUNT(*) FROM gone",
                created_before,
                now,
                limit,
            )
            # A key and its rows share created_at, so a key older than every remaining row
            # has none left. This keeps the keys of old rows a bounded round left behind:
            # keys live at least as long as their rows.
            await conn.execute(
                "DELETE FROM idempotency WHERE created_at < $1 AND created_at < "
                "COALESCE((SELECT MIN(created_at) FROM notifications), $1)",
                created_before,
            )
            return int(deleted)


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
