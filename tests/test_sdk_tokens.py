"""The SDK's token minting and signature checking, against a real server: its connection
and subscription tokens are accepted, and the hook requests it receives verify."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from tidings.channels import NamespacePolicy
from tidings_sdk.signatures import sign, verify_signature
from tidings_sdk.tokens import connection_token, subscription_token

from .conftest import SECRET, ServerFactory, recv, request


def test_signature_round_trip_and_refusals() -> None:
    """A fresh, correctly signed body verifies; a changed body, a wrong secret, an old or
    missing timestamp do not."""
    body = b'{"event": "connect"}'
    headers = {"X-Tidings-Timestamp": "1000", "X-Tidings-Signature": sign("s", "1000", body)}
    assert verify_signature("s", headers, body, now=1100)
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_signature("s", lower, body, now=1100)
    assert not verify_signature("s", headers, body + b" ", now=1100)
    assert not verify_signature("other", headers, body, now=1100)
    assert not verify_signature("s", headers, body, now=1000 + 301)
    assert not verify_signature("s", {"X-Tidings-Signature": "x"}, body, now=1000)


async def test_minted_tokens_open_a_connection_and_a_private_channel(
    make_server: ServerFactory,
) -> None:
    """A connection token from the SDK is welcomed with its roles; a subscription token
    opens a channel whose namespace refuses clients, and only that channel."""
    h = await make_server(namespaces={"case": NamespacePolicy(subscribe=False)})
    conn = connection_token(SECRET, "ann", roles=["CLIENT"], ttl=600)
    async with h.connect(f"?token={conn}") as ws:
        welcome = await recv(ws)
        assert (welcome["data"]["userId"], welcome["data"]["roles"]) == ("ann", ["CLIENT"])
        plain = await request(ws, {"type": "subscribe", "channel": "case:12345"})
        assert plain["data"]["code"] == "FORBIDDEN"
        sub = subscription_token(SECRET, "ann", "case:12345")
        ok = await request(ws, {"type": "subscribe", "channel": "case:12345", "token": sub})
        assert ok["type"] == "subscribed"
        other = await request(ws, {"type": "subscribe", "channel": "case:777", "token": sub})
        assert other["data"]["code"] == "FORBIDDEN"


async def test_hook_requests_verify_with_the_sdk(make_server: ServerFactory) -> None:
    """A backend checking tidings' connect hook with verify_signature accepts it."""
    verdicts: list[bool] = []

    async def hook(request: web.Request) -> web.Response:
        verdicts.append(verify_signature("hook-secret", request.headers, await request.read()))
        return web.json_response({"allow": verdicts[-1]})

    app = web.Application()
    app.router.add_post("/connect", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/connect"
        h = await make_server(hook_connect_url=url, hook_secret="hook-secret")
        async with h.connect(f"?token={connection_token(SECRET, 'ann')}") as ws:
            assert (await recv(ws))["type"] == "welcome"
    finally:
        await runner.cleanup()
    assert verdicts == [True]


@pytest.mark.parametrize("minted", ["connection", "subscription"])
def test_tokens_carry_the_documented_claims(minted: str) -> None:
    """Claims: sub, iat, exp (ttl), roles or channel, and the extra ones."""
    import jwt

    if minted == "connection":
        raw = connection_token("k" * 32, "u", roles=["R"], ttl=60, now=1000, extra={"iss": "me"})
    else:
        raw = subscription_token("k" * 32, "u", "case:1", ttl=60, now=1000, kid="k1")
        assert jwt.get_unverified_header(raw)["kid"] == "k1"
    claims: dict[str, Any] = json.loads(
        json.dumps(jwt.decode(raw, options={"verify_signature": False}))
    )
    assert (claims["sub"], claims["iat"], claims["exp"]) == ("u", 1000, 1060)
    if minted == "connection":
        assert (claims["roles"], claims["iss"]) == (["R"], "me")
    else:
        assert claims["channel"] == "case:1"
