"""Publishing into a running server from other threads.

The embedding API (``server.node.publish`` and friends, ``server.inbox.notify``) is made of
coroutines that must run on the server's event loop. A synchronous part of the same
process (a Flask or Django view, a worker thread, a scheduler) reaches them through
:class:`BlockingPublisher`, which hands each call to the loop with
``asyncio.run_coroutine_threadsafe`` and waits for its result, so the caller learns what
was delivered, or gets the error, exactly as a coroutine caller would.

``loop.call_soon_threadsafe(server.node.publish, ...)`` is not the way: it would only
create the coroutine, never run it, and deliver nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .publication import Sent
    from .server import Server
    from .store import Created

T = TypeVar("T")


class BlockingPublisher:
    """A thread-safe, blocking face of a running :class:`~tidings.Server`.

    Build it on the server's loop (inside ``async with Server(...)``), then call it from
    any other thread::

        publisher = BlockingPublisher(server)          # on the loop
        threading.Thread(target=lambda: publisher.send_to_user("alice", "hi", {})).start()

    Args:
        server: A started server.
        timeout: Seconds each call waits for the loop to finish it before raising
            ``TimeoutError`` (the call may still complete afterwards).
    """

    def __init__(self, server: Server, *, timeout: float = 10.0) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coro.close()
            # Waiting here would block the very loop that must run the call.
            raise RuntimeError("BlockingPublisher called on the server's own loop: await instead")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    def publish(self, channel: str, kind: str, data: Any) -> Sent:
        """``await server.node.publish(channel, kind, data)``, from another thread."""
        return self._call(self._server.node.publish(channel, kind, data))

    def send_to_user(self, user_id: str, kind: str, data: Any) -> Sent:
        """``await server.node.send_to_user(user_id, kind, data)``, from another thread."""
        return self._call(self._server.node.send_to_user(user_id, kind, data))

    def send_to_role(self, role: str, kind: str, data: Any) -> Sent:
        """``await server.node.send_to_role(role, kind, data)``, from another thread."""
        return self._call(self._server.node.send_to_role(role, kind, data))

    def broadcast(self, kind: str, data: Any, *, exclude_user: str | None = None) -> Sent:
        """``await server.node.broadcast(kind, data)``, from another thread."""
        return self._call(self._server.node.broadcast(kind, data, exclude_user=exclude_user))

    def notify(self, idempotency_key: str | None = None, **fields: Any) -> Created:
        """``await server.inbox.notify(...)`` (a stored notification), from another thread.

        Raises:
            RuntimeError: the server has no inbox (it is not started, or stopping).
        """
        inbox = self._server.inbox
        if inbox is None:
            raise RuntimeError("the server's inbox is not running")
        return self._call(inbox.notify(idempotency_key, **fields))
