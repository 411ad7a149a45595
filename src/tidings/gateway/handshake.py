"""What a client's opening HTTP request says: its token, its address, its query options.

Shared by every transport that opens with an aiohttp request (WebSocket, SSE, and any
other mounted on the same application), and by the HTTP front's WebSocket upgrade
(``tidings.front``), so they read a request the same way: each takes an ``Opening``,
which an aiohttp ``web.Request`` is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

BEARER_PREFIX: Final = "bearer."

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Opening(Protocol):
    """What these functions read of a client's opening request."""

    @property
    def query(self) -> Mapping[str, str]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def remote(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Options:
    """A connection's query options, the same on every transport."""

    user_id: str | None  # ``userId``: must match the token's user
    last_seq: int | None  # ``lastSeq``: the inbox position to resume from
    ack: bool  # ``ack=1``: the client acknowledges notifications


def options(request: Opening) -> Options:
    """The query options of a connection's opening request."""
    last_seq = request.query.get("lastSeq", "")
    return Options(
        user_id=request.query.get("userId"),
        last_seq=int(last_seq) if last_seq.isdigit() and len(last_seq) < 19 else None,
        ack=request.query.get("ack", "").lower() in ("1", "true"),
    )


def offered_protocols(request: Opening) -> list[str]:
    """The subprotocols a WebSocket handshake offers."""
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def handshake_token(request: Opening, offered: list[str]) -> str | None:
    """The token a client passed with its request: ``?token=``, a Bearer header, or a
    ``bearer.<jwt>`` subprotocol (one of ``offered``)."""
    token = request.query.get("token")
    if token:
        return token
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for proto in offered:
        if proto.startswith(BEARER_PREFIX) and len(proto) > len(BEARER_PREFIX):
            return proto[len(BEARER_PREFIX) :]
    # ``?token=`` given but empty (a client whose token variable was empty): refused as
    # missing credentials at once, rather than left waiting for an auth message.
    return "" if "token" in request.query else None


def trusted_networks(proxies: list[str]) -> list[Network]:
    """The ``trusted_proxies`` setting, parsed."""
    return [ipaddress.ip_network(p, strict=False) for p in proxies]


def client_address(request: Opening, trusted: list[Network]) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the
    right-most address in X-Forwarded-For that is not itself a trusted proxy (what a
    client writes further left is unverifiable)."""
    peer = request.remote
    if not trusted or peer is None or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _in(hop, trusted):
            return hop
    return peer


def _in(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)
