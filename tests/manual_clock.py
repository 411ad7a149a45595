"""A loop's clock and timers with time moved by hand, for code that keeps its loop
(``self.loop.time()``, ``self.loop.call_at``) and whose subject is time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class ManualTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Stands in for the loop where the code under test keeps one: ``time`` and
    ``call_at`` are this clock's; futures come from the running loop."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[ManualTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> ManualTimer:
        timer = ManualTimer(when, callback)
        self.timers.append(timer)
        return timer

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    def armed(self) -> list[ManualTimer]:
        return [t for t in self.timers if not t.cancelled]

    def run_until(self, when: float) -> None:
        """Fire, in order, every live timer due by ``when`` (those they set included),
        then stand at ``when``."""
        while due := sorted((t for t in self.armed() if t.when <= when), key=lambda t: t.when):
            timer = due[0]
            self.timers.remove(timer)
            self.now = timer.when
            timer.callback()
        self.now = when
