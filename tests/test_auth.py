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


def test_hmac_secret_checked_once_not_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT's check that the secret is no PEM/SSH/DER/JWK key runs once per secret, not
    on every token (it parsed the secret each time); a different key is checked afresh."""
    from jwt.algorithms import HMACAlgorithm

    tokens = {user: hs({"sub": user}) for user in ("a", "b", "c")}
    forged = hs({"sub": "a"}, secret="another-secret-0123456789-abcdefghijklmn")
    checked: list[str | bytes] = []
    original = HMACAlgorithm.prepare_key

    def counting(self: HMACAlgorithm, key: str | bytes) -> bytes:
        checked.append(key)
        return original(self, key)

    monkeypatch.setattr(HMACAlgorithm, "prepare_key", counting)
    v = verifier()
    for user, token in tokens.items():
        assert v.verify(token).user_id == user
    assert checked == [SECRET]
    # A token signed with another secret still fails once the secret is cached.
    with pytest.raises(AuthError, match="Signature"):
        v.verify(forged)
    # The cached algorithm still refuses a key that looks like a public key.
    _, public = rsa_pair()
    with pytest.raises(jwt.InvalidKeyError):
        v._jws.get_algorithm_by_name("HS256").prepare_key(public)


def test_cached_secret_still_refuses_forgeries() -> None:
    """With the secret already prepared, every kind of bad token is still refused: another
    secret, another (unconfigured) HMAC alg, alg none, expired, wrong audience."""
    v = verifier(audience="tidings")
    assert v.verify(hs({"sub": "a", "aud": "tidings"})).user_id == "a"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT's own: SECRET is short for HS384
        hs384 = jwt.encode({"sub": "a", "aud": "tidings"}, SECRET, algorithm="HS384")
    bad = [
        hs({"sub": "a", "aud": "tidings"}, secret="another-secret-0123456789-abcdefghijklmn"),
        hs384,
        unsigned({"sub": "a", "aud": "tidings"}),
        hs({"sub": "a", "aud": "tidings", "exp": NOW - 60}),
        hs({"sub": "a", "aud": "other"}),
    ]
    for token in bad:
        with pytest.raises(AuthError):
            v.verify(token)
    assert v.verify(hs({"sub": "b", "aud": ["x", "tidings"]})).user_id == "b"


def by_hand(payload: bytes) -> str:
    """An HS256 token over any payload bytes (PyJWT refuses to sign some claims, such as
    a non-string iss)."""
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(payload).rstrip(b"=")
    sig = hmac.new(SECRET.encode(), header + b"." + body, hashlib.sha256).digest()
    return b".".join([header, body, base64.urlsafe_b64encode(sig).rstrip(b"=")]).decode()


_CLAIMS_CASES: list[dict[str, Any]] = [
    {"sub": "a"},
    {"sub": 7},
    {"sub": "a", "jti": 1},
    {"sub": "a", "jti": "j"},
    {"sub": "a", "aud": "tidings"},
    {"sub": "a", "aud": ["tidings", "x"]},
    {"sub": "a", "aud": ["x"]},
    {"sub": "a", "aud": []},
    {"sub": "a", "aud": ""},
    {"sub": "a", "aud": ["tidings", 3]},
    {"sub": "a", "aud": 3},
    {"sub": "a", "aud": {"tidings": 1}},
    {"sub": "a", "iss": "https://auth.example"},
    {"sub": "a", "iss": "https://evil.example"},
    {"sub": "a", "iss": 5},
    {"sub": "a", "iss": None},
    {"sub": "a", "iss": "https://auth.example", "aud": "tidings"},
]


@pytest.mark.parametrize("claims", _CLAIMS_CASES)
@pytest.mark.parametrize(
    "config",
    [{}, {"audience": "tidings"}, {"issuer": "https://auth.example"}],
    ids=["plain", "audience", "issuer"],
)
def test_claims_checked_as_pyjwt_checks_them(
    claims: dict[str, Any], config: dict[str, Any]
) -> None:
    """Our claim checks accept and refuse exactly the tokens PyJWT's own ``decode`` does with
    the same settings (aud checked only when an audience is configured)."""
    token = by_hand(json.dumps(claims).encode())
    try:
        jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            audience=config.get("audience"),
            issuer=config.get("issuer"),
            options={"verify_aud": "audience" in config},
        )
        pyjwt_ok = True
    except jwt.InvalidTokenError:
        pyjwt_ok = False
    try:
        verifier(**config).verify(token)
        ours_ok = True
    except AuthError as exc:
        ours_ok = "no user id" in exc.reason and pyjwt_ok  # our own, later rule
        assert ours_ok or not pyjwt_ok, exc.reason
    assert ours_ok == pyjwt_ok


def test_payload_must_be_an_object() -> None:
    """A signed payload that is JSON but not an object is refused as PyJWT refuses it."""
    with pytest.raises(AuthError, match="json object"):
        verifier().verify(by_hand(b'["sub"]'))
