"""Authentication over real WebSocket connections: every way in and every way refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
import websockets

from tidings.auth import mint

from ..conftest import SECRET, TIMEOUT, Harness, ServerFactory, closed_with, recv, request, token
from ..keys import ec_pair, jwks_for_ec, rsa_pair, unsigned


async def test_token_in_query(harness: Harness) -> None:
    """?token= authenticates; the welcome names the client, user and roles (guide 002)."""
    async with harness.connect(f"?token={token('alice', ('LIBRARIAN',))}") as ws:
        welcome = await recv(ws)
    assert welcome["type"] == "welcome"
    data = welcome["data"]
    assert data["userId"] == "alice"
    assert data["roles"] == ["LIBRARIAN"]
    assert data["role"] == "LIBRARIAN"
    assert data["clientId"].startswith("client_")
    assert "serverTime" in data
    assert "user:alice" in data["availableSubscriptions"]
    assert set(welcome) == {"id", "type", "timestamp", "data"}


async def test_token_in_authorization_header(harness: Harness) -> None:
    """Authorization: Bearer authenticates (guide 002)."""
    headers = {"Authorization": f"Bearer {token('bob')}"}
    async with harness.connect(additional_headers=headers) as ws:
        assert (await recv(ws))["data"]["userId"] == "bob"


async def test_token_in_subprotocol(harness: Harness) -> None:
    """Browsers pass the token as a 'bearer.<jwt>' subprotocol; 'tidings' is selected."""
    async with harness.connect(subprotocols=["tidings", f"bearer.{token('carol')}"]) as ws:
        assert ws.subprotocol == "tidings"
        assert (await recv(ws))["data"]["userId"] == "carol"


async def test_token_in_first_message(harness: Harness) -> None:
    """Guide 000 opens without a token and sends AUTH first; welcome answers it."""
    async with harness.connect("?userId=dave") as ws:
        await ws.send(
            json.dumps({"type": "AUTH", "userId": "dave", "token": token("dave"), "id": "a1"})
        )
        welcome = await recv(ws)
        assert welcome["type"] == "welcome"
        assert welcome["replyTo"] == "a1"
        assert welcome["data"]["userId"] == "dave"


async def test_guide_001_query_with_user_id(harness: Harness) -> None:
    """Guide 001's ?token=&userId= form works when they match."""
    async with harness.connect(f"?token={token('erin')}&userId=erin") as ws:
        assert (await recv(ws))["type"] == "welcome"


async def test_missing_credentials_4001(harness: Harness) -> None:
    """No token and a first message that is not auth: closed 4001."""
    async with harness.connect() as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "x"}))
        assert await closed_with(ws) == (4001, "missing authentication credentials")


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-jwt",
        unsigned({"sub": "admin", "exp": time.time() + 60}),
        mint("some-other-secret-0123456789-abcdef", "alice", now=time.time()),
        mint(SECRET, "alice", now=time.time() - 7200, ttl=3600),
        mint(SECRET, "alice", now=time.time(), extra={"nbf": int(time.time()) + 600}),
    ],
    ids=["garbage", "alg-none", "wrong-secret", "expired", "not-yet-valid"],
)
async def test_invalid_token_4002(harness: Harness, bad: str) -> None:
    """Bad, unsigned, foreign, expired and not-yet-valid tokens close 4002."""
    async with harness.connect(f"?token={bad}") as ws:
        code, _ = await closed_with(ws)
    assert code == 4002


@pytest.mark.parametrize("empty", ["", "   "], ids=["empty", "blank"])
async def test_empty_token_is_missing_credentials_4001(harness: Harness, empty: str) -> None:
    """An empty token, in an auth message or the handshake, is no credential: 4001."""
    async with harness.connect() as ws:
        await ws.send(json.dumps({"type": "auth", "token": empty}))
        assert await closed_with(ws) == (4001, "missing authentication credentials")
    async with harness.connect(f"?token={quote(empty)}") as ws:
        assert await closed_with(ws) == (4001, "missing authentication credentials")


async def test_refresh_with_empty_token_keeps_the_connection(harness: Harness) -> None:
    """On an open connection, an auth with an empty token is refused; the session goes on."""
    async with harness.client("alice") as ws:
        reply = await request(ws, {"type": "auth", "token": "", "id": "r1"})
        assert (reply["type"], reply["data"]["code"]) == ("error", "UNAUTHORIZED")
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_invalid_token_in_auth_message_4002(harness: Harness) -> None:
    """A bad token sent in the auth message closes 4002 too."""
    async with harness.connect() as ws:
        await ws.send(json.dumps({"type": "auth", "token": "x.y.z"}))
        assert (await closed_with(ws))[0] == 4002


async def test_user_mismatch_4003(harness: Harness) -> None:
    """userId that differs from the token's user closes 4003 (guide 001)."""
    async with harness.connect(f"?token={token('alice')}&userId=mallory") as ws:
        assert await closed_with(ws) == (4003, "user id mismatch")


async def test_auth_timeout_4004(make_server: ServerFactory) -> None:
    """A client that never authenticates is closed 4004 after auth_timeout."""
    h = await make_server(auth_timeout=0.2)
    async with h.connect() as ws:
        assert (await closed_with(ws))[0] == 4004


async def test_token_expiry_while_connected_4005(make_server: ServerFactory) -> None:
    """A token that expires while connected ends the connection with 4005."""
    h = await make_server(jwt_leeway=0)
    short = mint(SECRET, "alice", ttl=1, now=time.time())
    async with h.connect(f"?token={short}") as ws:
        assert (await recv(ws))["type"] == "welcome"
        assert await closed_with(ws, TIMEOUT + 2) == (4005, "token expired")


async def test_refresh_in_band_keeps_connection(make_server: ServerFactory) -> None:
    """Sending auth with a fresh token before expiry keeps the connection past it."""
    h = await make_server(jwt_leeway=0)
    short = mint(SECRET, "alice", ttl=1, now=time.time())
    async with h.connect(f"?token={short}") as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "auth", "token": token("alice"), "id": "r"}))
        assert (await recv(ws))["type"] == "refreshed"
        # Protocol ping round trips (not rate-limited) carry us past the first expiry.
        deadline = time.time() + 1.5
        while time.time() < deadline:
            await (await ws.ping())
        await ws.send('{"type":"ping"}')
        assert (await recv(ws))["type"] == "pong"


async def test_forbidden_origin_403(make_server: ServerFactory) -> None:
    """An Origin outside the allowlist gets 403 before any upgrade; an allowed one connects."""
    h = await make_server(allowed_origins=["https://app.example"])
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with h.connect(f"?token={token()}", origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with h.connect(f"?token={token()}", origin="https://app.example") as ws:
        assert (await recv(ws))["type"] == "welcome"


async def test_audience_required(make_server: ServerFactory) -> None:
    """With jwt_audience set, a token for another audience is refused."""
    h = await make_server(jwt_audience="tidings")
    wrong = mint(SECRET, "alice", now=time.time(), extra={"aud": "billing"})
    right = mint(SECRET, "alice", now=time.time(), extra={"aud": "tidings"})
    async with h.connect(f"?token={wrong}") as ws:
        assert (await closed_with(ws))[0] == 4002
    async with h.connect(f"?token={right}") as ws:
        assert (await recv(ws))["type"] == "welcome"


def _forge_hs256_with(public_pem: str, claims: dict[str, Any]) -> str:
    import base64
    import hashlib
    import hmac

    def b64(b: bytes) -> bytes:
        return base64.urlsafe_b64encode(b).rstrip(b"=")

    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
    sig = hmac.new(public_pem.encode(), signing, hashlib.sha256).digest()
    return (signing + b"." + b64(sig)).decode()


async def test_rs256_server_refuses_key_confusion(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """An RS256 server accepts RS256 tokens and refuses HS256 ones signed with its public key."""
    private, public = rsa_pair()
    key_file = tmp_path / "public.pem"
    key_file.write_text(public)
    h = await make_server(
        jwt_algorithms=["RS256"], jwt_secret=None, jwt_public_key_file=str(key_file)
    )
    good = jwt.encode({"sub": "alice", "exp": time.time() + 60}, private, algorithm="RS256")
    async with h.connect(f"?token={good}") as ws:
        assert (await recv(ws))["type"] == "welcome"
    forged = _forge_hs256_with(public, {"sub": "admin", "exp": time.time() + 60})
    async with h.connect(f"?token={forged}") as ws:
        assert (await closed_with(ws))[0] == 4002


async def test_es256_from_jwks_file(make_server: ServerFactory, tmp_path: Path) -> None:
    """An ES256 server verifies tokens with the JWKS key named by kid."""
    private, _ = ec_pair()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks_for_ec("k1")))
    h = await make_server(jwt_algorithms=["ES256"], jwt_secret=None, jwt_jwks_file=str(jwks_file))
    good = jwt.encode({"sub": "alice"}, private, algorithm="ES256", headers={"kid": "k1"})
    async with h.connect(f"?token={good}") as ws:
        assert (await recv(ws))["data"]["userId"] == "alice"


async def test_only_bearer_subprotocol_is_not_echoed(harness: Harness) -> None:
    """Offering only bearer.<jwt> authenticates, but the token is never sent back."""
    async with harness.connect(subprotocols=[f"bearer.{token('carol')}"]) as ws:
        assert ws.subprotocol is None
        assert (await recv(ws))["data"]["userId"] == "carol"


async def test_refresh_to_an_earlier_expiry_is_enforced(make_server: ServerFactory) -> None:
    """Refreshing with a token that expires sooner moves the expiry close earlier."""
    h = await make_server(jwt_leeway=0)
    async with h.connect(f"?token={token('alice', ttl=3600)}") as ws:
        await recv(ws)
        short = mint(SECRET, "alice", ttl=1, now=time.time())
        await ws.send(json.dumps({"type": "auth", "token": short}))
        assert (await recv(ws))["type"] == "refreshed"
        assert await closed_with(ws, TIMEOUT + 2) == (4005, "token expired")
