"""Keys from a JWKS URL: a local identity provider that rotates its keys, goes down, and
answers slowly, against a real server (WebSocket, SSE and the HTTP API all verify)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
import websockets
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tidings.jwks import JwksError, parse_jwks
from tidings.server import Server

from .conftest import TIMEOUT, Harness, ServerFactory, closed_with, make_settings, recv, wait_for


class Key:
    """An ES256 signing key with a kid, as an identity provider holds it."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        algorithm = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256)
        jwk = json.loads(algorithm.to_jwk(algorithm.prepare_key(public)))
        jwk.update({"kid": self.kid, "alg": "ES256", "use": "sig"})
        return dict(jwk)

    def token(self, user: str = "alice", kid: str | None = None) -> str:
        claims = {"sub": user, "exp": int(time.time()) + 600}
        headers = {"kid": self.kid if kid is None else kid}
        return jwt.encode(claims, self.private, algorithm="ES256", headers=headers)


class Provider:
    """A JWKS endpoint on 127.0.0.1:0 whose key set the test changes."""

    def __init__(self, *keys: Key) -> None:
        self.keys = list(keys)
        self.requests = 0
        self.status = 200
        self.hold: asyncio.Event | None = None  # when set, answers wait for it
        self.waiting = asyncio.Event()  # a request is being held
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.hold is not None:
            self.waiting.set()
            await self.hold.wait()
        if self.status != 200:
            return web.Response(status=self.status, text="down")
        return web.json_response({"keys": [k.jwk() for k in self.keys]})


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for a Harness built by hand."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    """A running JWKS provider with one key, k1."""
    p = Provider(Key("k1"))
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", p.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    p.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    yield p
    if p.hold is not None:
        p.hold.set()
    await runner.cleanup()


def jwks_settings(p: Provider, **extra: Any) -> dict[str, Any]:
    return {
        "jwt_algorithms": ["ES256"],
        "jwt_secret": None,
        "jwt_jwks_url": p.url,
        **extra,
    }


async def welcomed(h: Harness, token: str) -> bool:
    """Whether a WebSocket with ``token`` is welcomed (False: closed 4002)."""
    async with h.connect(f"?token={token}") as ws:
        try:
            first = await recv(ws)
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None
            assert exc.rcvd.code == 4002, exc
            return False
        assert first["type"] == "welcome", first
        return True


# --- pure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>", "not JSON"),
        (b'{"no": "keys"}', "no 'keys' list"),
        (b'{"keys": [{"kty": "oct-nope"}]}', "no usable signing key"),
    ],
)
def test_parse_jwks_refusals(raw: bytes, message: str) -> None:
    """A document that is not a usable key set is a JwksError naming why."""
    with pytest.raises(JwksError, match=message):
        parse_jwks(raw)


def test_parse_jwks_skips_encryption_keys() -> None:
    """Keys marked use=enc are not used to check signatures."""
    sig, enc = Key("sig").jwk(), {**Key("enc").jwk(), "use": "enc"}
    keys = parse_jwks(json.dumps({"keys": [sig, enc]}).encode())
    assert [k.key_id for k in keys.keys] == ["sig"]


# --- against a real server ------------------------------------------------------------------------


async def test_tokens_verified_with_keys_from_the_url(
    make_server: ServerFactory, provider: Provider
) -> None:
    """The keys are fetched once at start; WebSocket, SSE and /api/me/ all accept a token
    signed by them, and refuse one signed by a key the provider does not list."""
    h = await make_server(**jwks_settings(provider))
    assert provider.requests == 1
    k1 = provider.keys[0]
    assert await welcomed(h, k1.token())
    status, _ = await h.api("GET", "/api/me/notifications", key=k1.token())
    assert status == 200
    async with h.http.get(f"{h.url}/sse", params={"token": k1.token()}) as r:
        assert r.status == 200
    assert not await welcomed(h, Key("k1").token())  # same kid, another key: bad signature
    assert provider.requests == 1


async def test_rotation_is_seen_at_the_first_token_with_the_new_kid(
    make_server: ServerFactory, provider: Provider
) -> None:
    """The provider rotates k1 out and k2 in: the first k2 token makes tidings fetch at once
    and is accepted; k1 tokens are refused from then on."""
    h = await make_server(**jwks_settings(provider))
    k1, k2 = provider.keys[0], Key("k2")
    assert await welcomed(h, k1.token())
    provider.keys = [k2]
    assert await welcomed(h, k2.token())
    assert provider.requests == 2
    assert not await welcomed(h, k1.token())
    status, body = await h.api("GET", "/api/me/notifications", key=k1.token())
    assert (status, body["error"]["code"]) == (401, "UNAUTHORIZED")


async def test_unknown_kids_fetch_at_most_once_per_interval(
    provider: Provider, http: aiohttp.ClientSession
) -> None:
    """Tokens naming made-up kids cause one fetch per jwt_jwks_min_refresh_seconds (the
    clock is injected), concurrent ones sharing it; after the interval, one more."""
    now = [1000.0]
    server = Server(
        make_settings(**jwks_settings(provider, jwt_jwks_min_refresh_seconds=30)),
        monotonic=lambda: now[0],
    )
    await server.start()
    try:
        h = Harness(server, http)
        k1 = provider.keys[0]
        forged = [k1.token(kid=f"made-up-{n}") for n in range(10)]
        results = await asyncio.gather(*(welcomed(h, t) for t in forged))
        assert results == [False] * 10
        assert provider.requests == 2  # the start, then one for all ten
        now[0] += 29
        assert not await welcomed(h, k1.token(kid="made-up-again"))
        assert provider.requests == 2
        now[0] += 2
        assert not await welcomed(h, k1.token(kid="made-up-later"))
        assert provider.requests == 3
        assert await welcomed(h, k1.token())
    finally:
        await server.stop()


async def test_keys_refresh_on_schedule(make_server: ServerFactory, provider: Provider) -> None:
    """Every jwt_jwks_refresh_seconds the set is fetched again, with no token asking."""
    await make_server(**jwks_settings(provider, jwt_jwks_refresh_seconds=0.05))
    await wait_for(lambda: provider.requests >= 3)


async def test_a_slow_provider_does_not_block_the_server(
    make_server: ServerFactory, provider: Provider
) -> None:
    """While a fetch for a new kid waits on the provider, other requests are served; the
    waiting connection is welcomed once the keys arrive."""
    h = await make_server(**jwks_settings(provider))
    k2 = Key("k2")
    provider.keys.append(k2)
    provider.hold = asyncio.Event()
    connecting = asyncio.create_task(welcomed(h, k2.token()))
    async with asyncio.timeout(TIMEOUT):
        await provider.waiting.wait()
    status, body = await h.api("GET", "/health", key=None)
    assert (status, body["status"]) == (200, "ok")
    assert not connecting.done()
    provider.hold.set()
    assert await connecting


async def test_provider_down_then_back(
    provider: Provider, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Down at start: tidings starts anyway (WARNING), answers 503 on /api/me/ and closes
    WebSockets 4000 (reconnect) rather than calling tokens invalid; back up, the next token
    after the interval is accepted."""
    provider.status = 500
    now = [1000.0]
    server = Server(
        make_settings(**jwks_settings(provider, jwt_jwks_min_refresh_seconds=10)),
        monotonic=lambda: now[0],
    )
    await server.start()
    try:
        assert any("JWKS fetch" in r.getMessage() for r in caplog.records)
        h = Harness(server, http)
        k1 = provider.keys[0]
        async with h.connect(f"?token={k1.token()}") as ws:
            assert (await closed_with(ws))[0] == 4000
        status, body = await h.api("GET", "/api/me/notifications", key=k1.token())
        assert (status, body["error"]["code"]) == (503, "UNAVAILABLE")
        async with h.http.get(f"{h.url}/sse", params={"token": k1.token()}) as r:
            assert (r.status, r.headers["Retry-After"]) == (503, "1")
        provider.status = 200
        now[0] += 11
        status, _ = await h.api("GET", "/api/me/notifications", key=k1.token())
        assert status == 200
    finally:
        await server.stop()


async def test_fetch_timeout(
    make_server: ServerFactory, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider that never answers is abandoned after jwt_jwks_timeout, with a warning;
    the token waiting on it is then refused, and the held keys still work."""
    h = await make_server(**jwks_settings(provider, jwt_jwks_timeout=0.2))
    provider.hold = asyncio.Event()
    assert not await welcomed(h, Key("k9").token())
    assert any(
        r.levelno == logging.WARNING and "JWKS fetch" in r.getMessage() for r in caplog.records
    )
    provider.hold.set()
    assert await welcomed(h, provider.keys[0].token())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"jwt_jwks_url": "ftp://idp/jwks"}, "jwt_jwks_url"),
        ({"jwt_jwks_url": "https://idp/jwks", "jwt_jwks_file": "/x.json"}, "jwt_jwks_url"),
        ({"jwt_jwks_url": "https://idp/jwks", "jwt_algorithms": ["HS256"]}, "jwt_jwks_url"),
    ],
)
def test_jwks_url_settings_are_checked(flags: dict[str, Any], message: str) -> None:
    """A JWKS URL must be http(s), alone, and with public-key algorithms."""
    from tidings.config import ConfigError
    from tidings.node import Node

    base: dict[str, Any] = {"jwt_algorithms": ["ES256"], "jwt_secret": None}
    with pytest.raises((ConfigError, ValueError), match=message):
        Node(make_settings(**{**base, **flags}))
