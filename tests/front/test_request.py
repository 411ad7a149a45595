"""The front's pure parts: which heads it reads as its own, and the Date it writes."""

from __future__ import annotations

import pytest

from tidings.front.request import NEED_MORE, Head, read_head
from tidings.front.response import Dates

BODY = b'{"channel":"news"}'
HEAD = (
    b"POST /api/publish HTTP/1.1\r\nHost: t\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
)


def test_a_plain_head() -> None:
    head = read_head(HEAD + BODY + b"POST /next")
    assert isinstance(head, Head)
    assert (head.method, head.target, head.size) == (b"POST", b"/api/publish", len(HEAD))
    assert head.content_length() == len(BODY)
    assert not head.upgrade


def test_incomplete_heads_wait() -> None:
    for cut in range(len(HEAD)):
        assert read_head(HEAD[:cut]) is NEED_MORE, cut


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00",  # TLS on the plain port
        b"PUT /api/publish HTTP/1.1\r\n\r\n",
        b"POST /api/publish HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        b"POST /api/publish HTTP/1.1\nContent-Length: 0\n\n",  # bare LF: aiohttp judges
        HEAD.replace(b"Host: t", b"Connection: keep-alive, close"),
        HEAD.replace(b"Host: t", b"Transfer-Encoding: chunked"),
        HEAD.replace(b"Host: t", b"Expect: 100-continue"),
        HEAD.replace(b"Host: t", b"Content-Length: 1"),  # twice
        HEAD.replace(b"Host: t", b"Bad Header: x"),
        b"POST /api/publish HTTP/1.1\r\nX: " + b"x" * 9000 + b"\r\n\r\n",
        b"POST /api/publish HTTP/1.1\r\nX: " + b"x" * 9000,  # too long to wait for
    ],
)
def test_not_the_fronts(data: bytes) -> None:
    assert read_head(data) is None


def test_content_length_must_be_plain() -> None:
    head = read_head(HEAD.replace(str(len(BODY)).encode(), b"+18"))
    assert head is None or (isinstance(head, Head) and head.content_length() is None)


def test_date_follows_the_clock() -> None:
    now = [1_764_900_000.2]
    dates = Dates(lambda: now[0])
    first = dates.now()
    assert first == b"Fri, 05 Dec 2025 02:00:00 GMT"
    now[0] += 0.5
    assert dates.now() is first  # the same second: formatted once
    now[0] += 1
    assert dates.now() == b"Fri, 05 Dec 2025 02:00:01 GMT"
