"""Node: one publish path, and on a single instance no suspension on it."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.hub import Outbound
from tidings.node import Node

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
