"""Background tasks that a shutdown waits for, but not forever.

Node, Inbox and Rooms each start short tasks (a broker publish, a store write, a reply to
another instance). A graceful shutdown lets them finish; one that is stuck (a peer that
never answers) must not keep the process alive after SIGTERM, so after ``timeout`` the
rest are logged, with where each is waiting, and cancelled.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Coroutine
from typing import Any


class TaskSet:
    """Tasks kept referenced until they end; errors are logged on ``log``.

    Args:
        log: where failures and stuck tasks are reported.
        what: a name for the tasks in those reports ("inbox", "rooms", ...).
    """

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s task failed", self._what, exc_info=task.exception())

    async def drain(self, limit: float) -> None:
        """Wait for every task (and those they start) for up to ``limit`` seconds; then
        log the ones still running, with their stacks, and cancel them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while self._tasks and (left := deadline - loop.time()) > 0:
            # wait (unlike gather under a timeout) leaves the tasks running at the limit.
            await asyncio.wait(list(self._tasks), timeout=left)
        stuck = list(self._tasks)
        for task in stuck:
            where = io.StringIO()
            task.print_stack(limit=8, file=where)
            self._log.warning(
                "shutdown: cancelling a %s task still running after %.0f s: %s",
                self._what,
                limit,
                where.getvalue(),
            )
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
