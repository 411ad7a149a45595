"""WebSocket upgrades on the HTTP front, for the lean engine (``ws_engine = "lean"``).

The same checks as ``gateway.websocket`` makes on an aiohttp request, read by the same
functions (``gateway.handshake``, ``gateway.handover.accept``): ``take`` decides, with no
side effect, whether the upgrade is one that succeeds short of admission control
(version 13, an allowed origin, a handshake websockets accepts); anything else goes to
aiohttp, whose answer (426, 403, 400) stays its own. Admission control
(``WebSocketEndpoint.admit``) counts, so what it refuses (429/503 with Retry-After) the
front answers itself, as the endpoint would; what it admits becomes a ``LeanLink`` on the
socket, opened by ``WebSocketEndpoint.open_lean`` exactly as after aiohttp's upgrade.

The common upgrade (a canonical key, ``Upgrade: websocket``, ``Connection: Upgrade``, no
extension to negotiate) is answered without websockets' request and response objects:
the 101 is built here, by websockets' ``accept_key`` and in the order its ``accept``
writes the headers, and the query is split without yarl when it needs no decoding. Any
other shape takes the websockets path (``handover.accept``), as every upgrade did before,
so what websockets refuses (a malformed key, say) still goes to aiohttp.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from multidict import CIMultiDict
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_connection, parse_upgrade
from websockets.http11 import Response
from websockets.server import ServerProtocol
from websockets.utils import accept_key
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
from .response import Dates

_VERSION: Final = b"sec-websocket-version"
# A Sec-WebSocket-Key the 101 is built for here: the canonical base64 of 16 bytes (RFC
# 6455 4.2.1), whose last digit carries 2 bits and 4 zero bits. websockets also takes
# a non-canonical one (other trailing bits): that one takes its path.
_KEY: Final = re.compile(rb"[A-Za-z0-9+/]{21}[AQgw]==")
# Characters after which a query needs yarl's decoding (or is not one yarl would
# split the same way): the plain split reads only name=value pairs joined by "&".
_ENCODED: Final = re.compile(r"[%+;#]")
# websockets' accept(): Date, Upgrade, Connection, Sec-WebSocket-Accept, then the
# subprotocol handover.accept adds.
_SWITCHING: Final = b"HTTP/1.1 101 Switching Protocols\r\nDate: "
_ACCEPT: Final = b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "


class _Headers(Mapping[str, str]):
    """A head's headers (lower-case byte names, ASCII values) as ``gateway.handshake``
    reads them: by any case of the name."""

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[bytes, bytes]) -> None:
        self._raw = raw

    def __getitem__(self, name: str) -> str:
        return self._raw[name.lower().encode()].decode()

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        value = self._raw.get(name.lower().encode())
        return default if value is None else value.decode()

    def __iter__(self) -> Iterator[str]:
        return (name.decode() for name in self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def read_query(target: str) -> Mapping[str, str]:
    """The query of a request target as ``yarl.URL(target, encoded=True).query`` reads
    it (first value of each name): split here when it is only plain ``name=value``
    pairs, each name once; read by yarl otherwise."""
    _, _, query = target.partition("?")
    if not query:
        return {}
    if _ENCODED.search(query) is None:
        pairs: dict[str, str] = {}
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            if not eq or not name or name in pairs:
                break
            pairs[name] = value
        else:
            return pairs
    return URL(target, encoded=True).query


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
        self.dates = Dates()

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
        headers = _Headers(h)
        target = head.target.decode()
        opening = _Opening(read_query(target), headers, remote)
        endpoint = self.endpoint
        if not endpoint.gateway.origin_allowed(headers.get("Origin")):
            return None  # the 403, its log line and metric are aiohttp's
        offered = offered_protocols(opening)
        token = handshake_token(opening, offered)
        selected = SUBPROTOCOL if SUBPROTOCOL in offered else None
        deflate = self.compression and deflate_offers_valid(opening)
        switched = self._switch(h, deflate, selected)
        if switched is None:
            multi = CIMultiDict((k.decode(), v.decode()) for k, v in h.items())
            answer = accept(self.engine, multi, target, deflate, selected)
            if isinstance(answer, Response):
                return None
            switched = answer
        ws, raw = switched
        peer = client_address(opening, endpoint.trusted)
        return Upgrade(ws, raw, peer, token, options(opening))

    def _switch(
        self, h: dict[bytes, bytes], deflate: bool, selected: str | None
    ) -> tuple[ServerProtocol, bytes] | None:
        """The protocol and 101 websockets' ``accept`` would make, for the common shape
        only; None for any other (websockets' path is to judge it). Version 13 and the
        method, GET, are checked already; the subprotocol is ours (``handover.accept``
        gives websockets only the headers it negotiates)."""
        key = h.get(b"sec-websocket-key")
        if key is None or _KEY.fullmatch(key) is None:
            return None
        if not (_token_is(h, b"upgrade", b"websocket", parse_upgrade, only=True)):
            return None
        if not (_token_is(h, b"connection", b"upgrade", parse_connection, only=False)):
            return None
        # With permessage-deflate offered, websockets negotiates it; without compression
        # it reads no Sec-WebSocket-Extensions at all.
        if deflate and b"sec-websocket-extensions" in h:
            return None
        parts = [_SWITCHING, self.dates.now(), _ACCEPT, accept_key(key.decode()).encode()]
        if selected is not None:
            parts += (b"\r\nSec-WebSocket-Protocol: ", selected.encode())
        parts.append(b"\r\n\r\n")
        # No extension is negotiated: the protocol websockets' path makes with
        # permessage-deflate available and none accepted frames as one without it.
        return self.engine.protocol(False), b"".join(parts)


def _token_is(
    h: dict[bytes, bytes],
    name: bytes,
    token: bytes,
    parse: Callable[[str], Sequence[str]],
    *,
    only: bool,
) -> bool:
    """Whether header ``name`` holds ``token`` (any case), as websockets reads it: one
    token alone, or (``only=False``) among others. A value that does not parse is not."""
    value = h.get(name)
    if value is None:
        return False
    if value.lower() == token:
        return True
    try:
        tokens = [t.lower() for t in parse(value.decode())]
    except InvalidHeader:
        return False
    expected = token.decode()
    return tokens == [expected] if only else expected in tokens
