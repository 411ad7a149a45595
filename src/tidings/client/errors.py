"""What the client raises."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """The server answered a request with an ``error`` message."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


class ClientClosed(Exception):
    """The client is closed for good: by ``close()``, or by a terminal close code.

    ``code`` is the WebSocket close code (``1000`` after ``close()``; ``1006`` when no
    close frame was received), ``reason`` the close reason the server sent.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}" if reason else f"closed ({code})")
        self.code = code
        self.reason = reason


class QueueFull(Exception):
    """``send()`` while offline, with ``queue_limit`` messages already queued."""


class ConnectionLost(Exception):
    """A request's connection dropped before its reply came (internal: it is retried)."""


def error_from(msg: dict[str, Any]) -> ClientError:
    """The ``ClientError`` an ``error`` message describes."""
    data = msg.get("data")
    if not isinstance(data, dict):
        return ClientError("SERVER_ERROR", "malformed error message")
    return ClientError(
        str(data.get("code", "SERVER_ERROR")), str(data.get("message", "")), data.get("details")
    )
