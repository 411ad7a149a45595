"""What a session returns to its transport and the states it goes through."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Close:
    """An instruction to close the connection with a code and a reason."""

    code: int  # a CloseCode, or an operator's own 4000-4999 code
    reason: str


class State(enum.Enum):
    AWAITING_AUTH = "awaiting_auth"
    OPEN = "open"
    CLOSED = "closed"
