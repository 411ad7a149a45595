"""How the client hands messages to the application: callbacks and an async iterator."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, Final, TypeAlias

log = logging.getLogger("tidings.client")

Message: TypeAlias = dict[str, Any]
Callback: TypeAlias = Callable[[Message], object]

END: Final[Message] = {"type": "_end"}


class Events:
    """Callbacks by message type, and a bounded buffer read by ``async for``.

    Args:
        buffer: messages kept for the iterator; when full, ``emit`` waits for the
            application (so the client stops reading from the server). ``0``: callbacks only.
    """

    def __init__(self, buffer: int) -> None:
        self._buffer = buffer
        self._callbacks: dict[str, list[Callback]] = {}
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._space = asyncio.Event()
        self._stopping = False

    def on(self, kind: str, callback: Callback) -> Callable[[], None]:
        """Register ``callback`` for ``kind`` (``"*"``: all); returns its remover."""
        self._callbacks.setdefault(kind, []).append(callback)

        def remove() -> None:
            callbacks = self._callbacks.get(kind, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return remove

    async def emit(self, msg: Message) -> None:
        """Run the callbacks for ``msg``, then queue it for the iterator."""
        for kind in (msg.get("type"), "*"):
            if not isinstance(kind, str):
                continue
            for callback in list(self._callbacks.get(kind, ())):
                try:
                    result = callback(msg)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("tidings client callback for %r failed", kind)
        if self._buffer == 0:
            return
        while self._queue.qsize() >= self._buffer and not self._stopping:
            self._space.clear()
            await self._space.wait()
        self._queue.put_nowait(msg)

    async def next(self) -> Message:
        """The next queued message; raises StopAsyncIteration once ended."""
        msg = await self._queue.get()
        self._space.set()
        if msg is END:
            self._queue.put_nowait(END)  # every later call ends too
            raise StopAsyncIteration
        return msg

    def stop(self) -> None:
        """Let a reader waiting for buffer space go on (the client is closing)."""
        self._stopping = True
        self._space.set()

    def end(self) -> None:
        """End the iteration once the queued messages have been read."""
        self._queue.put_nowait(END)
