"""Background tasks: a shutdown waits for them, but a stuck one is cancelled and named."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tidings.tasks import TaskSet


async def test_drain_waits_for_tasks_and_those_they_start() -> None:
    """drain returns once every task, including one started by another, has finished."""
    tasks = TaskSet(logging.getLogger("test"), "test")
    done: list[str] = []
    gate = asyncio.Event()

    async def second() -> None:
        done.append("second")

    async def first() -> None:
        await gate.wait()
        tasks.spawn(second())
        done.append("first")

    tasks.spawn(first())
    asyncio.get_running_loop().call_soon(gate.set)
    await tasks.drain(10)
    assert done == ["first", "second"]
    assert not tasks


async def test_a_stuck_task_is_cancelled_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A task that never ends is cancelled after the limit, with where it was waiting."""
    tasks = TaskSet(logging.getLogger("test"), "test")
    never = asyncio.Event()

    async def stuck_on_a_peer() -> None:
        await never.wait()

    task = tasks.spawn(stuck_on_a_peer())
    with caplog.at_level(logging.WARNING):
        await tasks.drain(0.05)
    assert task.cancelled()
    assert "stuck_on_a_peer" in caplog.text
    assert not tasks
