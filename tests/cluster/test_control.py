"""Connection control: list a user's connections, disconnect them, unsubscribe them."""

from __future__ import annotations

from ..conftest import Harness, ServerFactory, closed_with, recv, recv_type, request, token


async def test_list_disconnect_and_unsubscribe(harness: Harness) -> None:
    """An operator sees a user's tabs, removes a subscription, then closes one and all."""
    async with (
        harness.client("uma") as t1,
        harness.client("uma") as t2,
        harness.client("vic") as other,
    ):
        await request(t1, {"type": "subscribe", "channel": "news"})
        await request(t2, {"type": "subscribe", "channel": "news"})
        status, body = await harness.api("GET", "/api/users/uma/connections")
        assert status == 200
        assert len(body["connections"]) == 2
        conn = body["connections"][0]
        assert conn["remoteAddress"] == "127.0.0.1"
        assert conn["subscriptions"] == [{"channel": "news", "filters": None}]

        status, body = await harness.api("POST", "/api/users/uma/unsubscribe", {"channel": "news"})
        assert (status, body) == (200, {"unsubscribed": 2})
        for ws in (t1, t2):
            msg = await recv_type(ws, "unsubscribed")
            assert msg["data"] == {"channel": "news", "byServer": True}
        _, pub = await harness.api("POST", "/api/publish", {"channel": "news", "data": 1})
        assert pub["delivered"] == 0

        one = (await request(t1, {"type": "get_status"}))["data"]["clientId"]
        status, body = await harness.api(
            "POST", "/api/users/uma/disconnect", {"clientId": one, "code": 4010, "reason": "bye"}
        )
        assert (status, body) == (200, {"disconnected": 1})
        assert await closed_with(t1) == (4010, "bye")
        status, body = await harness.api("POST", "/api/users/uma/disconnect", {})
        assert body == {"disconnected": 1}
        assert await closed_with(t2) == (4010, "disconnected by the server")
        assert (await request(other, {"type": "ping"}))["type"] == "pong"
    status, body = await harness.api("POST", "/api/users/uma/disconnect", {"code": 1006})
    assert status == 422


async def test_control_needs_an_api_key(harness: Harness) -> None:
    """Connection control is a server API: no key, no access."""
    assert (await harness.api("GET", "/api/users/uma/connections", key=None))[0] == 401


async def test_forwarded_for_only_from_trusted_proxies(make_server: ServerFactory) -> None:
    """X-Forwarded-For names the client only when the peer is a configured proxy."""
    for trusted, expected in (([], "127.0.0.1"), (["127.0.0.0/8"], "203.0.113.7")):
        h = await make_server(trusted_proxies=trusted)
        headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
        async with h.connect(f"?token={token('xena')}", additional_headers=headers) as ws:
            await recv(ws)
            _, body = await h.api("GET", "/api/users/xena/connections")
            assert body["connections"][0]["remoteAddress"] == expected
