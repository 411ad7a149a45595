"""Pushing committed notifications: a create never waits on the broker."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from ..conftest import TIMEOUT, ServerFactory, recv_type
from ..processes import PrivateRedis
from ..security import assert_no_error_logged


async def test_create_answers_while_redis_hangs(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """With Redis hung (SIGSTOP, socket open), a create is committed and answered 201 in
    the store's time, not the broker's; the user's open connection still receives it."""
    redis = PrivateRedis(tmp_path)
    await redis.start()
    try:
        # A command deadline far longer than a create may take: only not waiting helps.
        h = await make_server(
            broker_url=redis.url, redis_command_timeout=TIMEOUT, store_url=str(tmp_path / "s.db")
        )
        broker = h.server.node.broker
        assert broker is not None
        await broker.wait_until(lambda: broker.healthy)
        async with h.client("ann") as ws:
            assert redis.proc is not None
            loop = asyncio.get_running_loop()
            redis.proc.send_signal(signal.SIGSTOP)
            try:
                started = loop.time()
                status, body = await h.api(
                    "POST", "/api/notifications", {"userId": "ann", "title": "hung"}
                )
                took = loop.time() - started
                print(f"create answered {status} in {took * 1000:.1f} ms with Redis stopped")
                assert status == 201
                assert took < 1.0
                inbox = h.server.inbox
                assert inbox is not None
                nid = body["notifications"][0]["id"]
                assert await inbox.store.get("ann", nid) is not None  # committed
            finally:
                redis.proc.send_signal(signal.SIGCONT)
            pushed = await recv_type(ws, "notification")
            assert pushed["data"]["id"] == nid
    finally:
        await redis.stop()
    assert_no_error_logged(caplog)
