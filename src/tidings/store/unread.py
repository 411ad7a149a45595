"""Unread counts asked for together, read together: the read side's group commit.

Every connection that opens asks for its user's unread count (the welcome carries it),
so a reconnect storm asks for thousands at once. One by one, each is a query of
microseconds behind a round trip: on SQLite a hop to the reader thread and back (a
future, a wake-up of the event loop, a context switch on a shared core), on PostgreSQL a
network round trip and asyncpg's per-query work. Here the counts asked for while one
batch is being read wait and go together in the next: one round trip and one query per
batch. A batch waits one pass of the event loop before it is read, for the connections
opening in it. Both stores use it, each with its own query (``sqlite_inbox.count_unread``,
``PostgresInbox._count_unread``).

Exactness: a batch starts after every count in it was asked for, so each count is read no
earlier than a count read on its own would be; the caller's ``now`` is kept per count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

# Users per query: well under SQLite's host-parameter limit (32,766; 999 before 3.32).
_CHUNK: Final = 500


def by_now(asks: list[tuple[str, float]], chunk: int = _CHUNK) -> list[tuple[float, list[str]]]:
    """The distinct users asked for, grouped by the ``now`` they were asked at, in chunks."""
    users: dict[float, dict[str, None]] = {}
    for user_id, now in asks:
        users.setdefault(now, {})[user_id] = None
    return [
        (now, list(ids)[i : i + chunk])
        for now, ids in users.items()
        for i in range(0, len(ids), chunk)
    ]


class UnreadCounts:
    """A store's ``unread_count``, batched.

    Args:
        read: reads the counts of ``(user_id, now)`` pairs, in the order given, under the
            store's deadline; a batch that fails or times out fails every count in it, as
            each would have failed alone.
    """

    def __init__(self, read: Callable[[list[tuple[str, float]]], Awaitable[list[int]]]) -> None:
        self._read = read
        self._pending: list[tuple[str, float, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Batches read (fewer than counts asked for means batching works; tests check it).
        self.batches = 0

    async def count(self, user_id: str, now: float) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._pending.append((user_id, now, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            # One pass of the event loop first: the connections whose frames arrived in
            # the same poll ask too (without it, a storm's batches average two counts).
            await asyncio.sleep(0)
            # A caller that gave up (cancelled) before its batch started needs no count.
            batch = [p for p in self._pending if not p[2].done()]
            self._pending = []
            if not batch:
                continue
            asks = [(user_id, now) for user_id, now, _ in batch]
            try:
                counts = await self._read(asks)
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:  # cancelled (the loop is closing): so are its counts
                for _, _, future in batch:
                    future.cancel()
                raise
            self.batches += 1
            for (_, _, future), n in zip(batch, counts, strict=True):
                if not future.done():
                    future.set_result(n)
