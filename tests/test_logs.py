"""No token or API key ever reaches a log line, even at DEBUG."""

from __future__ import annotations

import json
import logging

import pytest

from .conftest import API_KEY, Harness, closed_with, recv, request, token


async def test_no_secret_in_debug_logs(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """The whole gateway flow at DEBUG logs no issued token and no API key."""
    caplog.set_level(logging.DEBUG)  # every logger: tidings, aiohttp, asyncio, websockets
    issued = [token("alice", ("ADMIN",)), token("bob"), token("carol")]
    expired_like = issued[0][:-4] + "AAAA"  # a tampered token is logged no more than a good one
    async with harness.connect(f"?token={issued[0]}&userId=alice") as ws:
        await recv(ws)
        await request(ws, {"type": "subscribe", "channel": "news"})
        await ws.send(json.dumps({"type": "auth", "token": issued[0]}))
        await recv(ws)
    async with harness.connect(additional_headers={"Authorization": f"Bearer {issued[1]}"}):
        pass
    async with harness.connect() as ws:
        await ws.send(json.dumps({"type": "AUTH", "token": issued[2]}))
        await recv(ws)
    async with harness.connect(f"?token={expired_like}") as ws:
        assert (await closed_with(ws))[0] == 4002
    await harness.api("POST", "/api/publish", {"channel": "news", "data": {}})
    await harness.api("POST", "/api/notifications", {"userId": "alice"})
    await harness.api("GET", "/api/stats", key="wrong-" + API_KEY)
    await harness.api("GET", "/api/stats", key=issued[1])  # a user token where a key belongs
    await harness.api("GET", "/api/me/notifications", key=issued[2])
    # Everything the server side logged: tidings, aiohttp, asyncio (the test's own
    # websockets client logs its requests at DEBUG, and is not the server).
    server_side = [r for r in caplog.records if not r.name.startswith("websockets")]
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in server_side)
    assert "open client_" in text  # the logs did capture the flow
    for secret in (*issued, expired_like, API_KEY):
        assert secret not in text
        assert secret[-20:] not in text  # nor a recognisable piece of one
