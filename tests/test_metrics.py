"""/metrics scraped with Prometheus's own parser while real traffic moves the counters."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from .conftest import API_KEY, Harness, ServerFactory, closed_with, recv, request


async def scrape(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with h.http.get(f"{h.url}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        assert r.status == 200
        text = await r.text()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counters_move_with_traffic(make_server: ServerFactory) -> None:
    """Connections, closes by code, auth failures, messages, publications and API calls."""
    h = await make_server(
        rate_limit_per_second=5,
        rate_limit_burst=5,
        rate_limit_close_after=3,
        max_message_bytes=1024,
        auth_timeout=0.2,
    )
    before = await scrape(h)
    async with h.client("alice") as ws:
        await request(ws, {"type": "subscribe", "channel": "news"})
        await ws.send("{broken")
        await recv(ws)
        await h.api("POST", "/api/publish", {"channel": "news", "data": {}})
        await recv(ws)
        during = await scrape(h)
        assert value(during, "tidings_connections") == 1
        assert value(during, "tidings_subscriptions", namespace="*") == 1
    async with h.connect("?token=garbage") as ws:  # refused: invalid
        assert (await closed_with(ws))[0] == 4002
    async with h.connect() as ws:  # never authenticates: timeout
        assert (await closed_with(ws))[0] == 4004
    async with h.client("big") as ws:  # 1009
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 2000}))
        assert (await closed_with(ws))[0] == 1009
    async with h.client("flood") as ws:  # 4029
        for _ in range(20):
            await ws.send('{"type":"ping"}')
        try:
            while True:
                await recv(ws)
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None
            assert exc.rcvd.code == 4029
    after = await scrape(h)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("tidings_connects_total") == 3
    assert moved("tidings_disconnects_total", code="1000") == 1
    assert moved("tidings_disconnects_total", code="1009") == 1
    assert moved("tidings_disconnects_total", code="4029") == 1
    assert moved("tidings_auth_failures_total", reason="invalid") == 1
    assert moved("tidings_auth_failures_total", reason="timeout") == 1
    assert moved("tidings_messages_in_total", type="subscribe") == 1
    assert moved("tidings_messages_in_total", type="invalid") == 1
    assert moved("tidings_rate_limited_total") >= 1
    assert moved("tidings_publish_seconds_count") == 1
    assert moved("tidings_messages_out_total") >= 3
    assert moved("tidings_messages_sent_total", kind="channel") == 1
    assert moved("tidings_messages_sent_total", kind="reply") >= 2  # welcome, subscribed, …
    assert (
        moved("tidings_api_requests_total", method="POST", route="/api/publish", status="200") == 1
    )
    assert value(after, "tidings_connections") == 0


async def test_inbox_backlog_gauge(harness: Harness) -> None:
    """The backlog gauge counts stored notifications nobody acknowledged or received."""
    for user in ("offline-1", "offline-2"):
        await harness.api("POST", "/api/notifications", {"userId": user, "title": "t"})
    samples = await scrape(harness)
    assert value(samples, "tidings_inbox_backlog", state="unacked") == 2
    assert value(samples, "tidings_inbox_backlog", state="undelivered") == 2


async def test_labels_stay_bounded(harness: Harness) -> None:
    """No user id, channel name or notification id ever becomes a label value."""
    async with harness.client("secret-user-7") as ws:
        await request(ws, {"type": "subscribe", "channel": "room:private-42"})
        await harness.api("POST", "/api/notifications", {"userId": "secret-user-7"})
        await harness.api("GET", "/api/users/secret-user-7/notifications")
        samples = await scrape(harness)
    labels = {v for (_, lbls) in samples for _, v in lbls}
    assert not any("secret-user-7" in v or "private-42" in v for v in labels)
    assert "/api/users/{user_id}/notifications" in labels


async def test_metrics_need_a_key_unless_open(make_server: ServerFactory) -> None:
    """By default /metrics wants an API key; metrics = open serves anyone; off removes it."""
    h = await make_server()
    assert (await h.api("GET", "/metrics", key=None))[0] == 401
    open_ = await make_server(metrics="open")
    async with open_.http.get(f"{open_.url}/metrics") as r:
        assert r.status == 200
        assert "tidings_connections" in await r.text()
    off = await make_server(metrics="off")
    async with off.http.get(f"{off.url}/metrics") as r:
        assert r.status == 404


async def test_every_close_cause_is_counted(make_server: ServerFactory) -> None:
    """Each way a connection ends moves its own series: disconnects by code for open ones,
    rejections by code for those refused before they opened."""
    from .conftest import token

    h = await make_server(
        allowed_origins=["https://app.example"],
        max_connections_per_user=1,
        outbox_max_bytes=64 * 1024,
        jwt_leeway=0,
    )
    origin = {"additional_headers": {"Origin": "https://app.example"}}
    before = await scrape(h)
    async with h.connect(**origin) as ws:  # 4001: a message before auth
        await ws.send('{"type": "subscribe", "channel": "x"}')
        assert (await closed_with(ws))[0] == 4001
    async with h.connect(f"?token={token('ann')}&userId=bob", **origin) as ws:  # 4003
        assert (await closed_with(ws))[0] == 4003
    with pytest.raises(websockets.InvalidStatus):  # 403 before the upgrade
        async with h.connect(f"?token={token('ann')}", additional_headers={"Origin": "https://x"}):
            pass
    async with (
        h.client("ann", **origin),
        h.connect(f"?token={token('ann')}", **origin) as second,  # 4009
    ):
        assert (await closed_with(second))[0] == 4009
    async with h.connect(f"?token={token('short', ttl=1)}", **origin) as ws:  # 4005
        assert (await closed_with(ws))[0] == 4005
    async with h.client("cut", **origin) as ws:  # 4010: the operator's disconnect
        await h.api("POST", "/api/users/cut/disconnect", {"code": 4010, "reason": "ban"})
        assert (await closed_with(ws))[0] == 4010
    async with h.client("slow", max_queue=1, **origin) as ws:  # 4008: stopped reading
        await request(ws, {"type": "subscribe", "channel": "feed"})
        hub = h.server.node.hub
        for _ in range(500):
            if not hub.channel_counts():
                break
            await h.api("POST", "/api/publish", {"channel": "feed", "data": "x" * 16384})
        assert not hub.channel_counts(), "the slow consumer was never closed"
        assert (await closed_with(ws))[0] == 4008
    after = await scrape(h)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for code in ("4005", "4008", "4010"):
        assert moved("tidings_disconnects_total", code=code) == 1, code
    for code in ("4001", "4003", "4009"):
        assert moved("tidings_rejections_total", code=code) == 1, code
    assert moved("tidings_admission_refusals_total", reason="origin") == 1
    assert moved("tidings_slow_consumer_closes_total") == 1
    assert moved("tidings_auth_failures_total", reason="missing") == 1
    assert moved("tidings_auth_failures_total", reason="user_mismatch") == 1
