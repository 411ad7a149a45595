"""WebSocket upgrades on the HTTP front, for the lean engine (``ws_engine = "lean"``).

The same checks as ``gateway.websocket`` makes on an aiohttp request, read by the same
functions (``gateway.handshake``, ``gateway.handover.accept``): ``take`` decides, with no
side effect, whether the upgrade is one that succeeds short of admission control
(version 13, an allowed origin, a handshake websockets accepts); anything else goes to
aiohttp, whose answer (426, 403, 400) stays its own. Admission control
(``WebSocketEndpoint.admit``) counts, so what it refuses (429/503 with Retry-After) the
front answers itself, as the endpoint would; what it admits becomes a ``LeanLink`` on the
socket, opened by ``WebSocketEndpoint.open_lean`` exactly as after aiohttp's upgrade.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy
from websockets.http11 import Response
from websockets.server import ServerProtocol
from yarl import URL

from ..gateway.frames import deflate_offers_valid
from ..gateway.handover import accept
from ..gateway.handshake import (
    Options,
    client_address,
    handshake_token,
    offered_protocols,
    options,
)
from ..gateway.lean import LeanEngine
from ..gateway.websocket import SUBPROTOCOL, WebSocketEndpoint
from .request import Head

_VERSION: Final = b"sec-websocket-version"


@dataclass(frozen=True, slots=True)
class _Opening:
    """An upgrade request as ``gateway.handshake`` reads it (an ``Opening``)."""

    query: Mapping[str, str]
    headers: Mapping[str, str]
    remote: str | None


@dataclass(frozen=True, slots=True)
class Upgrade:
    """An upgrade the front takes: its sans-I/O protocol, the 101's bytes, and what the
    connection opens with."""

    ws: ServerProtocol
    answer: bytes
    peer: str | None
    token: str | None
    options: Options


class Upgrades:
    """The WebSocket paths of one endpoint, on the front.

    Args:
        endpoint: the WebSocket endpoint (its lean engine, checks and ``open_lean``).
        engine: that endpoint's lean engine.
    """

    def __init__(self, endpoint: WebSocketEndpoint, engine: LeanEngine) -> None:
        self.endpoint = endpoint
        self.engine = engine
        s = endpoint.node.settings
        self.paths = frozenset(p.encode() for p in s.ws_paths)
        self.compression: bool = s.compression

    def take(self, head: Head, remote: str | None) -> Upgrade | None:
        """The upgrade ``head`` asks for if it is the common shape that succeeds (short
        of admission control), else None: aiohttp is to answer it."""
        h = head.headers
        if head.method != b"GET" or head.path not in self.paths or b"content-length" in h:
            return None
        if h.get(_VERSION) != b"13" or not head.target.isascii():
            return None  # another version's 426 (and its metric) is aiohttp's
        if not all(value.isascii() for value in h.values()):
            return None
        headers = CIMultiDictProxy(CIMultiDict((k.decode(), v.decode()) for k, v in h.items()))
        target = head.target.decode()
        opening = _Opening(URL(target, encoded=True).query, headers, remote)
        endpoint = self.endpoint
        if not endpoint.gateway.origin_allowed(headers.get("Origin")):
            return None  # the 403, its log line and metric are aiohttp's
        offered = offered_protocols(opening)
        token = handshake_token(opening, offered)
        selected = SUBPROTOCOL if SUBPROTOCOL in offered else None
        deflate = self.compression and deflate_offers_valid(opening)
        answer = accept(self.engine, headers, target, deflate, selected)
        if isinstance(answer, Response):
            return None
        ws, raw = answer
        peer = client_address(opening, endpoint.trusted)
        return Upgrade(ws, raw, peer, token, options(opening))
