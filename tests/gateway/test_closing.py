"""Once the server has decided to close a WebSocket, nothing but the close frame follows."""

from __future__ import annotations

import asyncio
import json

import websockets

from tidings.protocol import ErrorCode

from ..conftest import TIMEOUT, Harness


async def test_nothing_is_written_after_an_operator_disconnect(harness: Harness) -> None:
    """A reply produced after a disconnect was decided (an inbox request still running, say)
    is dropped: a frame written after the close frame is a protocol error, which browsers
    report as 1006 instead of the server's code."""
    async with harness.client("cy") as ws:
        (session,) = harness.server.node.local_sessions("cy")
        assert harness.server.gateway.disconnect([session], 4010, "bye") == 1
        session.error(ErrorCode.SERVER_ERROR, "a late reply")
        received = []
        async with asyncio.timeout(TIMEOUT):
            try:
                while True:
                    received.append(json.loads(await ws.recv()))
            except websockets.ConnectionClosed as exc:
                assert exc.rcvd is not None
                assert (exc.rcvd.code, exc.rcvd.reason) == (4010, "bye")
        assert received == []
