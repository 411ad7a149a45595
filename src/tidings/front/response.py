"""The bytes of a JSON answer, the same aiohttp writes for ``web.Response(body=...,
content_type="application/json")``: status line, the route's extra headers,
``Content-Type``, ``Content-Length``, ``Date``, ``Server`` (tests compare the two)."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final

import msgspec
from aiohttp.http import SERVER_SOFTWARE

from ..api.http import STATUS_CODES

_REASONS: Final = {s.value: s.phrase for s in HTTPStatus}
_TAIL: Final = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n".encode()


class Dates:
    """The ``Date`` header's value, formatted once a second (as aiohttp caches it)."""

    __slots__ = ("_clock", "_second", "_value")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(self._clock())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode()
        return self._value


def json_answer(
    status: int, data: Any, dates: Dates, headers: dict[str, str] | None = None
) -> bytes:
    """A whole HTTP/1.1 response carrying ``data`` as JSON."""
    body = msgspec.json.encode(data)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nDate: "
    )
    return head.encode() + dates.now() + _TAIL + body


def error_answer(
    status: int, message: str, dates: Dates, headers: dict[str, str] | None = None
) -> bytes:
    """The API's JSON error (``api.http.error_response``) as bytes."""
    body = {"error": {"code": STATUS_CODES.get(status, "ERROR"), "message": message}}
    return json_answer(status, body, dates, headers)
