"""tidings inside an ASGI application (Starlette, FastAPI, Django): ``TidingsASGI``.

The mounted server never listens on a port of its own: the host's ASGI server (uvicorn,
hypercorn, daphne) owns the socket and hands each request and WebSocket to tidings
through the bridge (see ``tidings.asgi.bridge``). With several workers, each worker is a
node; ``broker_url`` set to one Redis makes them one server (docs/asgi.md).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from ..config import Settings
from ..node import Node
from ..server import Server
from .bridge import Receive, Scope, Send, serve_http, serve_websocket

__all__ = ["TidingsASGI"]


class TidingsASGI:
    """An ASGI application serving tidings' WebSocket paths, SSE and HTTP API.

    Mount it under a prefix (``app.mount("/realtime", tidings)``); paths are then the
    standalone server's below it (``/realtime/ws``, ``/realtime/api/notifications``).
    Start and stop it from the host's lifespan (``async with tidings:``, or
    ``FastAPI(lifespan=tidings.lifespan)``): a mounted app gets no lifespan events of its
    own. As the top-level app it handles the lifespan itself.

    Args:
        settings: effective settings; ``host``, ``port`` and TLS are the ASGI server's
            business and are ignored.
        clock, monotonic: injected time sources.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = Server(settings, clock=clock, monotonic=monotonic, listen=False)

    @property
    def node(self) -> Node:
        """The embedding API (``publish``, ``send_to_user``, ``broadcast``, ...) for the
        host's own routes, and ``node.inbox`` once started."""
        return self.server.node

    async def start(self) -> None:
        """Open the store and the broker; raises what ``Server.start`` raises."""
        await self.server.start()

    async def stop(self) -> None:
        """Graceful: WebSockets closed 1001, in-flight API calls finished."""
        await self.server.stop()

    async def __aenter__(self) -> TidingsASGI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """A lifespan for ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``."""
        async with self:
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await serve_http(scope, receive, send, self.server.protocol())
        elif kind == "websocket":
            await serve_websocket(scope, receive, send, self.server.protocol())
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
