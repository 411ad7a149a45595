"""The server HTTP API against a real server: sends, stats, health and every error status."""

from __future__ import annotations

import pytest

from ..conftest import Harness, ServerFactory, recv, recv_type, request, token


async def test_role_send(harness: Harness) -> None:
    """POST /api/roles/{role}/send reaches connections whose token holds the role (guide 002)."""
    async with (
        harness.client("l1", ("LIBRARIAN",)) as lib,
        harness.client("s1", ("STUDENT",)) as stu,
    ):
        status, body = await harness.api(
            "POST",
            "/api/roles/LIBRARIAN/send",
            {"type": "staff_alert", "data": {"message": "Peak usage period starting"}},
        )
        assert (status, body["delivered"]) == (200, 1)
        msg = await recv(lib)
        assert (msg["type"], msg["id"]) == ("staff_alert", body["id"])
        assert (await request(stu, {"type": "ping"}))["type"] == "pong"


async def test_broadcast_excluding_a_user(harness: Harness) -> None:
    """POST /api/broadcast reaches everyone but excludeUserId (guide 001)."""
    async with harness.client("a") as a, harness.client("b") as b:
        _, everyone = await harness.api(
            "POST", "/api/broadcast", {"type": "system_announcement", "data": {"m": 1}}
        )
        _, most = await harness.api(
            "POST",
            "/api/broadcast",
            {"type": "system_announcement", "data": {"m": 2}, "excludeUserId": "a"},
        )
        assert (everyone["delivered"], most["delivered"]) == (2, 1)
        assert [(await recv(b))["data"]["m"] for _ in range(2)] == [1, 2]
        assert (await recv(a))["data"]["m"] == 1
        assert (await request(a, {"type": "ping"}))["type"] == "pong"


async def test_user_send_to_offline_user_reaches_nobody(harness: Harness) -> None:
    """Sending to a user with no connection answers delivered: 0."""
    status, body = await harness.api("POST", "/api/users/nobody/send", {"data": {}})
    assert (status, body["delivered"]) == (200, 0)


async def test_stats(harness: Harness) -> None:
    """GET /api/stats has guide 001's fields plus message counters and uptime."""
    async with harness.client("a") as a, harness.client("a") as _, harness.client("b"):
        await request(a, {"type": "subscribe", "channel": "notifications"})
        await harness.api("POST", "/api/publish", {"channel": "notifications", "data": 1})
        await recv_type(a, "message")
        status, stats = await harness.api("GET", "/api/stats")
    assert status == 200
    assert stats["totalConnections"] == 3
    assert stats["totalUsers"] == 2
    assert stats["channelCounts"] == {"notifications": 1}
    assert stats["messagesIn"] >= 1
    assert stats["messagesOut"] >= 5
    assert stats["uptimeSeconds"] >= 0
    assert stats["timestamp"].endswith("Z")


async def test_health_shape(harness: Harness) -> None:
    """GET /health needs no key and answers in guide 004's shape."""
    async with harness.client("a"):
        status, body = await harness.api("GET", "/health", key=None)
    assert status == 200
    assert body["success"] is True
    ws = body["data"]["websocket"]
    assert (ws["totalConnections"], ws["uniqueUsers"], ws["isHealthy"]) == (1, 1, True)
    assert body["data"]["pubsub"]["isHealthy"] is True
    assert (await harness.api("GET", "/health/live", key=None))[0] == 200


async def test_openapi_lists_every_api_route(harness: Harness) -> None:
    """The OpenAPI document is served without a key and names every route the app has."""
    status, doc = await harness.api("GET", "/api/openapi.json", key=None)
    assert status == 200
    assert doc["openapi"].startswith("3.")
    app_routes = set()
    from tidings.api import API_APP_KEY

    app = harness.server.app
    for route in [*app.router.routes(), *app[API_APP_KEY].router.routes()]:
        path = route.resource.canonical if route.resource else ""
        if path.startswith(("/api", "/health", "/sse")):
            app_routes.add(
                path.replace("{user_id}", "{userId}")
                .replace("{notification_id}", "{notificationId}")
                .replace("{client_id}", "{clientId}")
            )
    assert app_routes == set(doc["paths"])


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"key": None}, 401, "UNAUTHORIZED"),
        ({"key": "wrong-key"}, 401, "UNAUTHORIZED"),
        ({"key": token("alice")}, 403, "FORBIDDEN"),
        ({"raw": b"{not json"}, 400, "BAD_REQUEST"),
        ({"body": {"type": "x"}}, 422, "VALIDATION_ERROR"),
        ({"body": {"channel": "bad name", "type": "x"}}, 422, "VALIDATION_ERROR"),
        ({"body": {"channel": "ok", "type": ""}}, 422, "VALIDATION_ERROR"),
        ({"body": {"channel": "ok", "type": "x" * 65}}, 422, "VALIDATION_ERROR"),
        ({"body": {"channel": "ok", "surprise": 1}}, 422, "VALIDATION_ERROR"),
        ({"body": {"channel": 7}}, 422, "VALIDATION_ERROR"),
    ],
    ids=[
        "no-key",
        "wrong-key",
        "user-token",
        "malformed",
        "no-channel",
        "bad-channel",
        "empty-type",
        "long-type",
        "unknown-field",
        "channel-not-string",
    ],
)
async def test_publish_errors(harness: Harness, kwargs: dict, status: int, code: str) -> None:
    """Bad publish requests get the right status and a JSON error naming the problem."""
    kwargs.setdefault("body", {"channel": "ok"})
    got, body = await harness.api("POST", "/api/publish", **kwargs)
    assert got == status
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_not_found_and_method(harness: Harness) -> None:
    """Unknown routes get 404 and wrong methods 405, both as JSON."""
    status, body = await harness.api("GET", "/api/nope")
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
    status, body = await harness.api("GET", "/api/publish")
    assert (status, body["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")


async def test_unknown_paths_are_404_without_credentials(harness: Harness) -> None:
    """An unknown path under /api, WebSocket upgrade or not, is 404 (not 401) with no key."""
    for path in ("/api/community/ws", "/api/nope", "/api/me/nope"):
        status, body = await harness.api("GET", path, key=None)
        assert (status, body["error"]["code"]) == (404, "NOT_FOUND"), path
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    status, _ = await harness.api("GET", "/api/community/ws", key=None, headers=upgrade)
    assert status == 404
    # A known route still wants its credentials.
    status, body = await harness.api("POST", "/api/publish", {"channel": "c"}, key=None)
    assert (status, body["error"]["code"]) == (401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/users/alice/send", {"type": "booking_update", "data": {"bookingId": 7}}),
        ("/api/roles/LIBRARIAN/send", {"type": "peak_hours", "data": {"m": "Busy"}}),
        ("/api/broadcast", {"type": "maintenance", "data": {}, "excludeUserId": "bob"}),
    ],
    ids=["user", "role", "broadcast"],
)
async def test_send_routes_take_type_and_data(harness: Harness, path: str, body: dict) -> None:
    """The README's send bodies work; a first guess with `title` is told what the route takes."""
    status, reply = await harness.api("POST", path, body)
    assert status == 200, reply
    assert reply["id"].startswith("msg_")
    status, reply = await harness.api("POST", path, {"title": "Your book is ready"})
    assert status == 422
    assert "unknown field `title`" in reply["error"]["message"]
    assert "this route takes: type, data" in reply["error"]["message"]


async def test_body_too_large(make_server: ServerFactory) -> None:
    """A body over max_api_body_bytes gets 413."""
    h = await make_server(max_api_body_bytes=1024)
    status, body = await h.api("POST", "/api/publish", {"channel": "c", "data": "x" * 2000})
    assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")


async def test_api_rate_limit(make_server: ServerFactory) -> None:
    """With api_rate_limit_per_second set, a burst past it gets 429 with Retry-After."""
    h = await make_server(api_rate_limit_per_second=2)
    statuses = [(await h.api("GET", "/api/stats"))[0] for _ in range(8)]
    assert statuses[:4] == [200] * 4
    assert 429 in statuses
    status, body = await h.api("GET", "/api/stats")
    assert (status, body["error"]["code"]) == (429, "RATE_LIMIT")


def test_openapi_document_is_valid() -> None:
    """The OpenAPI document passes an OpenAPI 3.1 validator."""
    from openapi_spec_validator import validate

    from tidings.api.openapi import openapi_document

    validate(openapi_document())
