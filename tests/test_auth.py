"""Token verification: algorithms pinned, claims checked, forgeries refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from typing import Any

import jwt
import pytest

from tidings.auth import AuthError, Verifier

from .keys import ec_pair, jwks_for_ec, rsa_pair, unsigned

SECRET = "unit-secret-0123456789-abcdefghijklmnop"
NOW = 1_800_000_000.0


def hs(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def verifier(**kw: Any) -> Verifier:
    kw.setdefault("algorithms", ["HS256"])
    if kw["algorithms"] == ["HS256"]:
        kw.setdefault("secret", SECRET)
    return Verifier(clock=lambda: NOW, **kw)


def test_user_and_roles_from_either_claim() -> None:
    """sub or userId names the user; roles come from roles (list) or role (string)."""
    v = verifier()
    a = v.verify(hs({"sub": "alice", "roles": ["A", "B"], "exp": NOW + 60}))
    assert (a.user_id, a.roles, a.expires_at) == ("alice", ("A", "B"), NOW + 60)
    b = v.verify(hs({"userId": 42, "role": "LIBRARIAN"}))
    assert (b.user_id, b.roles, b.expires_at) == ("42", ("LIBRARIAN",), None)


@pytest.mark.parametrize(
    ("claims", "needle"),
    [
        ({"sub": "a", "exp": NOW - 11}, "expired"),
        ({"sub": "a", "nbf": NOW + 11}, "not yet valid"),
        ({"roles": ["x"]}, "no user id"),
        ({"sub": "a", "exp": "tomorrow"}, "exp"),
    ],
)
def test_time_and_identity_claims(claims: dict[str, Any], needle: str) -> None:
    """exp and nbf are enforced beyond the 10 s leeway; a token must name a user."""
    with pytest.raises(AuthError, match=needle):
        verifier().verify(hs(claims))


def test_leeway_tolerates_small_skew() -> None:
    """A token expired by less than the leeway still passes."""
    assert verifier().verify(hs({"sub": "a", "exp": NOW - 5})).user_id == "a"


def test_alg_none_refused() -> None:
    """An unsigned token is refused even though it names a user."""
    with pytest.raises(AuthError):
        verifier().verify(unsigned({"sub": "admin"}))


def test_wrong_secret_refused() -> None:
    """A token signed with another secret is refused."""
    with pytest.raises(AuthError, match="invalid"):
        verifier().verify(hs({"sub": "a"}, secret="x" * 40))


def test_audience_and_issuer() -> None:
    """When configured, aud and iss must match."""
    v = verifier(audience="tidings", issuer="https://auth.example")
    ok = hs({"sub": "a", "aud": "tidings", "iss": "https://auth.example"})
    assert v.verify(ok).user_id == "a"
    for claims in (
        {"sub": "a", "aud": "other", "iss": "https://auth.example"},
        {"sub": "a", "aud": "tidings", "iss": "https://evil.example"},
        {"sub": "a"},
    ):
        with pytest.raises(AuthError):
            v.verify(hs(claims))


def test_each_verifier_keeps_its_own_audience_rule() -> None:
    """Two verifiers in one process (two servers) each decode with their own options: one
    without an audience takes any aud, the other still refuses another one."""
    token = hs({"sub": "a", "aud": "other"})
    assert verifier().verify(token).user_id == "a"
    with pytest.raises(AuthError):
        verifier(audience="tidings").verify(token)
    assert verifier().verify(token).user_id == "a"


def test_short_secret_warns_once_at_start_not_per_token(caplog: pytest.LogCaptureFixture) -> None:
    """A secret shorter than 32 bytes is said once, when the verifier is built; its tokens
    still verify, without a warning each."""
    short = "too-short-secret"
    v = verifier(secret=short)
    assert "shorter than 32 bytes" in caplog.text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT's own, signing with the short secret here
        token = hs({"sub": "a"}, secret=short)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert v.verify(token).user_id == "a"
        assert verifier().verify(hs({"sub": "b"})).user_id == "b"


def test_rs256_with_public_key_and_key_confusion() -> None:
    """RS256 verifies with the PEM key; an HS256 token signed with that public key fails."""
    private, public = rsa_pair()
    v = Verifier(algorithms=["RS256"], public_key=public, clock=lambda: NOW)
    good = jwt.encode({"sub": "a"}, private, algorithm="RS256")
    assert v.verify(good).user_id == "a"
    # Forge by hand: PyJWT itself refuses to HMAC-sign with a PEM key.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps({"sub": "admin"}).encode()).rstrip(b"=")
    sig = hmac.new(public.encode(), header + b"." + body, hashlib.sha256).digest()
    forged = b".".join([header, body, base64.urlsafe_b64encode(sig).rstrip(b"=")]).decode()
    with pytest.raises(AuthError):
        v.verify(forged)
    with pytest.raises(AuthError):
        v.verify(unsigned({"sub": "admin"}))


def test_es256_from_jwks_by_kid() -> None:
    """ES256 tokens verify against the JWKS key their kid names."""
    private, _ = ec_pair()
    v = Verifier(algorithms=["ES256"], jwks=jwks_for_ec("k1"), clock=lambda: NOW)
    good = jwt.encode({"sub": "a"}, private, algorithm="ES256", headers={"kid": "k1"})
    assert v.verify(good).user_id == "a"
    other = jwt.encode({"sub": "a"}, private, algorithm="ES256", headers={"kid": "k2"})
    with pytest.raises(AuthError, match="kid"):
        v.verify(other)


@pytest.mark.parametrize(
    "kw",
    [
        {"algorithms": []},
        {"algorithms": ["HS256", "RS256"], "secret": SECRET, "public_key": "x"},
        {"algorithms": ["HS256"]},
        {"algorithms": ["RS256"]},
        {"algorithms": ["none"]},
    ],
)
def test_bad_configurations(kw: dict[str, Any]) -> None:
    """Mixed families, missing keys and unknown algorithms are configuration errors."""
    with pytest.raises(ValueError):
        Verifier(clock=time.time, **kw)
