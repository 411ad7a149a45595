"""Typed errors: one class per documented status, plus transport failures.

Every error the server answers is JSON ``{"error": {"code", "message"}}`` with the status
(docs/http-api.md#errors); :func:`error_for` turns such an answer into the matching class,
so a backend can ``except NotFound`` rather than compare numbers.
"""

from __future__ import annotations

import json
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Final


class TidingsError(Exception):
    """Base of every error this SDK raises."""


class TransportError(TidingsError):
    """The request did not get an answer: connection refused or dropped, or a timeout.

    Attributes:
        maybe_sent: ``True`` when the request may have reached the server before the
            failure (a dropped connection, a read timeout), so it may have taken effect.
            Calls that are safe to repeat have already been retried when this is raised.
    """

    def __init__(self, message: str, *, maybe_sent: bool) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class APIError(TidingsError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status.
        code: the server's ``error.code`` (``NOT_FOUND``, ``VALIDATION_ERROR``, ...), or
            ``None`` when the body was not the server's JSON (a proxy's error page).
        message: the server's ``error.message``, or the body's text.
        retry_after: seconds from a ``Retry-After`` header, when there was one.
    """

    def __init__(
        self, status: int, code: str | None, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {code or 'HTTP error'}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class BadRequest(APIError):
    """400: malformed JSON, a bad query parameter or header."""


class Unauthorized(APIError):
    """401: no API key, a wrong one; on user routes, no valid user token."""


class Forbidden(APIError):
    """403: a user token where a key is needed, or not a member of the room."""


class NotFound(APIError):
    """404: no such notification, room, member or route."""


class Conflict(APIError):
    """409: an Idempotency-Key reused for another request, or a room id that exists."""


class PayloadTooLarge(APIError):
    """413: a body over the server's ``max_api_body_bytes``."""


class ValidationError(APIError):
    """422: JSON of the wrong shape or a value out of range; the message says which."""


class RateLimited(APIError):
    """429: over the key's or the member's rate; nothing was done."""


class ServerError(APIError):
    """5xx other than 503: the server failed (its log has the details)."""


class Unavailable(APIError):
    """503: a store or the cluster's broker is unreachable; nothing was done."""


STATUS_ERRORS: Final[dict[int, type[APIError]]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
    503: Unavailable,
}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: the delta form (tidings' own), or an
    HTTP date (a proxy's or a load balancer's), counted from ``now`` (default: the
    system clock)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT, even when it does not say so
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    return seconds if seconds >= 0 else None


def error_for(status: int, body: bytes, retry_after: str | None = None) -> APIError:
    """The typed error for an error answer (status >= 400)."""
    code: str | None = None
    message = body.decode("utf-8", errors="replace").strip() or f"HTTP {status}"
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        err = parsed["error"]
        if isinstance(err.get("code"), str):
            code = err["code"]
        if isinstance(err.get("message"), str):
            message = err["message"]
    cls = STATUS_ERRORS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    return cls(status, code, message, parse_retry_after(retry_after))
