"""What every security test checks after its attack: the server still serves, and nothing
the attacker did was logged as an error."""

from __future__ import annotations

import logging

import pytest

from .conftest import Harness, recv, request


async def assert_still_serving(h: Harness, user: str = "fresh-user") -> None:
    """A fresh client connects, is welcomed, and receives what the API sends it."""
    async with h.client(user) as ws:
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        status, _ = await h.api("POST", f"/api/users/{user}/send", {"type": "hi", "data": 1})
        assert status == 200
        msg = await recv(ws)
        assert (msg["type"], msg["data"]) == ("hi", 1)


def assert_no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    """No logger at all (aiohttp's included) logged at ERROR or above."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [(r.name, r.getMessage()) for r in errors]
