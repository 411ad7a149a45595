"""The SQLite connection: how it is opened and migrated, and the one thread it lives on.

SQLite calls block, so each connection of ``SQLiteStore`` lives on its own ``_Thread``
and its calls come back to the event loop as futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from . import (
    StoreError,
)
from .schema import LATEST, MIGRATIONS, PostgresOnly

log = logging.getLogger("tidings.store.sqlite")

T = TypeVar("T")


def _null(value: None) -> None:
    return None


# sqlite3 binds int, float, str and bytearray parameters directly but sends every other
# one, None included, through its adaptation protocol, which looks for ``__adapt__`` and
# ``__conform__`` and builds and discards an AttributeError for each (CPython's
# Modules/_sqlite/microprotocols.c). A notification row has eight or more NULLs: that
# was half the cost of binding it. With an adapter registered for None the lookup
# stops at the registry. It binds NULL exactly as before; registering it is
# process-wide, and harmless to any other sqlite3 user in the process for that reason.
sqlite3.register_adapter(type(None), _null)


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    # timeout: how long a statement waits for a lock another connection holds.
    # cached_statements: the group commit's multi-row statements come in every length up
    # to 64 rows (three kinds of them), and re-preparing one costs more than running it.
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=timeout,
        cached_statements=512,
    )
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed create survives a power cut too, not only a killed process; group
    # commit keeps the fsyncs few.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    # 64 MiB of page cache at most (the default is 2): a fan-out to 100,000 users touches
    # more pages than that, and spilling them mid-transaction doubles its time.
    conn.execute("PRAGMA cache_size=-65536")
    # Statement journals in memory: a group commit's multi-row statements each need one,
    # and on disk SQLite opens, unlinks and closes a temp file for it in every commit
    # (seven system calls, a sixth of the writer's CPU per single create). Temp tables
    # live in memory too: a fan-out's recipient list, a few MB for 100,000 users.
    conn.execute("PRAGMA temp_store=MEMORY")
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
                    if not isinstance(statement, PostgresOnly):
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
            if future.done():  # its caller's deadline passed (or it left) while it queued
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
