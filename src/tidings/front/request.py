"""One HTTP/1.1 request head as the front reads it, parsed by llhttp (``httptools``).

Pure: bytes in, a ``Head`` (or the verdict that the bytes are not the front's to serve)
out. The front serves only the common, well-formed shape; everything else is handed to
aiohttp unread, so every error answer stays aiohttp's. ``read_head`` therefore never
refuses anything itself: it says "not mine" (``None``) or "need more bytes".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import httptools

# A head larger than this goes to aiohttp, whose limits (431, 414) then answer it.
MAX_HEAD: Final = 8192
# What a request the front may serve starts with; anything else (TLS, another method)
# is handed over at its first byte.
STARTS: Final = (b"POST ", b"GET ")
_END: Final = b"\r\n\r\n"


class NeedMore:
    """The head is not complete yet."""


NEED_MORE: Final = NeedMore()


@dataclass(slots=True)
class Head:
    """A request head of the shape the front serves: HTTP/1.1, keep-alive, no transfer
    coding, no ``Expect``, each header at most once (``headers``: lower-case names)."""

    method: bytes
    target: bytes
    headers: dict[bytes, bytes]
    size: int  # bytes of the head, the blank line included
    upgrade: bool  # llhttp saw an upgrade request (Connection: upgrade)

    @property
    def path(self) -> bytes:
        return self.target.partition(b"?")[0]

    def content_length(self) -> int | None:
        """The body's declared length (0 when there is none); None when it is not a
        plain decimal number."""
        value = self.headers.get(b"content-length")
        if value is None:
            return 0
        return int(value) if value.isdigit() and len(value) < 16 else None


class _Collector:
    """httptools' callbacks: what the head says."""

    __slots__ = ("complete", "duplicate", "headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.duplicate = False
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in self.headers:
            self.duplicate = True
        self.headers[name] = value

    def on_headers_complete(self) -> None:
        self.complete = True


def starts_servable(buffer: bytes | bytearray) -> bool:
    """Whether a request beginning with ``buffer`` may still be one the front serves."""
    if buffer.startswith(STARTS):  # the common case, in one C call
        return True
    if len(buffer) >= max(map(len, STARTS)):
        return False
    first = bytes(buffer[:5])
    return any(start.startswith(first[: len(start)]) for start in STARTS)


def read_head(buffer: bytes | bytearray) -> Head | NeedMore | None:
    """The head at the start of ``buffer``: a ``Head``, ``NEED_MORE``, or None when the
    request is not of the shape the front serves (aiohttp is to have it)."""
    if not starts_servable(buffer):
        return None
    end = buffer.find(_END, 0, MAX_HEAD + len(_END))
    if end < 0:
        # A bare-LF head, or one past the front's limit: aiohttp's to judge.
        if len(buffer) > MAX_HEAD or b"\n\n" in buffer or b"\n\r\n" in buffer:
            return None
        return NEED_MORE
    size = end + len(_END)
    collector = _Collector()
    parser = httptools.HttpRequestParser(collector)
    upgrade = False
    try:
        parser.feed_data(bytes(buffer[:size]))
    except httptools.HttpParserUpgrade:
        upgrade = True
    except httptools.HttpParserError:
        return None
    if not collector.complete or collector.duplicate:
        return None
    if parser.get_http_version() != "1.1":
        return None
    headers = collector.headers
    connection = headers.get(b"connection", b"").lower()
    if b"close" in (token.strip() for token in connection.split(b",")):
        return None
    if b"transfer-encoding" in headers or b"expect" in headers:
        return None
    return Head(parser.get_method(), collector.url, headers, size, upgrade)
