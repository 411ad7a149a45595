"""The HTTP front: a lean HTTP/1.1 protocol on the listening socket that serves the hot
API calls itself and hands every other request to aiohttp (``http_fast_path``).

aiohttp's per-request cost (its request, response, router, middleware and sub-application
objects) is most of the server's CPU for a small ``POST /api/publish``. The front reads each
request head with llhttp (``httptools``) and serves a request itself only when it is the
common success shape, decided before any side effect: HTTP/1.1 keep-alive, one of the
routes in ``routes.py``, a ``Content-Length`` body within ``max_api_body_bytes`` that
decodes into the route's type, no ``Origin``/``Upgrade``/``Expect``/transfer coding,
and a valid server API key its rate limit admits. It then calls the same function the
aiohttp route calls and writes the answer aiohttp would write, in request order.

Anything else (another route, a WebSocket upgrade, a bad body or key, a limit exceeded,
HTTP/1.0, a malformed head) is handed over with the bytes already read: a fresh aiohttp
``RequestHandler`` becomes the socket's protocol and keeps it for the rest of its life,
so every error answer, limit (413, 414, 431), log line and metric stays aiohttp's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ..api.http import ApiKeys, Host
from .connection import FrontConnection
from .response import Dates
from .routes import Route, routes
from .upgrade import Upgrades

__all__ = ["Front", "FrontConnection"]


class Front:
    """What the connections of one listening socket share.

    Args:
        node: the API's host (settings, metrics, the publish path, the inbox).
        keys: the API's keys and buckets (shared with the API's middleware).
        aiohttp: a new aiohttp request handler, for a connection handed over.
        timeout: seconds from a connection (or its last answer) to its next whole
            request (``handshake_timeout``, aiohttp's keep-alive timeout here).
        upgrades: the WebSocket paths served here (the lean engine's), or None to hand
            every upgrade to aiohttp.
    """

    def __init__(
        self,
        node: Host,
        keys: ApiKeys,
        aiohttp: Callable[[], asyncio.Protocol],
        *,
        timeout: float,
        upgrades: Upgrades | None = None,
    ) -> None:
        self.node = node
        self.keys = keys
        self.aiohttp = aiohttp
        self.timeout = timeout
        self.upgrades = upgrades
        self._tasks: set[asyncio.Task[Any]] = set()
        self.routes = routes(node)
        self.max_body: int = node.settings.max_api_body_bytes
        # Bytes a connection may hold unread while it is served: one whole request more.
        self.max_buffer = self.max_body + 65536
        self.dates = Dates()
        self.connections: set[FrontConnection] = set()
        self.draining = False
        # Requests answered here, by route: what an operator (and a test) can read to
        # know the front, not aiohttp, served them.
        self.served: dict[str, int] = dict.fromkeys((r.template for r in self.routes.values()), 0)
        self.served["upgrade"] = 0
        self._gone: asyncio.Event | None = None

    def __call__(self) -> FrontConnection:
        """A new connection's protocol (the listening server's factory)."""
        return FrontConnection(self)

    def count(self, route: Route, status: int) -> None:
        """The API's request metric, as its middleware counts it."""
        key = (route.method.decode(), route.template, str(status))
        self.node.metrics.api_requests[key] += 1
        self.served[route.template] += 1

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a new WebSocket's opening (authentication, welcome) beside the loop."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, connection: FrontConnection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._gone is not None:
            self._gone.set()

    def close(self) -> None:
        """Stop: idle connections close now, busy ones after their answer."""
        self.draining = True
        for connection in list(self.connections):
            connection.drain()

    async def wait_closed(self, limit: float) -> None:
        """Wait up to ``limit`` seconds for the requests being served, then abort."""
        if self.connections:
            self._gone = asyncio.Event()
            try:
                async with asyncio.timeout(limit):
                    await self._gone.wait()
            except TimeoutError:
                pass
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
