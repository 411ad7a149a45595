"""Opening one connection: the token, the URL's query, the handshake and the welcome."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from .errors import ClientClosed

log = logging.getLogger("tidings.client")

TokenSource: TypeAlias = str | Callable[[], str | Awaitable[str]]
Message: TypeAlias = dict[str, Any]

ABNORMAL_CLOSURE: Final = 1006
CLIENT_CLOSED: Final = 1000


async def token_value(source: TokenSource) -> str:
    """The token itself, or what the (sync or async) callable returns now."""
    if isinstance(source, str):
        return source
    value = source()
    if inspect.isawaitable(value):
        value = await value
    if not isinstance(value, str):
        raise TypeError("the token callable must return a string")
    return value


def connect_url(url: str, token: str, last_seq: int | None, *, ack: bool) -> str:
    """``url`` with ``token``, ``lastSeq`` and ``ack`` set (other parameters are kept)."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("token", "lastSeq", "ack")
    ]
    query.append(("token", token))
    if last_seq is not None:
        query.append(("lastSeq", str(last_seq)))
    if ack:
        query.append(("ack", "1"))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def open_welcomed(
    url: str, open_timeout: float, max_size: int
) -> tuple[ClientConnection, Message]:
    """Connect and read the ``welcome``.

    Raises:
        ClientClosed: the server closed (or sent something else) before the welcome.
        OSError, TimeoutError, websockets.InvalidHandshake: the connection failed.
    """
    ws = await websockets.connect(url, open_timeout=open_timeout, max_size=max_size)
    try:
        async with asyncio.timeout(open_timeout):
            raw = await ws.recv()
    except websockets.ConnectionClosed:
        raise ClientClosed(close_code(ws), ws.close_reason or "") from None
    except BaseException:
        await ws.close()
        raise
    msg = parse(raw)
    if msg is None or msg.get("type") != "welcome":
        await ws.close()
        raise ClientClosed(ABNORMAL_CLOSURE, f"expected welcome, got {str(raw)[:100]!r}")
    return ws, msg


def close_code(ws: ClientConnection) -> int:
    """The connection's close code; ``1006`` when no close frame was received."""
    code = ws.close_code
    return ABNORMAL_CLOSURE if code is None else int(code)


def parse(raw: str | bytes) -> Message | None:
    """A server message as a dict; None (logged) if it is not a JSON object."""
    try:
        msg: object = json.loads(raw)
    except ValueError:
        log.warning("tidings client: a server message is not JSON")
        return None
    return msg if isinstance(msg, dict) else None
