"""What every security test checks after its attack: the server still serves, and nothing
the attacker did was logged as an error."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

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


def rss() -> int:
    """This process's resident set, in bytes (the servers under test run in it)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def rss_within(budget_mib: int) -> Iterator[None]:
    """The attack inside may grow the process's memory by at most ``budget_mib``."""
    before = rss()
    yield
    grown = (rss() - before) / 2**20
    assert grown <= budget_mib, f"RSS grew {grown:.0f} MiB (budget {budget_mib} MiB)"
