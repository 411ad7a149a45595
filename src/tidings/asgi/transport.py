"""The in-memory transport an ASGI connection becomes: aiohttp's protocol writes into its
buffer as into a socket's, and the bridge feeds it the client's bytes and takes what the
protocol wrote, pausing the protocol's writers while the ASGI server lags behind."""

from __future__ import annotations

import asyncio
from typing import Any, Final

# aiohttp pauses its writers above this many unsent bytes (asyncio's own default).
_HIGH_WATER: Final = 64 * 1024


class MemoryTransport(asyncio.Transport):
    """The bridged connection as aiohttp sees it: writes are queued for the bridge.

    ``get_write_buffer_size`` counts bytes written and not yet handed to the ASGI server,
    as a socket's buffer counts bytes the kernel has not taken.
    """

    def __init__(self, protocol: asyncio.Protocol, client: Any, server: Any) -> None:
        super().__init__()
        self._protocol = protocol
        self._extra = {
            "peername": tuple(client) if client else None,
            "sockname": tuple(server) if server else None,
        }
        self._chunks: list[bytes] = []
        self._size = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._lost = False
        self._paused = False

    # The asyncio.Transport methods aiohttp calls.
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._chunks.append(bytes(data))
        self._size += len(data)
        self._wake.set()
        if not self._paused and self._size > _HIGH_WATER:
            self._paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def get_write_buffer_size(self) -> int:
        return self._size

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Finish sending what is queued, then end (the bridge reports the loss)."""
        self._closing = True
        self._wake.set()

    def abort(self) -> None:
        """Drop what is queued and end now (as a socket's abort, the loss is reported
        from the loop, not from inside the caller)."""
        self._size -= sum(map(len, self._chunks))
        self._chunks.clear()
        self.close()
        asyncio.get_running_loop().call_soon(self.lost)

    def pause_reading(self) -> None:
        """The bridge writes a request once; there is nothing to throttle."""

    def resume_reading(self) -> None:
        """See ``pause_reading``."""

    def is_reading(self) -> bool:
        return not self._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.Protocol:
        return self._protocol

    # The bridge's side.
    def feed(self, data: bytes) -> None:
        """Bytes from the client, to the protocol (as if read from a socket)."""
        if data and not self._lost:
            self._protocol.data_received(data)

    def lost(self) -> None:
        """The connection is over (either side): the protocol is told once."""
        self._closing = True
        self._wake.set()
        if not self._lost:
            self._lost = True
            self._protocol.connection_lost(None)

    async def written(self) -> bytes | None:
        """What the protocol wrote since the last call; None once it closed and all was
        taken. The bytes count as buffered until the next call, so a slow ASGI send
        keeps the outbox full."""
        while not self._chunks:
            if self._closing:
                return None
            self._wake.clear()
            await self._wake.wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def taken(self, n: int) -> None:
        """``n`` bytes of ``written()`` reached the ASGI server."""
        self._size = max(0, self._size - n)
        if self._paused and self._size <= _HIGH_WATER // 4:
            self._paused = False
            self._protocol.resume_writing()
