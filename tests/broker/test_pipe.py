"""The Redis broker's pipe for publications: replies matched in order, and the one timer
that fails a request Redis does not answer in time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest

from tidings.broker.link import LinkError, Pipe, command

from ..manual_clock import ManualClock

TIMEOUT = 5.0


async def _server(answer: Callable[[bytes], bytes]) -> AsyncIterator[int]:
    """A loopback peer that answers each read with ``answer(data)`` (b"": silence)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if reply := answer(data):
                writer.write(reply)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
async def silent() -> AsyncIterator[int]:
    async for port in _server(lambda data: b""):
        yield port


@pytest.fixture
async def ponging() -> AsyncIterator[int]:
    async for port in _server(lambda data: b"+PONG\r\n" * data.count(b"PING")):
        yield port


async def _pipe(port: int) -> tuple[Pipe, ManualClock]:
    _, pipe = await asyncio.get_running_loop().create_connection(Pipe, "127.0.0.1", port)
    clock = ManualClock()
    pipe._loop = cast(asyncio.AbstractEventLoop, clock)
    return pipe, clock


async def test_an_unanswered_request_fails_it_and_every_later_one(silent: int) -> None:
    """A Redis that holds its socket open and says nothing: the request fails when its
    timeout is up, and not before; so do the ones sent after it (replies come in order:
    none can come), and the pipe is closed for good."""
    pipe, clock = await _pipe(silent)
    first = pipe.request(command("PING"), 1, 0.2)
    clock.run_until(0.1)
    second = pipe.request(command("PING"), 1, 0.2)
    clock.run_until(0.199)
    assert not first.done()
    assert not second.done()
    assert pipe.open
    clock.run_until(0.2)
    with pytest.raises(LinkError, match=r"no answer within 0\.2 s"):
        first.result()
    with pytest.raises(LinkError, match=r"no answer within 0\.2 s"):
        second.result()
    assert not pipe.open
    with pytest.raises(LinkError):
        pipe.request(command("PING"), 1, 0.2)


async def test_answered_requests_keep_the_pipe_open_past_their_deadlines(ponging: int) -> None:
    """Requests answered in time leave nothing behind: once their deadlines have passed
    (the timer has fired and found them answered) the pipe still serves."""
    pipe, clock = await _pipe(ponging)
    async with asyncio.timeout(TIMEOUT):
        for _ in range(3):
            assert await pipe.request(command("PING") * 2, 2, 0.05) == [b"PONG", b"PONG"]
        clock.run_until(1.0)  # past every deadline above
        assert pipe.open
        assert await pipe.request(command("PING"), 1, 0.05) == [b"PONG"]
    pipe.close()
