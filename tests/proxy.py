"""A TCP proxy on 127.0.0.1:0 that misbehaves on purpose, one behaviour per connection.

``forward`` relays both ways. ``drop_response`` relays the request, waits until the server
has answered (so the request took effect), then closes the client's connection without
passing the answer on: a connection dropped at the worst moment. ``blackhole`` accepts and
reads, and never answers (a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

Behaviour = Literal["forward", "drop_response", "blackhole"]


class Proxy:
    """Connections take ``plan``'s behaviours in order; once it runs out, ``then``."""

    def __init__(
        self, upstream_port: int, plan: list[Behaviour], then: Behaviour = "forward"
    ) -> None:
        self.upstream_port = upstream_port
        self.plan = list(plan)
        self.then: Behaviour = then
        self.connections: list[Behaviour] = []
        self.answered = asyncio.Event()  # set when a dropped answer reached the proxy
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        behaviour = self.plan.pop(0) if self.plan else self.then
        self.connections.append(behaviour)
        try:
            if behaviour == "blackhole":
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            upward = asyncio.create_task(_pipe(reader, up_writer))
            try:
                if behaviour == "drop_response":
                    await up_reader.read(1)  # the server answered: the request was done
                    self.answered.set()
                    writer.transport.abort()
                else:
                    await _pipe(up_reader, writer)
            finally:
                upward.cancel()
                await asyncio.gather(upward, return_exceptions=True)
                up_writer.close()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.write_eof()


@contextlib.asynccontextmanager
async def proxy(
    upstream_port: int, plan: list[Behaviour], then: Behaviour = "forward"
) -> AsyncIterator[Proxy]:
    """A started :class:`Proxy`, stopped at exit."""
    p = Proxy(upstream_port, plan, then)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
