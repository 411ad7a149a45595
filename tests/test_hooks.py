"""Backend hooks and subscription tokens against a small real backend (an aiohttp app on
127.0.0.1:0): the backend allows, denies with a reason, attaches data and channels, is
slow, down or silent; its decisions are cached; the requests are signed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio  # type: ignore[import-untyped]
import websockets
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tidings.auth import mint
from tidings.channels import NamespacePolicy
from tidings.delivery.webhook import verifier_secret
from tidings.gateway.socketio import ENDPOINT_KEY
from tidings.hooks import Decision, DecisionCache, decide_on_failure

from .conftest import (
    SECRET,
    TIMEOUT,
    Harness,
    ServerFactory,
    closed_with,
    recv,
    recv_type,
    request,
    token,
    wait_for,
)

HOOK_SECRET = "hook-secret-0123456789"
NAMESPACES = {
    "chat": NamespacePolicy(publish=True),
    "open": NamespacePolicy(publish=True),
    "case": NamespacePolicy(subscribe=False),  # reachable only with a subscription token
}

Answer = Callable[[dict[str, Any]], Any]


class Backend:
    """The application's backend: answers each hook with ``answers[event](body)``, which
    returns a decision dict (or an int: that HTTP status, or an asyncio.Event to wait on
    first). Records every request."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.seen: list[dict[str, Any]] = []
        self.signatures_ok: list[bool] = []
        self.standard_ok: list[bool] = []
        self.url = ""

    def count(self, event: str) -> int:
        return sum(1 for e in self.seen if e["event"] == event)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers.get("X-Tidings-Timestamp", "")
        expected = hmac.new(
            HOOK_SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256
        ).hexdigest()
        presented = request.headers.get("X-Tidings-Signature", "")
        self.signatures_ok.append(hmac.compare_digest(presented, f"sha256={expected}"))
        try:  # the Standard Webhooks headers, with the scheme's reference verifier
            Webhook(verifier_secret(HOOK_SECRET)).verify(raw, dict(request.headers))
            self.standard_ok.append(True)
        except WebhookVerificationError:
            self.standard_ok.append(False)
        body = await request.json()
        self.seen.append(body)
        answer = self.answers.get(body["event"], lambda _: {"allow": True})(body)
        while isinstance(answer, asyncio.Event):
            await answer.wait()
            answer = self.answers[body["event"] + ":after"](body)
        if isinstance(answer, int):
            return web.Response(status=answer, text="backend error")
        return web.json_response(answer)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    """A running backend that allows everything until told otherwise."""
    b = Backend()
    app = web.Application()
    app.router.add_post("/hooks/{event}", b.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    b.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    yield b
    await runner.cleanup()


def hooked(b: Backend, *events: str, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {f"hook_{e}_url": f"{b.url}/{e}" for e in events}
    return {"hook_secret": HOOK_SECRET, "namespaces": NAMESPACES, **settings, **extra}


# --- pure -----------------------------------------------------------------------------------


def test_failure_policy() -> None:
    """An unanswered hook denies by default (fail closed), allows when configured so."""
    assert decide_on_failure("deny", "HTTP 500").allow is False
    assert "HTTP 500" in decide_on_failure("deny", "HTTP 500").why
    assert decide_on_failure("allow", "timeout").allow is True


def test_decision_cache_expires_by_the_injected_clock() -> None:
    """A cached decision lives its seconds, then is gone; 0 seconds is not cached."""
    now = [0.0]
    cache = DecisionCache(lambda: now[0])
    cache.put(("subscribe", "a", "news"), Decision(allow=False), 10)
    cache.put(("subscribe", "a", "other"), Decision(allow=True), 0)
    now[0] = 9.9
    assert cache.get(("subscribe", "a", "news")) == Decision(allow=False)
    assert cache.get(("subscribe", "a", "other")) is None
    now[0] = 10.0
    assert cache.get(("subscribe", "a", "news")) is None


# --- connect ----------------------------------------------------------------------------------


async def test_connect_allowed_with_info_and_channels(
    make_server: ServerFactory, backend: Backend
) -> None:
    """The backend allows, attaches info (in the welcome) and a channel the connection is
    subscribed to by the server; the request names the user, roles, transport and claims."""
    backend.answers["connect"] = lambda body: {
        "allow": True,
        "data": {"plan": "pro", "user": body["userId"]},
        "channels": ["chat:team-7"],
    }
    h = await make_server(**hooked(backend, "connect"))
    async with h.connect(f"?token={token('ann', ('LAWYER',), org='o1')}") as ws:
        welcome = await recv(ws)
        assert welcome["type"] == "welcome"
        assert welcome["data"]["info"] == {"plan": "pro", "user": "ann"}
        subscribed = await recv_type(ws, "subscribed")
        assert subscribed["data"] == {"channel": "chat:team-7", "filters": None, "byServer": True}
        await h.api("POST", "/api/publish", {"channel": "chat:team-7", "data": {"n": 1}})
        assert (await recv_type(ws, "message"))["data"] == {"n": 1}
    (event,) = backend.seen
    assert (event["userId"], event["roles"], event["transport"]) == ("ann", ["LAWYER"], "websocket")
    assert event["claims"]["org"] == "o1"
    assert backend.signatures_ok == [True]
    assert backend.standard_ok == [True]


async def test_connect_denied_with_a_reason(make_server: ServerFactory, backend: Backend) -> None:
    """A denial closes the connection 4007 with the backend's reason; nothing is welcomed."""
    backend.answers["connect"] = lambda body: {"allow": False, "reason": "account suspended"}
    h = await make_server(**hooked(backend, "connect"))
    async with h.connect(f"?token={token('ann')}") as ws:
        assert await closed_with(ws) == (4007, "account suspended")
    assert h.server.node.hub.user_connections("ann") == set()


@pytest.mark.parametrize(
    ("failure", "answer", "welcomed"),
    [("deny", 500, False), ("allow", 500, True), ("deny", {"allow": "yes"}, False)],
    ids=["down-deny", "down-allow", "malformed-deny"],
)
async def test_connect_failure_policy(
    make_server: ServerFactory, backend: Backend, failure: str, answer: Any, welcomed: bool
) -> None:
    """A backend that errs or answers nonsense is treated as hook_failure says."""
    backend.answers["connect"] = lambda _: answer
    h = await make_server(**hooked(backend, "connect", hook_failure=failure))
    async with h.connect(f"?token={token('ann')}") as ws:
        if welcomed:
            assert (await recv(ws))["type"] == "welcome"
        else:
            code, reason = await closed_with(ws)
            assert code == 4007
            assert reason.startswith("the application could not be asked")
    assert h.server.node.hooks.failures == 1


async def test_connect_hook_timeout(make_server: ServerFactory, backend: Backend) -> None:
    """A backend that never answers is given hook_timeout, then the failure policy applies,
    and the server keeps serving meanwhile."""
    never = asyncio.Event()
    backend.answers["connect"] = lambda _: never
    h = await make_server(**hooked(backend, "connect", hook_timeout=0.3))
    async with h.connect(f"?token={token('ann')}") as ws:
        assert (await h.api("GET", "/health", key=None))[0] == 200
        assert (await closed_with(ws))[0] == 4007
    backend.answers["connect:after"] = lambda _: {"allow": True}
    never.set()


async def test_refresh_asks_the_connect_hook_again(
    make_server: ServerFactory, backend: Backend
) -> None:
    """An in-band refresh is put to the connect hook with the new token's claims and
    ``refresh: true``; allowed, the reply is ``refreshed`` with the new expiry."""
    h = await make_server(**hooked(backend, "connect"))
    async with h.connect(f"?token={token('ann', ttl=60)}") as ws:
        assert (await recv(ws))["type"] == "welcome"
        fresh = token("ann", ttl=7200, session="s2")
        reply = await request(ws, {"type": "auth", "token": fresh, "id": "r1"})
        assert (reply["type"], reply["replyTo"]) == ("refreshed", "r1")
        assert reply["data"]["expiresAt"] is not None
    first, second = backend.seen
    assert "refresh" not in first
    assert (second["event"], second["refresh"], second["userId"]) == ("connect", True, "ann")
    assert second["claims"]["session"] == "s2"
    assert backend.signatures_ok == [True, True]


async def test_refresh_denied_closes_with_the_reason(
    make_server: ServerFactory, backend: Backend
) -> None:
    """The backend may refuse a refreshed token (a suspended account): the connection is
    closed 4007 with its reason, though the old token was still valid; while it decides,
    the connection is served on the old token."""
    decide = asyncio.Event()
    backend.answers["connect"] = lambda body: decide if body.get("refresh") else {"allow": True}
    backend.answers["connect:after"] = lambda _: {"allow": False, "reason": "account suspended"}
    h = await make_server(**hooked(backend, "connect"))
    async with h.connect(f"?token={token('ann')}") as ws:
        assert (await recv(ws))["type"] == "welcome"
        await ws.send(json.dumps({"type": "auth", "token": token("ann", ttl=7200), "id": "r1"}))
        await wait_for(lambda: backend.count("connect") == 2)
        assert (await request(ws, {"type": "ping", "id": "p1"}))["type"] == "pong"
        decide.set()
        assert await closed_with(ws) == (4007, "account suspended")
    await wait_for(lambda: h.server.node.hub.user_connections("ann") == set())


async def test_refresh_on_sse_asks_the_hook_too(
    make_server: ServerFactory, backend: Backend
) -> None:
    """An SSE session's refresh (POSTed ``auth``) is decided the same way: denied, the
    stream's last event is the 4007 close."""
    backend.answers["connect"] = lambda body: (
        {"allow": False, "reason": "session revoked"} if body.get("refresh") else {"allow": True}
    )
    h = await make_server(**hooked(backend, "connect"))
    headers = {"Authorization": f"Bearer {token('ann')}"}
    async with h.http.get(f"{h.url}/sse", headers=headers) as stream:
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT):
            async for line in stream.content:
                if not line.startswith(b"data:"):
                    continue
                msg = json.loads(line[5:])
                events.append(msg)
                if msg["type"] == "welcome":
                    client = msg["data"]["clientId"]
                    body = {"type": "auth", "token": token("ann", ttl=7200)}
                    async with h.http.post(
                        f"{h.url}/sse/{client}", json=body, headers=headers
                    ) as r:
                        assert r.status in (200, 202), await r.text()
                if msg["type"] == "close":
                    break
    assert events[-1]["data"]["code"] == 4007
    assert events[-1]["data"]["reason"] == "session revoked"
    assert backend.seen[-1]["transport"] == "sse"


async def test_connect_hook_on_sse(make_server: ServerFactory, backend: Backend) -> None:
    """The SSE fallback asks the same hook: a denied stream's first event is the close."""
    backend.answers["connect"] = lambda body: {"allow": False, "reason": "not today"}
    h = await make_server(**hooked(backend, "connect"))
    async with h.http.get(f"{h.url}/sse", params={"token": token("ann")}) as r:
        text = await r.text()
    assert '"code":4007' in text
    assert "not today" in text
    assert backend.seen[0]["transport"] == "sse"


async def test_connect_hook_on_socketio(make_server: ServerFactory, backend: Backend) -> None:
    """Socket.IO asks the same hook: a denial is connect_error with 4007 and the reason."""
    backend.answers["connect"] = lambda body: {"allow": False, "reason": "not today"}
    h = await make_server(**hooked(backend, "connect"))
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(h.url, auth={"token": token("ann")}, wait_timeout=TIMEOUT)
    await client.disconnect()
    assert errors[0]["data"] == {"code": 4007, "reason": "not today"}
    assert backend.seen[0]["transport"] == "socketio"


async def test_socketio_client_leaving_while_the_hook_decides(
    make_server: ServerFactory, backend: Backend
) -> None:
    """A Socket.IO client that leaves while its connect hook is pending is not kept: it
    ends as soon as the hook has answered (the Engine.IO socket's reader waits for the
    connect handler, so the departure is seen after it)."""
    never = asyncio.Event()
    backend.answers["connect"] = lambda _: never
    backend.answers["connect:after"] = lambda _: {"allow": True}
    h = await make_server(**hooked(backend, "connect", hook_timeout=TIMEOUT))
    path = f"/socket.io/?EIO=4&transport=websocket&token={token('ann')}"
    ws = await websockets.connect(f"ws://127.0.0.1:{h.server.port}{path}")
    assert str(await ws.recv()).startswith("0{")
    await ws.send("40")
    await wait_for(lambda: backend.count("connect") == 1)
    ws.transport.abort()  # gone, without a close handshake the server could not answer yet
    await ws.wait_closed()
    never.set()
    await wait_for(lambda: h.server.gateway.open_connections == 0)
    assert h.server.node.hub.user_connections("ann") == set()
    await wait_for(lambda: h.server.app[ENDPOINT_KEY].engine_sessions == 0)


# --- subscribe ----------------------------------------------------------------------------------


async def test_subscribe_denied_allowed_and_cached(
    make_server: ServerFactory, backend: Backend
) -> None:
    """The backend decides per channel; info rides on the reply; a decision with
    cacheSeconds is reused without asking again."""
    backend.answers["subscribe"] = lambda body: (
        {"allow": False, "reason": "not your team", "cacheSeconds": 60}
        if body["channel"] == "chat:other"
        else {"allow": True, "data": {"role": "editor"}, "cacheSeconds": 60}
    )
    h = await make_server(**hooked(backend, "subscribe"))
    async with h.client("ann") as ws:
        denied = await request(ws, {"type": "subscribe", "channel": "chat:other"})
        assert (denied["type"], denied["data"]["code"]) == ("error", "FORBIDDEN")
        assert denied["data"]["message"] == "not your team"
        ok = await request(ws, {"type": "subscribe", "channel": "chat:mine"})
        assert (ok["type"], ok["data"]["info"]) == ("subscribed", {"role": "editor"})
        await request(ws, {"type": "unsubscribe", "channel": "chat:mine"})
        again = await request(ws, {"type": "subscribe", "channel": "chat:mine"})
        assert again["type"] == "subscribed"
        assert (await request(ws, {"type": "subscribe", "channel": "chat:other"}))["type"] == (
            "error"
        )
    assert backend.count("subscribe") == 2


async def test_unsubscribe_while_the_hook_decides(
    make_server: ServerFactory, backend: Backend
) -> None:
    """A client that unsubscribes before the backend answers stays unsubscribed."""
    slow = asyncio.Event()
    backend.answers["subscribe"] = lambda _: slow
    backend.answers["subscribe:after"] = lambda _: {"allow": True}
    h = await make_server(**hooked(backend, "subscribe"))
    async with h.client("ann") as ws:
        await ws.send('{"type": "subscribe", "channel": "chat:x", "id": "s1"}')
        await request(ws, {"type": "unsubscribe", "channel": "chat:x"})
        slow.set()
        status = await request(ws, {"type": "get_status"})
        assert status["data"]["subscriptions"] == []
        assert h.server.node.hub.channel_counts() == {}


# --- publish ------------------------------------------------------------------------------------


async def test_publish_denied_replaced_and_in_order(
    make_server: ServerFactory, backend: Backend
) -> None:
    """The backend denies one publication, rewrites another's data; a slow decision does
    not let a later publication overtake it."""
    first = asyncio.Event()

    def decide(body: dict[str, Any]) -> Any:
        n = body["data"]["n"]
        if n == 1:
            return first
        if n == 2:
            return {"allow": False, "reason": "profanity"}
        return {"allow": True, "data": {"n": n, "checked": True}}

    backend.answers["publish"] = decide
    backend.answers["publish:after"] = lambda body: {"allow": True}
    h = await make_server(**hooked(backend, "publish"))
    async with h.client("bob") as reader, h.client("ann") as writer:
        await request(reader, {"type": "subscribe", "channel": "chat:room"})
        for n in (1, 2, 3):
            msg = {"type": "publish", "channel": "chat:room", "data": {"n": n}, "id": f"p{n}"}
            await writer.send(json.dumps(msg))
        await wait_for(lambda: backend.count("publish") >= 1)
        first.set()
        got = [(await recv_type(reader, "message"))["data"] for _ in range(2)]
        assert got == [{"n": 1}, {"n": 3, "checked": True}]
        replies = {}
        while len(replies) < 3:
            reply = await recv(writer)
            if reply.get("replyTo"):
                replies[reply["replyTo"]] = reply
        assert replies["p2"]["type"] == "error"
        assert replies["p2"]["data"]["message"] == "profanity"
        assert replies["p1"]["type"] == replies["p3"]["type"] == "published"


async def test_hooks_limited_to_namespaces(make_server: ServerFactory, backend: Backend) -> None:
    """With hook_*_namespaces, only those namespaces ask the backend; a publication to
    another namespace still waits behind one the backend is deciding."""
    slow = asyncio.Event()
    backend.answers["publish"] = lambda _: slow
    backend.answers["publish:after"] = lambda _: {"allow": True}
    h = await make_server(
        **hooked(
            backend,
            "subscribe",
            "publish",
            hook_subscribe_namespaces=["chat"],
            hook_publish_namespaces=["chat"],
        )
    )
    async with h.client("bob") as reader, h.client("ann") as writer:
        assert (await request(reader, {"type": "subscribe", "channel": "open:x"}))["type"] == (
            "subscribed"
        )
        assert backend.count("subscribe") == 0
        await request(reader, {"type": "subscribe", "channel": "chat:x"})
        assert backend.count("subscribe") == 1
        for n, channel in enumerate(["chat:x", "open:x"]):
            msg = {"type": "publish", "channel": channel, "data": {"n": n}, "id": f"p{n}"}
            await writer.send(json.dumps(msg))
        await wait_for(lambda: backend.count("publish") >= 1)
        slow.set()
        got = [(await recv_type(reader, "message"))["data"]["n"] for _ in range(2)]
        assert got == [0, 1]
    assert backend.count("publish") == 1  # open:x was never asked about


# --- subscription tokens --------------------------------------------------------------------------


def sub_token(user: str, channel: str | None, ttl: float = 600) -> str:
    extra = {"channel": channel} if channel is not None else None
    return mint(SECRET, user, ttl=ttl, now=time.time(), extra=extra)


@pytest.mark.parametrize(
    ("presented", "ok"),
    [
        (lambda: sub_token("ann", "case:12345"), True),
        (lambda: sub_token("ann", "case:99999"), False),
        (lambda: sub_token("bob", "case:12345"), False),
        (lambda: sub_token("ann", None), False),
        (lambda: sub_token("ann", "case:12345", ttl=-60), False),
        (lambda: None, False),
    ],
    ids=["valid", "other-channel", "other-user", "connection-token", "expired", "none"],
)
async def test_subscription_tokens(
    make_server: ServerFactory, backend: Backend, presented: Callable[[], str | None], ok: bool
) -> None:
    """A channel whose namespace refuses subscriptions opens to a token naming that channel
    and that user (and unexpired); the subscribe hook is not asked for it."""
    h = await make_server(**hooked(backend, "subscribe"))
    async with h.client("ann") as ws:
        cmd: dict[str, Any] = {"type": "subscribe", "channel": "case:12345"}
        value = presented()
        if value is not None:
            cmd["token"] = value
        reply = await request(ws, cmd)
        if ok:
            assert reply["type"] == "subscribed", reply
            await h.api("POST", "/api/publish", {"channel": "case:12345", "data": "update"})
            assert (await recv_type(ws, "message"))["data"] == "update"
        else:
            assert (reply["type"], reply["data"]["code"]) == ("error", "FORBIDDEN"), reply
    assert backend.count("subscribe") == 0


async def test_hooks_are_off_by_default(harness: Harness) -> None:
    """No hook URL: connections, subscriptions and publications never wait on a backend."""
    assert harness.server.node.hooks.calls == 0
    async with harness.client("ann") as ws:
        assert (await request(ws, {"type": "subscribe", "channel": "news"}))["type"] == (
            "subscribed"
        )
    assert harness.server.node.hooks.calls == 0
