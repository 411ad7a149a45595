"""The Python SDK (sync and asyncio) honours Retry-After: a tiny real HTTP peer in front
of a real server answers 503 with Retry-After first, then passes requests on; the retry
comes no sooner than asked, carries the same Idempotency-Key, and creates once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate

import aiohttp
import pytest
from aiohttp import web

from tidings_sdk import AsyncClient, Client, Retry, Unavailable
from tidings_sdk.errors import parse_retry_after

from .conftest import API_KEY, Harness

GUIDE_003 = {"message": "Your case status has been updated", "type": "info", "case_id": "12345"}


class Peer:
    """Answers the first ``refusals`` requests 503 with ``Retry-After: <retry_after>``
    (nothing done), then forwards to the real server. Records each request's arrival
    (monotonic) and Idempotency-Key."""

    def __init__(self, upstream: str, refusals: int, retry_after: str) -> None:
        self.upstream = upstream
        self.refusals = refusals
        self.retry_after = retry_after
        self.seen: list[tuple[float, str | None]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((time.monotonic(), request.headers.get("Idempotency-Key")))
        body = await request.read()
        if len(self.seen) <= self.refusals:
            return web.json_response(
                {"error": {"code": "UNAVAILABLE", "message": "the store is busy"}},
                status=503,
                headers={"Retry-After": self.retry_after},
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as r,
        ):
            return web.Response(body=await r.read(), status=r.status, content_type=r.content_type)


@asynccontextmanager
async def peer(harness: Harness, refusals: int, retry_after: str) -> AsyncIterator[Peer]:
    p = Peer(harness.url, refusals, retry_after)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", p.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    p.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield p
    finally:
        await runner.cleanup()


def test_retry_after_forms() -> None:
    """Both forms of Retry-After: seconds, and an HTTP date counted from now."""
    now = 1_700_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(formatdate(now + 7, usegmt=True), now) == 7.0
    assert parse_retry_after(formatdate(now - 7, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-1", now) is None


@pytest.mark.parametrize("client", ["sync", "async"])
async def test_503_is_retried_after_retry_after_with_the_same_key(
    harness: Harness, client: str
) -> None:
    """503 Retry-After: 1, then the real server: the retry waits at least 1 s, reuses the
    Idempotency-Key, and exactly one notification exists."""
    retry = Retry(attempts=3, backoff=0.01, max_backoff=5.0)
    async with peer(harness, refusals=1, retry_after="1") as p:
        if client == "sync":
            with Client(p.url, API_KEY, retry=retry) as sync:
                created = await asyncio.to_thread(sync.send_notification, "ned", GUIDE_003)
        else:
            async with AsyncClient(p.url, API_KEY, retry=retry) as aio:
                created = await aio.send_notification("ned", GUIDE_003)
    (first, key1), (second, key2) = p.seen
    assert second - first >= 1.0
    assert key1 is not None
    assert key1 == key2
    assert created["replayed"] is False
    _, page = await harness.api("GET", "/api/users/ned/notifications")
    assert [n["id"] for n in page["items"]] == [created["notifications"][0]["id"]]


@pytest.mark.parametrize("client", ["sync", "async"])
async def test_a_longer_retry_after_is_raised_not_retried_early(
    harness: Harness, client: str
) -> None:
    """Retry-After past max_backoff: Unavailable at once with retry_after, one request,
    nothing created."""
    retry = Retry(attempts=3, backoff=0.01, max_backoff=5.0)
    async with peer(harness, refusals=1, retry_after="120") as p:
        if client == "sync":
            with Client(p.url, API_KEY, retry=retry) as sync, pytest.raises(Unavailable) as info:
                await asyncio.to_thread(sync.send_notification, "ned", GUIDE_003)
        else:
            async with AsyncClient(p.url, API_KEY, retry=retry) as aio:
                with pytest.raises(Unavailable) as info:
                    await aio.send_notification("ned", GUIDE_003)
    assert (info.value.status, info.value.retry_after, len(p.seen)) == (503, 120.0, 1)
    _, page = await harness.api("GET", "/api/users/ned/notifications")
    assert page["items"] == []
