"""Node: one publish path, and on a single instance no suspension on it."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from tidings.channels import NamespacePolicy
from tidings.hub import Outbound
from tidings.node import KNOWN_CHANNELS_KEPT, Node, PublishError, iso_timestamp

from .conftest import make_settings


class Conn:
    """A recording connection, as the hub sees one."""

    def __init__(self, user: str) -> None:
        self.client_id = f"c-{user}"
        self.user_id = user
        self.roles: tuple[str, ...] = ()
        self.got: list[bytes] = []

    def push(self, message: Outbound) -> bool:
        self.got.append(message.payload)
        return True


def _run_without_suspending(coro: Any) -> Any:
    """Drive a coroutine by hand: it must finish on its first step (no await that waits)."""
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    return done.value.value


async def test_single_instance_publish_reaches_the_socket_without_suspending() -> None:
    """publish, send_to_user and broadcast go through the memory broker to the hub and
    finish on their first step: nothing between the call and the last push waits."""
    node = Node(make_settings())
    await node.start()
    try:
        alice = Conn("alice")
        node.hub.add(alice)
        node.hub.subscribe(alice, "news", None)
        sent = _run_without_suspending(node.publish("news", "t", {"n": 1}))
        assert sent.delivered == 1
        sent = _run_without_suspending(node.send_to_user("alice", "t", 2))
        assert sent.delivered == 1
        sent = _run_without_suspending(node.broadcast("t", 3, exclude_user="alice"))
        assert sent.delivered == 0
        assert len(alice.got) == 2
    finally:
        await node.stop()


def _reference_iso(unix: float) -> str:
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def test_iso_timestamps_equal_datetimes_formatting() -> None:
    """Timestamps are formatted a second at a time (the text up to the second is kept):
    every stamp must still equal datetime's own formatting, across seconds (a stale
    second would show), minutes, days and the rounding edges of milliseconds, back and
    forth; and the node's stamps are those of its clock."""
    now = [0.0]
    node = Node(make_settings(), clock=lambda: now[0])
    base = 1_764_892_799.0  # 2025-12-04T23:59:59Z: the next second is a new day
    fractions = (0.0, 0.0004, 0.0005, 0.001, 0.4995, 0.5, 0.9994999, 0.9995, 0.99949999)
    fractions += (0.9999994, 0.9999995, 0.9999996, 0.123456789, 0.999)
    stamps = [base + k + f for k in (0, 1, 0, 61, 3600 * 24 * 400, 1) for f in fractions]
    stamps += [base + i * 0.000_7 for i in range(5000)]  # back and forth over seconds
    stamps += [1e9 + 0.5, 0.25, 59.9999999, 0.0, 1e11 - 0.0001, 1e11 + 0.5]
    stamps += [-0.25, -1.9999995, -86_400.5]  # before 1970: datetime's own answer
    rng = random.Random(14)
    stamps += [rng.uniform(0, 4e9) for _ in range(20_000)]
    for stamp in stamps:
        now[0] = stamp
        assert iso_timestamp(stamp) == _reference_iso(stamp), stamp
        assert node.now_iso() == _reference_iso(stamp), stamp
    for bad in (math.nan, math.inf):
        with pytest.raises((ValueError, OverflowError)):
            iso_timestamp(bad)


async def test_publish_refuses_every_invalid_channel_name_however_many_were_valid() -> None:
    """The node remembers the channels it published to: a name it never checked is
    still checked, an invalid one is refused each time, and past the bound on what
    it remembers the answers stay the same. Each publication keeps its own channel's
    policy (a remembered one for another channel would give the wrong history)."""
    kept = NamespacePolicy(history_size=10, history_ttl=60.0)
    node = Node(make_settings(namespaces={"kept": kept}))
    await node.start()
    try:
        for name in ("news", "news:1", "user:alice"):
            assert _run_without_suspending(node.publish(name, "t", 1)).delivered == 0
        for bad in ("", "news ", "a" * 1000, "news\\n", "ns:ä"):
            for _ in range(2):
                with pytest.raises(PublishError):
                    _run_without_suspending(node.publish(bad, "t", 1))
        for i in range(KNOWN_CHANNELS_KEPT + 10):
            _run_without_suspending(node.publish(f"c:{i}", "t", i))
        assert len(node._known_channels) <= KNOWN_CHANNELS_KEPT
        with pytest.raises(PublishError):
            _run_without_suspending(node.publish("news ", "t", 1))
        assert _run_without_suspending(node.publish("news", "t", 1)).delivered == 0
        for _ in range(2):
            assert _run_without_suspending(node.publish("kept:1", "t", 1)).position is not None
            assert _run_without_suspending(node.publish("news:2", "t", 1)).position is None
    finally:
        await node.stop()
