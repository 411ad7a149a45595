"""Mint the tokens your backend hands its frontend: a connection token (who the user is)
and a subscription token (one private channel for one user).

Needs PyJWT: ``pip install 'tidings-sdk[tokens]'``. Sign with what tidings verifies with:
the ``jwt_secret`` for HS256 (the default), or your private key for RS256/ES256 when
tidings has the public key or your JWKS. With an identity provider (Auth0, Keycloak, ...)
its own tokens are the connection tokens; mint only subscription tokens, with a key whose
public half tidings trusts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any


def _encode(claims: dict[str, Any], key: Any, algorithm: str, kid: str | None) -> str:
    try:
        import jwt
    except ImportError:  # pragma: no cover - the extra is installed in the tests
        raise ImportError("minting tokens needs PyJWT: pip install 'tidings-sdk[tokens]'") from None
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def connection_token(
    key: Any,
    user_id: str,
    *,
    roles: Sequence[str] = (),
    ttl: float = 3600.0,
    algorithm: str = "HS256",
    kid: str | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A token a client connects with: ``sub`` the user, ``roles``, expiring in ``ttl`` s.

    ``extra`` claims are added (``iss``, ``aud`` when tidings checks them).
    """
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": user_id, "iat": issued, "exp": int(issued + ttl)}
    if roles:
        claims["roles"] = list(roles)
    claims.update(extra or {})
    return _encode(claims, key, algorithm, kid)


def subscription_token(
    key: Any,
    user_id: str,
    channel: str,
    *,
    ttl: float = 3600.0,
    algorithm: str = "HS256",
    kid: str | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A token that lets ``user_id`` subscribe to ``channel`` (and nothing else), whatever
    the channel's namespace rules say; the client sends it as ``token`` in ``subscribe``."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": user_id,
        "channel": channel,
        "iat": issued,
        "exp": int(issued + ttl),
    }
    claims.update(extra or {})
    return _encode(claims, key, algorithm, kid)
