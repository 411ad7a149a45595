"""The gateway driven through a recording transport: no sockets, no framework."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tidings.gateway.connection import Connection, Gateway, Transport
from tidings.gateway.handshake import Options
from tidings.hub import Outbound
from tidings.node import Node
from tidings.protocol import CloseCode
from tidings.session import Close

from ..conftest import TIMEOUT, make_settings, token

NO_OPTIONS = Options(user_id=None, last_seq=None, ack=False)


class RecordingTransport:
    """A ``Transport`` that keeps what it was given, as a third transport would get it."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closes: list[Close] = []
        self.closed = asyncio.Event()

    def push(self, message: Outbound) -> bool:
        if self.closes:
            return False
        self.sent.append(json.loads(message.payload))
        return True

    def close(self, close: Close) -> bool:
        if self.closes:
            return False
        self.closes.append(close)
        self.closed.set()
        return True

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]


def gateway(**overrides: Any) -> Gateway:
    return Gateway(Node(make_settings(**overrides)))


async def opened(gw: Gateway, user: str = "alice") -> tuple[Connection, RecordingTransport]:
    transport = RecordingTransport()
    conn = gw.connect(transport, peer="127.0.0.1", options=NO_OPTIONS, pending=False)
    assert await gw.authenticate(conn, token(user)) is None
    return conn, transport


def test_recording_transport_is_a_transport() -> None:
    """The test's transport meets the Transport protocol (what another transport implements)."""
    transport: Transport = RecordingTransport()
    assert transport.name == "recording"


async def test_token_opens_welcomes_and_registers() -> None:
    """A handshake token opens the connection: welcome first, counted, in the registry."""
    gw = gateway()
    conn, transport = await opened(gw)
    assert transport.types() == ["welcome"]
    assert conn.counted
    assert gw.open_connections == gw.authenticated == 1
    assert gw.node.metrics.connects == 1


async def test_auth_message_opens_a_pending_connection() -> None:
    """Without a token the connection counts as still authenticating until its auth message
    opens it; then it counts toward the caps."""
    gw = gateway()
    transport = RecordingTransport()
    conn = gw.connect(transport, peer="127.0.0.1", options=NO_OPTIONS, pending=True)
    assert await gw.authenticate(conn, None) is None
    assert (gw.admission.pending, gw.authenticated) == (1, 0)
    frame = json.dumps({"type": "auth", "token": token("bob"), "id": "a1"})
    assert gw.receive(conn, frame) is None
    assert gw.opening(conn)
    assert await gw.open(conn) is None
    assert (gw.admission.pending, gw.authenticated) == (0, 1)
    assert transport.sent[0]["type"] == "welcome"
    assert transport.sent[0]["replyTo"] == "a1"


async def test_auth_timeout_closes_through_the_transport() -> None:
    """A connection that never authenticates is closed 4004 by the gateway's timer, and its
    end is counted as a rejection."""
    gw = gateway(auth_timeout=0.05)
    transport = RecordingTransport()
    conn = gw.connect(transport, peer="127.0.0.1", options=NO_OPTIONS, pending=True)
    assert await gw.authenticate(conn, None) is None
    async with asyncio.timeout(TIMEOUT):
        await transport.closed.wait()
    assert transport.closes == [Close(CloseCode.AUTH_TIMEOUT, "authentication timeout")]
    gw.finish(conn, CloseCode.AUTH_TIMEOUT)
    assert gw.open_connections == 0
    assert gw.admission.pending == 0
    assert gw.node.metrics.rejections[str(CloseCode.AUTH_TIMEOUT)] == 1


async def test_disconnect_closes_each_connection_once() -> None:
    """The connection control API closes a session's connection with its code, once."""
    gw = gateway()
    conn, transport = await opened(gw)
    assert gw.disconnect([conn.session], 4010, "bye") == 1
    assert gw.disconnect([conn.session], 4010, "bye") == 0
    assert transport.closes == [Close(4010, "bye")]
    gw.finish(conn, 4010)
    assert gw.node.metrics.disconnects["4010"] == 1
    assert gw.connections() == []


async def test_shutdown_closes_every_transport_going_away() -> None:
    """Shutdown stops accepting and closes every connection, on any transport, with 1001."""
    gw = gateway()
    conns = [await opened(gw, user) for user in ("ann", "ben")]
    await gw.shutdown()
    assert not gw.accepting
    for _, transport in conns:
        assert [c.code for c in transport.closes] == [CloseCode.GOING_AWAY]
    late = RecordingTransport()
    conn = gw.connect(late, peer="127.0.0.1", options=NO_OPTIONS, pending=False)
    assert await gw.authenticate(conn, token("cat")) == Close(
        CloseCode.GOING_AWAY, "server shutting down"
    )
