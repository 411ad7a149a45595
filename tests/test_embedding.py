"""The Python API: code in the same process publishes and sends (guide 003's style)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tidings import PublishError

from .conftest import TIMEOUT, Harness, recv, request


async def test_send_publish_broadcast_from_python(harness: Harness) -> None:
    """node.send_to_user / send_to_role / publish / broadcast reach the right clients."""
    node = harness.server.node
    async with harness.client("alice", ("STAFF",)) as ws:
        await request(ws, {"type": "subscribe", "channel": "cases"})
        sent = await node.send_to_user(
            "alice", "notification", {"message": "Form submitted", "type": "success"}
        )
        assert sent.delivered == 1
        assert (await recv(ws))["data"]["message"] == "Form submitted"
        assert (await node.send_to_role("STAFF", "alert", {})).delivered == 1
        assert (await recv(ws))["type"] == "alert"
        assert (await node.publish("cases", "case_status", {"status": "in_review"})).delivered == 1
        assert (await recv(ws))["data"] == {"status": "in_review"}
        assert (await node.broadcast("system", {"x": 1}, exclude_user="alice")).delivered == 0


async def test_invalid_publication_raises() -> None:
    """Bad channel names and types raise PublishError."""
    from tidings.node import Node

    from .conftest import make_settings

    node = Node(make_settings())
    with pytest.raises(PublishError):
        await node.publish("bad name", "x", {})
    with pytest.raises(PublishError):
        await node.send_to_user("u", "", {})


async def test_two_servers_in_one_process(make_server) -> None:  # type: ignore[no-untyped-def]
    """Two servers share nothing: a message to one never reaches the other's clients."""
    a = await make_server()
    b = await make_server()
    async with a.client("alice") as on_a, b.client("alice") as on_b:
        assert (await a.server.node.send_to_user("alice", "only_a", {})).delivered == 1
        assert (await recv(on_a))["type"] == "only_a"
        assert (await request(on_b, {"type": "ping"}))["type"] == "pong"


async def test_blocking_publisher_from_a_plain_thread(harness: Harness) -> None:
    """A synchronous thread publishes into the running server and learns what was delivered."""
    import threading

    from tidings import BlockingPublisher

    publisher = BlockingPublisher(harness.server)
    results: dict[str, Any] = {}

    def worker() -> None:
        # A Flask view or a worker: no event loop in this thread.
        results["user"] = publisher.send_to_user("alice", "case_update", {"caseId": "12345"})
        results["channel"] = publisher.publish("cases", "case_status", {"s": "open"})
        results["role"] = publisher.send_to_role("STAFF", "alert", {})
        results["all"] = publisher.broadcast("system", {}, exclude_user="alice")
        results["stored"] = publisher.notify(
            userId="alice", title="Form submitted", priority="high"
        )
        try:
            publisher.publish("bad name", "x", {})
        except PublishError as exc:
            results["error"] = exc

    async with harness.client("alice", ("STAFF",)) as ws:
        await request(ws, {"type": "subscribe", "channel": "cases"})
        thread = threading.Thread(target=worker)
        thread.start()
        assert (await recv(ws))["data"] == {"caseId": "12345"}
        assert (await recv(ws))["type"] == "case_status"
        assert (await recv(ws))["type"] == "alert"
        note = await recv(ws)
        assert (note["type"], note["data"]["priority"]) == ("notification", "HIGH")
        await asyncio.to_thread(thread.join, TIMEOUT)
    assert [results[k].delivered for k in ("user", "channel", "role", "all")] == [1, 1, 1, 0]
    assert len(results["stored"].notifications) == 1
    assert isinstance(results["error"], PublishError)


async def test_blocking_publisher_refuses_the_servers_own_loop(harness: Harness) -> None:
    """Called on the server's loop it raises at once instead of deadlocking."""
    from tidings import BlockingPublisher

    publisher = BlockingPublisher(harness.server)
    with pytest.raises(RuntimeError, match="await instead"):
        publisher.send_to_user("alice", "x", {})
