"""The physical limit of the inbox scenarios: how fast the database itself takes
notification rows, measured with no tidings in between.

    .venv/bin/python bench/rawdb.py sqlite --seconds 2
    .venv/bin/python bench/rawdb.py postgres --url postgresql://postgres@127.0.0.1:5432/test

run.py starts it pinned to the server core (`taskset -c 0`), so it runs under the
same conditions as the tidings server, and reads one JSON object from its stdout:
``{"single": PHASE, "batched": PHASE}``, where PHASE is ``{"rows", "wall_s",
"rows_per_s", "cpu_s", "db_cpu_s"}`` (``cpu_s``: this process's user+system time
in the phase; ``db_cpu_s``: that of its PostgreSQL backends, 0 for SQLite).

* ``single``: one row per transaction. SQLite: one connection in a loop
  (``BEGIN IMMEDIATE``, ``INSERT``, ``COMMIT``; SQLite has one writer).
  PostgreSQL: ``--concurrency`` asyncpg connections, each running one-row
  ``INSERT``s (autocommit: one transaction each) back to back.
* ``batched``: ``--batch`` rows per transaction (``executemany`` inside one
  transaction), same connection count.

Rows have the shape tidings writes for ``{"userId": u, "type": "benchmsg",
"title": "t"}`` (``tidings.store.records.insert_values``), round-robin over
``--users`` users with a per-user ``seq``, into the tidings schema
(``tidings.store.schema.MIGRATIONS``) in a fresh SQLite file or a fresh
PostgreSQL schema, removed afterwards. Each phase lasts ``--seconds`` or
``--max-rows`` rows, whichever comes first, after a short unmeasured warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from servers import pids_cpu_seconds

from tidings.store import NewNotification
from tidings.store.records import insert_values, new_id
from tidings.store.schema import COLUMNS, MIGRATIONS, PostgresOnly

WARMUP_S = 0.3
_NCOLS = len(COLUMNS.split(","))
SQLITE_INSERT = f"INSERT INTO notifications ({COLUMNS}) VALUES ({','.join('?' * _NCOLS)})"
PG_INSERT = (
    f"INSERT INTO notifications ({COLUMNS}) VALUES "
    f"({', '.join(f'${i}' for i in range(1, _NCOLS + 1))})"
)
CONTENT = NewNotification(type="benchmsg", title="t")


@dataclass
class Phase:
    rows: int
    wall_s: float
    rows_per_s: float
    cpu_s: float
    db_cpu_s: float = 0.0


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Rows:
    """Notification rows as tidings would insert them, round-robin over users."""

    def __init__(self, users: int) -> None:
        self.users = [f"raw-user-{i}" for i in range(users)]
        self.seqs = [0] * users
        self.k = 0

    def next(self) -> tuple[Any, ...]:
        i = self.k % len(self.users)
        self.k += 1
        self.seqs[i] += 1
        return insert_values(new_id(), self.users[i], self.seqs[i], CONTENT, time.time())

    def many(self, n: int) -> list[tuple[Any, ...]]:
        return [self.next() for _ in range(n)]


# ---------------------------------------------------------------------------
# SQLite


def sqlite_connect(path: str) -> sqlite3.Connection:
    """The same settings as src/tidings/store/sqlite.py's _connect()."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def sqlite_phase(
    conn: sqlite3.Connection, rows: Rows, batch: int, seconds: float, max_rows: int
) -> Phase:
    done = 0
    c0 = cpu_s()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while done < max_rows and time.perf_counter() < deadline:
        if batch == 1:
            values = rows.next()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(SQLITE_INSERT, values)
            conn.execute("COMMIT")
        else:
            many = rows.many(batch)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(SQLITE_INSERT, many)
            conn.execute("COMMIT")
        done += batch
    wall = time.perf_counter() - t0
    return Phase(done, wall, done / wall, cpu_s() - c0)


def run_sqlite(args: argparse.Namespace) -> dict[str, Phase]:
    tmp = Path(tempfile.mkdtemp(prefix="tidings-rawdb-"))
    try:
        conn = sqlite_connect(str(tmp / "raw.db"))
        conn.execute("BEGIN IMMEDIATE")
        for _version, statements in MIGRATIONS:
            for statement in statements:
                if not isinstance(statement, PostgresOnly):
                    conn.execute(statement)
        conn.execute("COMMIT")
        rows = Rows(args.users)
        sqlite_phase(conn, rows, 1, WARMUP_S, args.max_rows)
        single = sqlite_phase(conn, rows, 1, args.seconds, args.max_rows)
        batched = sqlite_phase(conn, rows, args.batch, args.seconds, args.max_rows)
        conn.close()
        return {"single": single, "batched": batched}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# PostgreSQL


@contextlib.asynccontextmanager
async def pg_schema(url: str, prefix: str) -> AsyncIterator[str]:
    """A fresh, empty schema (dropped with everything in it on exit)."""
    name = f"{prefix}_{os.getpid()}_{time.time_ns() % 10**12}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE SCHEMA "{name}"')
        try:
            yield name
        finally:
            await admin.execute(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        await admin.close()


async def pg_phase(
    conns: list[Any], backends: list[int], rows: Rows, batch: int, seconds: float, max_rows: int
) -> Phase:
    done = 0
    db0 = pids_cpu_seconds(backends)
    c0 = cpu_s()
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def worker(conn: Any) -> None:
        nonlocal done
        while done < max_rows and time.perf_counter() < deadline:
            done += batch  # claimed before the await, so max_rows is not overshot
            if batch == 1:
                await conn.execute(PG_INSERT, *rows.next())
            else:
                async with conn.transaction():
                    await conn.executemany(PG_INSERT, rows.many(batch))

    async with asyncio.TaskGroup() as tg:
        for conn in conns:
            tg.create_task(worker(conn))
    wall = time.perf_counter() - t0
    c1 = cpu_s()
    db = sum(v - db0.get(pid, 0.0) for pid, v in pids_cpu_seconds(backends).items())
    return Phase(done, wall, done / wall, c1 - c0, db)


async def run_postgres(args: argparse.Namespace) -> dict[str, Phase]:
    async with pg_schema(args.url, "tidings_rawdb") as schema:
        settings = {"search_path": schema}
        setup = await asyncpg.connect(args.url, server_settings=settings)
        try:
            async with setup.transaction():
                for _version, statements in MIGRATIONS:
                    for statement in statements:
                        await setup.execute(str(statement))  # asyncpg takes exact str
        finally:
            await setup.close()
        conns = [
            await asyncpg.connect(args.url, server_settings=settings)
            for _ in range(args.concurrency)
        ]
        try:
            # The backends run on this machine: their CPU time is in /proc.
            backends = [int(await c.fetchval("SELECT pg_backend_pid()")) for c in conns]
            rows = Rows(args.users)
            await pg_phase(conns, backends, rows, 1, WARMUP_S, args.max_rows)
            single = await pg_phase(conns, backends, rows, 1, args.seconds, args.max_rows)
            batched = await pg_phase(conns, backends, rows, args.batch, args.seconds, args.max_rows)
        finally:
            for conn in conns:
                await conn.close()
    return {"single": single, "batched": batched}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("db", choices=["sqlite", "postgres"])
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--seconds", type=float, default=2.0, help="per phase")
    ap.add_argument("--max-rows", type=int, default=200_000, help="per phase")
    ap.add_argument("--batch", type=int, default=100, help="rows per batched transaction")
    ap.add_argument("--concurrency", type=int, default=32, help="PostgreSQL connections")
    ap.add_argument("--users", type=int, default=50)
    args = ap.parse_args()
    out = run_sqlite(args) if args.db == "sqlite" else asyncio.run(run_postgres(args))
    json.dump({k: asdict(v) for k, v in out.items()}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
