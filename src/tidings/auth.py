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
from typing import TYPE_CHECKING, Any

import jwt
from jwt.algorithms import HMACAlgorithm

if TYPE_CHECKING:
    from .jwks import JwksSource

log = logging.getLogger("tidings.auth")

# RFC 7518 asks for HMAC keys at least as long as the hash output.
MIN_HMAC_SECRET_BYTES = 32

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


_HMAC_HASHES = {
    "HS256": HMACAlgorithm.SHA256,
    "HS384": HMACAlgorithm.SHA384,
    "HS512": HMACAlgorithm.SHA512,
}


class _OncePreparedHMAC(HMACAlgorithm):
    """PyJWT's HMAC algorithm, checking a secret once rather than on every token.

    ``prepare_key`` refuses secrets that look like PEM, SSH, DER or JWK keys (the
    key-confusion defence); it tries to parse the secret each time, which was about a
    fifth of a token's verification in a connect storm. Its answer depends only on the
    key, so the last key's answer is kept; any other key is checked afresh."""

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._last: tuple[str | bytes, bytes] | None = None

    def prepare_key(self, key: str | bytes) -> bytes:
        last = self._last
        # ``==`` never equates a str with bytes, so a key is only matched by its own type.
        if last is not None and (last[0] is key or last[0] == key):
            return last[1]
        prepared = super().prepare_key(key)
        self._last = (key, prepared)
        return prepared


class AuthError(Exception):
    """A token that does not authenticate anyone.

    Attributes:
        expired: the token was valid but has expired.
        unavailable: the token could not be checked at all: the identity provider's keys
            have never been fetched. Not the client's fault: refuse as a temporary failure
            (HTTP 503, WebSocket 4000), never as a bad token.
    """

    def __init__(self, reason: str, *, expired: bool = False, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expired = expired
        self.unavailable = unavailable


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
        jwks_source: keys fetched from a JWKS URL (``jwks.JwksSource``); the drivers
            await :meth:`ready` before :meth:`verify` so an unknown kid is fetched first.
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
        jwks_source: JwksSource | None = None,
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
        if hmac and jwks_source is not None:
            raise ValueError("a JWKS URL needs public-key algorithms (RS*, PS*, ES*, EdDSA)")
        if not hmac and not (public_key or jwks or jwks_source):
            raise ValueError("public-key algorithms need a public key, a JWKS file or URL")
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
        self._source = jwks_source
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._clock = clock
        # Our own JWS decoder, holding only the configured algorithms, whose HMAC ones
        # check the secret once (see _OncePreparedHMAC). PyJWT's claims layer (jwt.PyJWT)
        # cannot be given a JWS decoder through its public API, so ``_claims`` checks
        # what it checks with these settings (a test holds the two to the same answers);
        # exp/nbf are checked in ``verify`` against the injected clock.
        self._jws = jwt.PyJWS(algorithms=algs)
        for alg in algs:
            if alg in _HMAC_HASHES:
                self._jws.unregister_algorithm(alg)
                self._jws.register_algorithm(alg, _OncePreparedHMAC(_HMAC_HASHES[alg]))

    @classmethod
    def load_jwks(cls, path: str | Path) -> dict[str, Any]:
        """Read a JWKS file."""
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError(f"{path}: not a JWKS document (no 'keys' list)")
        return data

    @property
    def remote_keys(self) -> bool:
        """Whether keys come from a JWKS URL (so drivers should await :meth:`ready`)."""
        return self._source is not None

    async def start(self) -> None:
        """Fetch the keys of a JWKS URL, and keep them fresh until :meth:`stop`."""
        if self._source is not None:
            await self._source.start()

    async def stop(self) -> None:
        if self._source is not None:
            await self._source.stop()

    async def ready(self, token: str | None) -> None:
        """Before :meth:`verify` in a coroutine: with a JWKS URL, fetch the keys now if the
        token names a kid not held (rate-limited; see ``jwks.JwksSource.ensure``). Never
        raises; a token that still has no key is refused by :meth:`verify`."""
        if self._source is None or not token or len(token) > 16384:
            return
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            return
        await self._source.ensure(kid if isinstance(kid, str) else None)

    async def ready_for_frame(self, frame: bytes | str) -> None:
        """:meth:`ready` for a client frame that may carry a token (``auth``, at the top
        level or under ``data``/``payload``). Only parsed when a JWKS URL is in use and the
        frame mentions a token, so other frames cost one substring search."""
        if self._source is None:
            return
        raw = frame.encode() if isinstance(frame, str) else frame
        if b'"token"' not in raw:
            return
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        for holder in (msg, msg.get("data"), msg.get("payload")):
            if isinstance(holder, dict) and isinstance(holder.get("token"), str):
                await self.ready(holder["token"])
                return

    def _key(self, token: str) -> Any:
        if self._hmac:
            return self._secret
        if self._source is not None:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._source.key(kid if isinstance(kid, str) else None)
            if key is not None:
                return key
            if not self._source.loaded:
                raise AuthError("the identity provider's keys are not available", unavailable=True)
            raise AuthError("no key in the JWKS matches the token's kid")
        if self._jwks is not None:
            kid = jwt.get_unverified_header(token).get("kid")
            for k in self._jwks.keys:
                if kid is None or k.key_id == kid:
                    return k.key
            raise AuthError("no key in the JWKS matches the token's kid")
        return self._public_key

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        decoded = self._jws.decode_complete(token, key, algorithms=self._algorithms)
        try:
            claims = json.loads(decoded["payload"])
        except (ValueError, RecursionError) as exc:
            raise jwt.DecodeError(f"Invalid payload string: {exc}") from exc
        if not isinstance(claims, dict):
            raise jwt.DecodeError("Invalid payload string: must be a json object")
        self._claims(claims)
        return claims

    def _claims(self, claims: dict[str, Any]) -> None:
        """The registered claims PyJWT's ``decode`` checks (with ``verify_aud`` only when
        an audience is configured), with its errors: ``iss``, ``aud``, ``sub``, ``jti``."""
        if self._issuer is not None:
            if "iss" not in claims:
                raise jwt.MissingRequiredClaimError("iss")
            if not isinstance(claims["iss"], str):
                raise jwt.InvalidIssuerError("Payload Issuer (iss) must be a string")
            if claims["iss"] != self._issuer:
                raise jwt.InvalidIssuerError("Invalid issuer")
        if self._audience is not None:
            aud = claims.get("aud")
            if not aud:
                raise jwt.MissingRequiredClaimError("aud")
            if isinstance(aud, str):
                aud = [aud]
            if not isinstance(aud, list) or any(not isinstance(a, str) for a in aud):
                raise jwt.InvalidAudienceError("Invalid claim format in token")
            if self._audience not in aud:
                raise jwt.InvalidAudienceError("Audience doesn't match")
        if "sub" in claims and not isinstance(claims["sub"], str):
            raise jwt.exceptions.InvalidSubjectError("Subject must be a string")
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise jwt.exceptions.InvalidJTIError("JWT ID must be a string")

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
            if self._short_secret:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                    claims = self._decode(token, key)
            else:  # the warnings machinery costs a connect storm a few µs per token
                claims = self._decode(token, key)
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
