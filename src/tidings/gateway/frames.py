"""WebSocket frames as tidings writes and checks them, beside aiohttp's reader and writer.

Server frames are built here once per message (they are the same for every recipient,
unmasked); the checks are the ones aiohttp's reader does not make on a whole message
(UTF-8, the exact size limit), on a client's close code, and on a deflate offer.
"""

from __future__ import annotations

import struct
from typing import Final

from aiohttp import WSMessage, WSMsgType

from ..protocol import CloseCode
from ..session import Close
from .handshake import Opening

INVALID_TEXT: Final = 1007


def frame_text(payload: bytes, first: int = 0x81) -> bytes:
    """An unmasked, final text frame (server frames are identical for every recipient);
    ``first`` 0x82 makes it binary."""
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def frame_close(code: int, reason: str) -> bytes:
    """An unmasked close frame."""
    body = struct.pack("!H", code) + reason.encode()[:123]
    return bytes((0x88, len(body))) + body


def valid_close_code(code: int) -> bool:
    """Whether a client may send this close code (RFC 6455 7.4, the IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def message_error(msg: WSMessage, limit: int) -> Close | None:
    """What the frame reader does not check on a whole message: text must be UTF-8
    (1007), and nothing may exceed ``max_message_bytes`` once decompressed (1009)."""
    data = msg.data
    if len(data) > limit:
        return Close(CloseCode.MESSAGE_TOO_BIG, "message too big")
    if msg.type is WSMsgType.TEXT and not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError:
            return Close(INVALID_TEXT, "invalid UTF-8")
    return None


def deflate_offers_valid(request: Opening) -> bool:
    """Whether every permessage-deflate offer is well formed (RFC 7692 7.1): known
    parameters, none twice, window bits 8 to 15. A malformed offer is declined: the
    connection opens without compression."""
    header = request.headers.get("Sec-WebSocket-Extensions", "")
    for offer in header.split(","):
        name, *params = [p.strip() for p in offer.split(";")]
        if name.lower() != "permessage-deflate":
            continue
        seen: set[str] = set()
        for param in params:
            key, eq, value = (x.strip() for x in param.partition("="))
            key = key.lower()
            if key in seen or key not in _DEFLATE_PARAMS:
                return False
            seen.add(key)
            value = value.strip('"')
            if key.endswith("_max_window_bits"):
                if eq and not (value.isdigit() and 8 <= int(value) <= 15):
                    return False
                if not eq and key == "server_max_window_bits":
                    return False
            elif eq:
                return False
    return True


_DEFLATE_PARAMS: Final = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)
