"""Handing an upgraded socket from aiohttp to the lean engine (``lean.py``).

aiohttp has no public way to give a connection away after an upgrade request: its
``RequestHandler`` keeps the socket, its parser and a keep-alive timer, and writes the
handler's response. ``handshake`` answers the upgrade by websockets' rules; ``detach``
writes that answer, makes the ``LeanLink`` the socket's protocol through the public
``asyncio.Transport.set_protocol`` and tells the ``RequestHandler`` the connection is
gone; the handler then returns a ``Detached``, which aiohttp prepares and ends without
writing anything.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest
from multidict import MultiMapping
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from .lean import LeanEngine, LeanLink

_HANDSHAKE_HEADERS: Final = (
    "Connection",
    "Upgrade",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
)


def handshake(
    engine: LeanEngine, request: web.Request, deflate: bool, subprotocol: str | None
) -> tuple[ServerProtocol, bytes] | web.Response:
    """The 101 for an upgrade request aiohttp has parsed, by websockets' rules (key,
    version, extension negotiation), or the HTTP refusal it makes instead."""
    answer = accept(engine, request.headers, request.raw_path, deflate, subprotocol)
    if isinstance(answer, Response):
        return web.Response(status=answer.status_code, body=answer.body, content_type="text/plain")
    return answer


def accept(
    engine: LeanEngine,
    got: MultiMapping[str],
    raw_path: str,
    deflate: bool,
    subprotocol: str | None,
) -> tuple[ServerProtocol, bytes] | Response:
    """The sans-I/O protocol and the 101's bytes for an upgrade request's headers (as
    aiohttp or the HTTP front parsed them), or websockets' refusal.

    The protocol starts OPEN and is given the request's headers as parsed, rather than
    the request's bytes to parse again: nothing of the request then stays with the
    connection (websockets' parser would keep it for the connection's life).
    """
    ws = engine.protocol(deflate)
    headers = Headers()
    for name in _HANDSHAKE_HEADERS:  # what accept() reads; origin and subprotocol are ours
        for value in got.getall(name, ()):
            headers[name] = value
    response = ws.accept(Request(raw_path, headers))
    if response.status_code != 101:
        return response
    if subprotocol is not None:
        response.headers["Sec-WebSocket-Protocol"] = subprotocol
    return ws, response.serialize()


class Detached(web.StreamResponse):
    """What the handler returns for a socket it handed over: aiohttp has nothing left
    to write (the 101 is written), so preparing and ending it do nothing."""

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def detach(request: web.Request, link: LeanLink, answer: bytes) -> bytes:
    """Take the socket off aiohttp: write the 101, make ``link`` its protocol, and tell
    aiohttp's ``RequestHandler`` the connection is gone, so it drops its state and
    neither writes a response nor closes the socket when the handler returns.

    Reading stays paused until ``LeanLink.start``. Returns the bytes the client sent
    after its request, if any (aiohttp keeps them for the upgraded protocol).
    """
    handler = request.protocol
    transport = link.transport
    transport.pause_reading()
    # aiohttp parks what follows an upgrade request in the handler, for its own
    # WebSocket reader; a client should not send before the 101, but one may.
    tail: bytes = getattr(handler, "_message_tail", b"")
    transport.set_protocol(link)
    # With no transport, connection_lost only forgets: the server's registry entry,
    # the keep-alive timer, the parser; and it marks the connection force-closed, so
    # once the handler has returned (a ``Detached``) aiohttp ends its loop for it.
    handler.transport = None
    handler.connection_lost(None)
    transport.write(answer)
    return bytes(tail)
