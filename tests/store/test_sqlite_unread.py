"""SQLite reads the unread counts asked for together in one batch: exact all the same."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tidings.store import NewNotification, StoreError
from tidings.store.sqlite import SQLiteStore

from ..conftest import TIMEOUT

NOW = 1_800_000_000.0


def note(title: str = "t") -> NewNotification:
    return NewNotification(type="booking_confirmation", title=title)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "inbox.db"))
    await s.open()
    yield s
    await s.close()


async def test_a_burst_of_counts_is_one_batch(store: SQLiteStore) -> None:
    """A thousand counts asked at once: a batch or two, not a thousand reads; users with
    notifications among users without get their own counts."""
    for i in range(0, 1000, 7):
        for _ in range(i % 3 + 1):
            await store.create(note(), [f"u{i}"], now=NOW)
    got = await asyncio.gather(*(store.unread_count(f"u{i}", now=NOW) for i in range(1000)))
    assert got == [(i % 3 + 1) if i % 7 == 0 else 0 for i in range(1000)]
    assert store._unread.batches <= 2


async def test_committed_while_a_batch_reads_is_in_the_next(store: SQLiteStore) -> None:
    """A count asked for after a notification committed counts it, even while a batch
    that read before the commit is still on its way back: it never shares that answer."""
    read: Callable[..., Any] = store._unread._read
    queried, release = threading.Event(), threading.Event()

    async def read_then_wait(fn: Callable[..., list[int]]) -> list[int]:
        def run(c: Any) -> list[int]:
            counts = fn(c)
            if not release.is_set():  # only the first batch is held up
                queried.set()
                release.wait(TIMEOUT)
            return counts

        result: list[int] = await read(run)
        return result

    store._unread._read = read_then_wait
    before = asyncio.create_task(store.unread_count("bob", now=NOW))
    assert await asyncio.to_thread(queried.wait, TIMEOUT)  # the first batch has read
    await store.create(note(), ["bob"], now=NOW)
    after = asyncio.create_task(store.unread_count("bob", now=NOW))
    await asyncio.sleep(0)  # asked for while the first batch is still out
    release.set()
    assert await before == 0  # read before the commit: right when it was read
    assert await after == 1
    assert store._unread.batches == 2


async def test_a_failed_batch_fails_each_count(store: SQLiteStore) -> None:
    """The batch's read failing (a stalled database) fails every count in it, as each
    alone would have; the next batch reads again."""

    async def unavailable(fn: Callable[..., list[int]]) -> list[int]:
        raise StoreError("the database did not answer within 5 s")

    read = store._unread._read
    store._unread._read = unavailable
    got = await asyncio.gather(
        *(store.unread_count(u, now=NOW) for u in ("a", "b", "c")), return_exceptions=True
    )
    assert all(isinstance(e, StoreError) for e in got)
    store._unread._read = read
    await store.create(note(), ["a"], now=NOW)
    assert await store.unread_count("a", now=NOW) == 1
