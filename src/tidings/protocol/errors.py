"""The codes of ``error`` messages, and the exception a frame that is not a command raises."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Codes of ``error`` messages; the connection stays open after each."""

    INVALID_MESSAGE = "INVALID_MESSAGE"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMIT = "RATE_LIMIT"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    SERVER_ERROR = "SERVER_ERROR"
    # The cluster's broker cannot be reached: nothing was published; try again.
    UNAVAILABLE = "UNAVAILABLE"


class ProtocolError(Exception):
    """A client frame that cannot be turned into a command."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
