"""Socket.IO compatibility at /socket.io/, driven by python-socketio's AsyncClient."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import socketio  # type: ignore[import-untyped]
import websockets

from tidings.auth import mint
from tidings.channels import NamespacePolicy
from tidings.gateway.sioevents import command_of
from tidings.server import Server

from ..conftest import (
    SECRET,
    TIMEOUT,
    Harness,
    ServerFactory,
    flood_until_dropped,
    make_settings,
    request,
    token,
)

TRANSPORTS = [["polling", "websocket"], ["websocket"], ["polling"]]


class Recorder:
    """Collects a client's events by name; waits on one without sleeping."""

    def __init__(self, client: socketio.AsyncClient) -> None:
        self.events: dict[str, list[Any]] = {}
        self._changed = asyncio.Event()

        async def any_event(event: str, *args: Any) -> None:
            self.events.setdefault(event, []).append(args[0] if args else None)
            self._changed.set()

        client.on("*", any_event)

    async def next(self, event: str, count: int = 1) -> Any:
        async with asyncio.timeout(TIMEOUT):
            while len(self.events.get(event, [])) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events[event][count - 1]


@asynccontextmanager
async def sio_client(
    h: Harness,
    user: str = "alice",
    *,
    transports: list[str] | None = None,
    auth: Any = None,
    **kwargs: Any,
) -> AsyncIterator[tuple[socketio.AsyncClient, Recorder]]:
    """A python-socketio client connected as ``user`` with ``auth: {token}``."""
    client = socketio.AsyncClient(reconnection=False)
    rec = Recorder(client)
    await client.connect(
        h.url,
        auth={"token": token(user)} if auth is None else auth,
        transports=transports or ["polling", "websocket"],
        wait_timeout=TIMEOUT,
        **kwargs,
    )
    try:
        yield client, rec
    finally:
        await client.disconnect()


@pytest.mark.parametrize("transports", TRANSPORTS, ids="+".join)
async def test_notification_reaches_socketio_client(
    harness: Harness, transports: list[str]
) -> None:
    """A notification created over the HTTP API arrives as a `notification` event."""
    async with sio_client(harness, transports=transports) as (client, rec):
        welcome = await rec.next("welcome")
        assert welcome["userId"] == "alice"
        status, created = await harness.api(
            "POST",
            "/api/notifications",
            {"userId": "alice", "message": "Your form was submitted", "type": "success"},
        )
        assert status == 201, created
        note = await rec.next("notification")
        assert note["message"] == "Your form was submitted"
        assert note["type"] == "success"
        if transports == ["polling", "websocket"]:
            assert client.transport() == "websocket"  # upgraded


async def test_token_in_query(harness: Harness) -> None:
    """`?token=` on the URL authenticates as the handshake's auth does."""
    client = socketio.AsyncClient(reconnection=False)
    rec = Recorder(client)
    await client.connect(f"{harness.url}?token={token('bob')}", wait_timeout=TIMEOUT)
    try:
        assert (await rec.next("welcome"))["userId"] == "bob"
    finally:
        await client.disconnect()


@pytest.mark.parametrize(
    ("auth", "code"),
    [({"token": "not-a-jwt"}, 4002), ({}, 4001), (None, 4001)],
    ids=["bad", "empty", "none"],
)
async def test_bad_token_refused(harness: Harness, auth: Any, code: int) -> None:
    """A bad or missing token: connect fails, connect_error carries {code, reason}."""
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(harness.url, auth=auth, transports=["websocket"], wait_timeout=TIMEOUT)
    await client.disconnect()
    assert errors[0]["data"]["code"] == code, errors
    assert errors[0]["message"] == errors[0]["data"]["reason"]
    rejections = harness.server.node.metrics.rejections
    assert rejections[str(code)] == 1


async def test_inbox_commands_with_acks(harness: Harness) -> None:
    """Guide 003's register, get_notifications and mark_read answer their callbacks."""
    for n in range(3):
        await harness.api(
            "POST", "/api/notifications", {"userId": "alice", "message": f"n{n}", "type": "info"}
        )
    async with sio_client(harness) as (client, rec):
        await rec.next("welcome")
        assert await client.call("register", {"user_id": "alice"}, timeout=TIMEOUT) == {
            "userId": "alice"
        }
        page = await client.call("get_notifications", {"limit": 10}, timeout=TIMEOUT)
        assert [n["message"] for n in page["items"]] == ["n2", "n1", "n0"]
        assert page["unreadCount"] == 3
        first = page["items"][0]["id"]
        read = await client.call("mark_read", {"notification_id": first}, timeout=TIMEOUT)
        assert read["unreadCount"] == 2
        archived = await client.call("archive", page["items"][1]["id"], timeout=TIMEOUT)
        assert archived["unreadCount"] == 1
        everything = await client.call("mark_all_read", timeout=TIMEOUT)
        assert everything["unreadCount"] == 0
        unknown = await client.call("mark_everything", {}, timeout=TIMEOUT)
        assert unknown["error"]["code"] == "INVALID_MESSAGE"


async def test_catch_up_after_last_seq(harness: Harness) -> None:
    """`?lastSeq=` on the URL: the catch-up after welcome sends only what came after it."""
    for n in range(3):
        await harness.api("POST", "/api/notifications", {"userId": "alice", "message": f"n{n}"})
    client = socketio.AsyncClient(reconnection=False)
    rec = Recorder(client)
    await client.connect(f"{harness.url}?lastSeq=2", auth={"token": token()}, wait_timeout=TIMEOUT)
    try:
        assert (await rec.next("notification"))["message"] == "n2"
        page = await client.call("get_notifications", timeout=TIMEOUT)  # a round trip
        assert len(page["items"]) == 3
        assert [n["message"] for n in rec.events["notification"]] == ["n2"]
    finally:
        await client.disconnect()


async def test_reply_without_ack_is_an_event(harness: Harness) -> None:
    """A command sent without a callback gets its reply as an event of the reply's type."""
    async with sio_client(harness) as (client, rec):
        await rec.next("welcome")
        await client.emit("get_notifications", {"unreadOnly": True})
        page = await rec.next("notifications")
        assert page["items"] == []
        await client.emit("no_such_command", {})
        assert (await rec.next("error"))["code"] == "INVALID_MESSAGE"


async def test_subscribe_publish(make_server: ServerFactory) -> None:
    """subscribe/publish with acks; a publication arrives with its channel."""
    h = await make_server(
        namespaces={
            "lounge": NamespacePolicy(publish=True),
            "system": NamespacePolicy(subscribe=False),
        }
    )
    async with sio_client(h) as (client, rec), sio_client(h, "bob") as (other, rec2):
        await rec.next("welcome")
        await rec2.next("welcome")
        subscribed = await other.call("subscribe", "lounge:1", timeout=TIMEOUT)
        assert subscribed["channel"] == "lounge:1"
        published = await client.call(
            "publish",
            {"channel": "lounge:1", "event": "chat", "data": {"text": "hi"}},
            timeout=TIMEOUT,
        )
        assert published["messageId"].startswith("msg_"), published
        got = await rec2.next("chat")
        assert got["channel"] == "lounge:1"
        assert got["data"] == {"text": "hi"}
        await h.api("POST", "/api/publish", {"channel": "lounge:1", "data": 7})
        assert (await rec2.next("message"))["data"] == 7
        assert (await other.call("unsubscribe", "lounge:1", timeout=TIMEOUT))["channel"] == (
            "lounge:1"
        )
        denied = await client.call("subscribe", "system:x", timeout=TIMEOUT)
        assert denied["error"]["code"] == "FORBIDDEN"


async def test_room_commands(harness: Harness) -> None:
    """join_room, chat_message and room_history over Socket.IO; members get CHAT_MESSAGE."""
    status, body = await harness.api("POST", "/api/rooms", {"id": "r1", "wsPost": True})
    assert status == 201, body
    status, body = await harness.api("PUT", "/api/rooms/r1/members", {"userIds": ["alice", "bob"]})
    assert status == 200, body
    async with sio_client(harness) as (alice, _), sio_client(harness, "bob") as (bob, rec):
        assert (await bob.call("join_room", "room:r1", timeout=TIMEOUT))["channel"] == "room:r1"
        posted = await alice.call(
            "chat_message", {"room_id": "r1", "content": "hello"}, timeout=TIMEOUT
        )
        assert posted["seq"] == 1, posted
        event = await rec.next("CHAT_MESSAGE")
        assert event["channel"] == "room:r1"
        assert event["data"]["content"] == "hello"
        page = await bob.call("room_history", {"roomId": "r1"}, timeout=TIMEOUT)
        assert [m["content"] for m in page["messages"]] == ["hello"], page
        outsider = await alice.call("join_room", "room:elsewhere", timeout=TIMEOUT)
        assert outsider["error"]["code"] == "FORBIDDEN"


async def test_disconnect_from_api(harness: Harness) -> None:
    """The connection control API ends Socket.IO sessions with a `close` event first."""
    async with sio_client(harness) as (client, rec):
        gone = asyncio.Event()
        client.on("disconnect", lambda *_: gone.set())
        await rec.next("welcome")
        status, body = await harness.api("POST", "/api/users/alice/disconnect", {})
        assert status == 200, body
        assert body["disconnected"] == 1
        closing = await rec.next("close")
        assert closing["code"] == 4010
        async with asyncio.timeout(TIMEOUT):
            await gone.wait()


async def test_slow_consumer_closed_4008(make_server: ServerFactory) -> None:
    """A Socket.IO client that stops reading is closed 4008; a reader gets everything."""
    h = await make_server(outbox_max_bytes=256 * 1024)
    path = f"/socket.io/?EIO=4&transport=websocket&token={token('slow')}"
    async with (
        h.client("fast") as fast,
        websockets.connect(f"ws://127.0.0.1:{h.server.port}{path}", max_queue=1) as slow,
    ):
        assert str(await slow.recv()).startswith("0{")  # Engine.IO open
        await slow.send("40")
        assert str(await slow.recv()).startswith("40{")  # namespace connected
        await slow.send('420["subscribe","feed"]')
        async with asyncio.timeout(TIMEOUT):
            while not str(await slow.recv()).startswith("430"):
                pass  # the welcome, then the subscribe's ack
        await request(fast, {"type": "subscribe", "channel": "feed"})
        await flood_until_dropped(h, fast, "feed")
        frames: list[str] = []
        async with asyncio.timeout(TIMEOUT):
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:  # the backlog, the close event, Engine.IO's CLOSE, the end
                    frames.append(str(await slow.recv()))
        closes = [f for f in frames if f.startswith('42["close"')]
        assert [json.loads(f[2:]) for f in closes] == [
            ["close", {"code": 4008, "reason": "slow consumer"}]
        ]
        assert frames[-1] == "1"  # Engine.IO CLOSE: the client reconnects
    assert h.server.node.metrics.disconnects["4008"] == 1


async def test_token_expiry_closes_4005() -> None:
    """At the token's expiry the client gets close 4005, then the transport ends (a code
    to reconnect on: Socket.IO clients reconnect, with a fresh token from auth)."""
    minted = time.time()
    jwt = mint(SECRET, "alice", ttl=3600, now=minted)
    exp = int(minted + 3600)
    # The server's clock runs 1 s short of the token's expiry.
    server = Server(make_settings(jwt_leeway=0), clock=lambda: time.time() - minted + exp - 1)
    await server.start()
    try:
        h = Harness(server, None)  # type: ignore[arg-type] - no HTTP calls here
        async with sio_client(h, transports=["websocket"], auth={"token": jwt}) as (client, rec):
            gone = asyncio.Event()
            client.on("disconnect", lambda *_: gone.set())
            await rec.next("welcome")
            assert await rec.next("close") == {"code": 4005, "reason": "token expired"}
            async with asyncio.timeout(TIMEOUT):
                await gone.wait()
        assert server.node.metrics.disconnects["4005"] == 1
    finally:
        await server.stop()


async def test_origin_refused(make_server: ServerFactory) -> None:
    """A page on an origin not in allowed_origins gets 403 before any session."""
    h = await make_server(allowed_origins=["https://app.example"])
    async with h.http.get(
        f"{h.url}/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://evil.example"}
    ) as r:
        assert r.status == 403
        assert (await r.json())["error"]["code"] == "FORBIDDEN"
    async with sio_client(h, headers={"Origin": "https://app.example"}) as (_, rec):
        await rec.next("welcome")


async def test_failed_authentications_throttle_the_address(make_server: ServerFactory) -> None:
    """Bad tokens over Socket.IO spend the address's allowance: then its handshakes get 429."""
    h = await make_server(
        trusted_proxies=["127.0.0.1"],
        auth_failure_burst_per_address=2,
        auth_failure_rate_per_address=0.01,
    )
    headers = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(2):
        client = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(
                h.url, auth={"token": "bad"}, headers=headers, wait_timeout=TIMEOUT
            )
        await client.disconnect()
    async with h.http.get(f"{h.url}/socket.io/?EIO=4&transport=polling", headers=headers) as r:
        assert r.status == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert (await r.json())["error"]["code"] == "RATE_LIMIT"
    assert h.server.node.metrics.admission_refusals["auth_failures"] == 1


async def test_connection_caps(make_server: ServerFactory) -> None:
    """Socket.IO sessions count toward max_connections_per_user and max_connections."""
    h = await make_server(max_connections_per_user=1, max_connections=2)
    async with sio_client(h) as (_, rec):
        await rec.next("welcome")
        client = socketio.AsyncClient(reconnection=False)
        errors: list[Any] = []
        client.on("connect_error", errors.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(h.url, auth={"token": token()}, wait_timeout=TIMEOUT)
        await client.disconnect()
        assert errors[0]["data"]["code"] == 4009
        async with h.client("bob"):  # a native WebSocket: the second of two
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(h.url, auth={"token": token("carol")}, wait_timeout=TIMEOUT)
            await client.disconnect()
            assert errors[1]["data"] == {"code": 4009, "reason": "server connection limit reached"}


async def test_message_rate_limit(make_server: ServerFactory) -> None:
    """Past the message rate, commands are refused RATE_LIMITED, then the session ends 4029."""
    h = await make_server(rate_limit_per_second=0.01, rate_limit_burst=2, rate_limit_close_after=2)
    async with sio_client(h, transports=["websocket"]) as (client, rec):
        await rec.next("welcome")
        answers = [await client.call("ping", timeout=TIMEOUT) for _ in range(4)]
        assert answers[:2] == [{}, {}], answers
        assert answers[2]["error"]["code"] == "RATE_LIMIT", answers
        await client.emit("ping")  # refused once too often: the session ends
        closing = await rec.next("close")
        assert closing["code"] == 4029


async def test_shutdown_sends_close_1001(make_server: ServerFactory) -> None:
    """A server shutting down tells each Socket.IO client 1001 before dropping it."""
    h = await make_server()
    async with sio_client(h, transports=["websocket"]) as (_, rec):
        await rec.next("welcome")
        await h.server.stop()
        assert (await rec.next("close")) == {"code": 1001, "reason": "server shutting down"}


async def test_unknown_engineio_session(harness: Harness) -> None:
    """A poll for a session the server does not hold is a 400 with the API's error shape."""
    async with harness.http.get(f"{harness.url}/socket.io/?EIO=4&transport=polling&sid=nope") as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "INVALID_MESSAGE"


@pytest.mark.parametrize(
    ("event", "arg", "expected"),
    [
        ("mark_all_read", None, {"type": "mark_read", "all": True}),
        ("mark_read", "n1", {"type": "mark_read", "notificationId": "n1"}),
        ("mark_read", ["a", "b"], {"type": "mark_read", "notificationIds": ["a", "b"]}),
        ("subscribe", "news", {"type": "subscribe", "channel": "news"}),
        (
            "get_notifications",
            {"unread_only": True},
            {"type": "get_notifications", "unreadOnly": True},
        ),
        ("publish", {"channel": "c", "data": 1}, {"type": "publish", "channel": "c", "data": 1}),
        (
            "chat_message",
            {"room_id": "r", "type": "x", "id": 9},
            {"type": "chat_message", "roomId": "r"},
        ),
    ],
)
def test_event_to_command(event: str, arg: Any, expected: dict[str, Any]) -> None:
    """Guide 003's and snake_case names map onto the native commands; the envelope's
    type and id are the adapter's, whatever the client sent."""
    assert json.loads(command_of(event, arg, "r1")) == {**expected, "id": "r1"}
