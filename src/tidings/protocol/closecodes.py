"""The close codes tidings sends and the policy each carries for clients (reconnect or
give up); ``docs/protocol.md`` and the JavaScript client's table are kept in step by tests."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


class CloseCode(enum.IntEnum):
    """WebSocket close codes sent by tidings.

    4000-4003 are exactly guide 001's. The ``CLOSE_CODES`` table says, for each, whether
    a client should reconnect; the Python and JavaScript clients follow it.
    """

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 4000
    MISSING_CREDENTIALS = 4001
    INVALID_TOKEN = 4002
    USER_MISMATCH = 4003
    AUTH_TIMEOUT = 4004
    TOKEN_EXPIRED = 4005
    FORBIDDEN_ORIGIN = 4006
    BACKEND_DENIED = 4007
    SLOW_CONSUMER = 4008
    TOO_MANY_CONNECTIONS = 4009
    DISCONNECTED = 4010
    RATE_LIMITED = 4029


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """What a close code means and what a client should do about it."""

    reason: str
    reconnect: bool
    advice: str


CLOSE_CODES: Final[Mapping[CloseCode, CloseInfo]] = {
    CloseCode.NORMAL: CloseInfo("normal closure", False, "closed on purpose; do not reconnect"),
    CloseCode.GOING_AWAY: CloseInfo(
        "server shutting down", True, "reconnect (with jitter) to this or another instance"
    ),
    CloseCode.MESSAGE_TOO_BIG: CloseInfo(
        "message too big", True, "reconnect, and do not resend the oversized message"
    ),
    CloseCode.INTERNAL_ERROR: CloseInfo("internal server error", True, "reconnect with backoff"),
    CloseCode.MISSING_CREDENTIALS: CloseInfo(
        "missing authentication credentials", False, "get a token before connecting again"
    ),
    CloseCode.INVALID_TOKEN: CloseInfo(
        "invalid or expired token", False, "reconnect only with a new token"
    ),
    CloseCode.USER_MISMATCH: CloseInfo(
        "user id mismatch", False, "the userId parameter does not match the token; fix the client"
    ),
    CloseCode.AUTH_TIMEOUT: CloseInfo(
        "authentication timeout", True, "reconnect and send auth promptly"
    ),
    CloseCode.TOKEN_EXPIRED: CloseInfo(
        "token expired", True, "reconnect with a fresh token (or refresh in-band before expiry)"
    ),
    CloseCode.FORBIDDEN_ORIGIN: CloseInfo(
        "origin not allowed", False, "the page's origin is not in the allowlist"
    ),
    CloseCode.BACKEND_DENIED: CloseInfo(
        "denied by the application",
        False,
        "the backend's connect hook refused this user; the reason says why",
    ),
    CloseCode.SLOW_CONSUMER: CloseInfo(
        "slow consumer", True, "reconnect; the client was not reading fast enough"
    ),
    CloseCode.TOO_MANY_CONNECTIONS: CloseInfo(
        "too many connections", True, "reconnect later with backoff, or close other tabs"
    ),
    CloseCode.DISCONNECTED: CloseInfo(
        "disconnected by the server",
        False,
        "an operator closed it (a ban, a password change): do not reconnect on your own",
    ),
    CloseCode.RATE_LIMITED: CloseInfo(
        "rate limit exceeded", True, "reconnect after a backoff and send less"
    ),
}


# Codes outside the table get a policy by range, as centrifuge's do: the lower half of
# each application range (3000-3499, 4000-4499) is worth a reconnect, the upper half
# (3500-3999, 4500-4999) is terminal. An operator choosing a code for the connection
# control API picks the policy with the code. Everything else (1006 abnormal closure,
# 1011, 1012 service restart, proxies' codes) is transport trouble: reconnect.
TERMINAL_RANGES: Final = (range(3500, 4000), range(4500, 5000))


def should_reconnect(code: int) -> bool:
    """Client policy for a close code: the table's for codes tidings sends, else by range
    (``TERMINAL_RANGES`` give up, every other code reconnects)."""
    try:
        return CLOSE_CODES[CloseCode(code)].reconnect
    except (ValueError, KeyError):
        return not any(code in terminal for terminal in TERMINAL_RANGES)
