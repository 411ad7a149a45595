"""JWT verification: which keys, which algorithms, which claims.

The algorithm list is pinned by configuration and never read from the token, so
``alg: none`` and HS256-signed-with-the-public-key forgeries are rejected. The user id
comes from ``sub`` or ``userId``; roles from ``roles`` (a list) or ``role`` (a string).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

log = logging.getLogger("tidings.auth")

# RFC 7518 asks for HMAC keys at least as long as the hash output.
MIN_HMAC_SECRET_BYTES = 32

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class AuthError(Exception):
    """A token that does not authenticate anyone."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expired = expired


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token says the client is."""

    user_id: str
    roles: tuple[str, ...]
    expires_at: float | None
    claims: dict[str, Any]


def _claim_user(claims: dict[str, Any]) -> str:
    for name in ("sub", "userId"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    raise AuthError("token has no user id (sub or userId)")


def _claim_roles(claims: dict[str, Any]) -> tuple[str, ...]:
    roles = claims.get("roles")
    if isinstance(roles, list):
        return tuple(str(r) for r in roles if isinstance(r, str | int))
    role = claims.get("role")
    if isinstance(role, str) and role:
        return (role,)
    return ()


class Verifier:
    """Verifies tokens against the configured key material.

    Args:
        algorithms: accepted ``alg`` values; HMAC and asymmetric ones must not be mixed
            (that mix is what makes key-confusion attacks possible).
        secret: the HMAC secret, for HS* algorithms.
        public_key: a PEM public key, for asymmetric algorithms.
        jwks: a JWKS document (dict); the token's ``kid`` picks the key.
        issuer, audience: checked when set.
        leeway: seconds of clock skew tolerated on ``exp``/``nbf``.
        clock: returns the current Unix time.
    """

    def __init__(
        self,
        *,
        algorithms: Sequence[str],
        secret: str | None = None,
        public_key: str | None = None,
        jwks: dict[str, Any] | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 10.0,
        clock: Callable[[], float],
    ) -> None:
        algs = list(algorithms)
        if not algs:
            raise ValueError("at least one JWT algorithm must be configured")
        unknown = set(algs) - HMAC_ALGORITHMS - ASYMMETRIC_ALGORITHMS
        if unknown:
            raise ValueError(f"unsupported JWT algorithms: {sorted(unknown)}")
        hmac = set(algs) & HMAC_ALGORITHMS
        if hmac and len(hmac) != len(algs):
            raise ValueError("do not mix HMAC and public-key JWT algorithms")
        if hmac and not secret:
            raise ValueError("HS* algorithms need a JWT secret")
        if not hmac and not (public_key or jwks):
            raise ValueError("public-key algorithms need a public key or a JWKS file")
        self._algorithms = algs
        # PyJWT warns on every decode with a short key; say it once, at start, instead.
        self._short_secret = bool(hmac) and len((secret or "").encode()) < MIN_HMAC_SECRET_BYTES
        if self._short_secret:
            log.warning(
                "the JWT secret is shorter than %d bytes; use a longer random one",
                MIN_HMAC_SECRET_BYTES,
            )
        self._hmac = bool(hmac)
        self._secret = secret
        self._public_key = public_key
        self._jwks = jwt.PyJWKSet.from_dict(jwks) if jwks else None
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._clock = clock

    @classmethod
    def load_jwks(cls, path: str | Path) -> dict[str, Any]:
        """Read a JWKS file."""
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError(f"{path}: not a JWKS document (no 'keys' list)")
        return data

    def _key(self, token: str) -> Any:
        if self._hmac:
            return self._secret
        if self._jwks is not None:
            kid = jwt.get_unverified_header(token).get("kid")
            for k in self._jwks.keys:
                if kid is None or k.key_id == kid:
                    return k.key
            raise AuthError("no key in the JWKS matches the token's kid")
        return self._public_key

    def verify(self, token: str) -> Identity:
        """Verify a token and return who it names.

        Raises:
            AuthError: bad signature, wrong algorithm, expired, not yet valid, wrong
                issuer or audience, or no user id.
        """
        if not token or len(token) > 16384:
            raise AuthError("token missing or too long")
        try:
            key = self._key(token)
            now = self._clock()
            with warnings.catch_warnings():
                if self._short_secret:
                    warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=self._algorithms,
                    issuer=self._issuer,
                    audience=self._audience,
                    leeway=0,
                    options={
                        "verify_aud": self._audience is not None,
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                    },
                )
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        # exp/nbf are checked here against the injected clock rather than PyJWT's time.
        exp = claims.get("exp")
        if exp is not None:
            if not isinstance(exp, int | float) or isinstance(exp, bool):
                raise AuthError("invalid token: exp is not a number")
            if now > exp + self._leeway:
                raise AuthError("token expired", expired=True)
        nbf = claims.get("nbf")
        if nbf is not None:
            if not isinstance(nbf, int | float) or isinstance(nbf, bool):
                raise AuthError("invalid token: nbf is not a number")
            if now + self._leeway < nbf:
                raise AuthError("token not yet valid")
        return Identity(
            user_id=_claim_user(claims),
            roles=_claim_roles(claims),
            expires_at=float(exp) if exp is not None else None,
            claims=claims,
        )


def mint(
    secret: str,
    user_id: str,
    *,
    roles: Sequence[str] = (),
    ttl: float | None = 3600.0,
    now: float,
    algorithm: str = "HS256",
    extra: dict[str, Any] | None = None,
) -> str:
    """Sign a development token (``tidings token``) with an HMAC secret."""
    claims: dict[str, Any] = {"sub": user_id, "userId": user_id, "iat": int(now)}
    if roles:
        claims["roles"] = list(roles)
    if ttl is not None:
        claims["exp"] = int(now + ttl)
    if extra:
        claims.update(extra)
    return jwt.encode(claims, secret, algorithm=algorithm)
