"""The token verifier the settings describe: algorithms, secret or key files, a JWKS file
or URL, issuer, audience and leeway, each fault reported as the setting it comes from."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .auth import Verifier
from .config import ConfigError, Settings
from .jwks import JwksSource


def build_verifier(
    settings: Settings,
    clock: Callable[[], float],
    monotonic: Callable[[], float] = time.monotonic,
) -> Verifier:
    """The token verifier the settings describe (a JWKS URL is fetched at its start())."""
    public_key = None
    jwks = None
    source = None
    if settings.jwt_jwks_url:
        source = JwksSource(
            settings.jwt_jwks_url,
            refresh_every=settings.jwt_jwks_refresh_seconds,
            min_interval=settings.jwt_jwks_min_refresh_seconds,
            timeout=settings.jwt_jwks_timeout,
            monotonic=monotonic,
        )
    try:
        if settings.jwt_public_key_file:
            public_key = Path(settings.jwt_public_key_file).read_text()
    except OSError as exc:
        raise ConfigError(f"setting 'jwt_public_key_file': {exc.strerror}") from None
    try:
        if settings.jwt_jwks_file:
            jwks = Verifier.load_jwks(settings.jwt_jwks_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"setting 'jwt_jwks_file': {exc}") from None
    try:
        return Verifier(
            algorithms=settings.jwt_algorithms,
            secret=settings.jwt_secret,
            public_key=public_key,
            jwks=jwks,
            jwks_source=source,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway,
            clock=clock,
        )
    except ValueError as exc:
        setting = "jwt_jwks_url" if source is not None else "jwt_algorithms, jwt_secret, keys"
        raise ConfigError(f"JWT settings ({setting}): {exc}") from None
