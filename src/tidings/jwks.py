"""Signing keys from an identity provider's JWKS URL (Auth0, Keycloak, Cognito, Clerk, ...).

The keys are fetched at start, again every ``refresh_every`` seconds, and at once when a
token names a ``kid`` the set does not hold: that is how a provider's key rotation reaches
tidings before the next scheduled fetch. Those on-demand fetches are rate-limited (one per
``min_interval``, counted from the last such fetch), so tokens with made-up kids cannot make
tidings hammer the provider, and concurrent requests share one fetch. A failed fetch
keeps the keys already held.

Fetching is asynchronous (aiohttp) and never happens inside :meth:`key`, which token
verification calls synchronously; the drivers await :meth:`ensure` before verifying.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Final

import aiohttp
import jwt

log = logging.getLogger("tidings.jwks")

# A JWKS is a few kilobytes; anything far larger is not one.
MAX_JWKS_BYTES: Final = 1 << 20


class JwksError(Exception):
    """A fetch that gave no usable key set."""


def parse_jwks(raw: bytes) -> jwt.PyJWKSet:
    """The signing keys of a JWKS document.

    Raises:
        JwksError: not JSON, not a key set, or no key tidings can verify with.
    """
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise JwksError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError("not a JWKS document (no 'keys' list)")
    # Encryption keys are not for checking signatures.
    signing = [k for k in doc["keys"] if isinstance(k, dict) and k.get("use", "sig") == "sig"]
    try:
        return jwt.PyJWKSet.from_dict({"keys": signing})
    except jwt.PyJWTError as exc:
        raise JwksError(f"no usable signing key: {exc}") from None


class JwksSource:
    """The current key set of one JWKS URL.

    Args:
        url: the provider's JWKS URL (``https://…/.well-known/jwks.json``).
        refresh_every: seconds between scheduled fetches.
        min_interval: at least this many seconds between fetches asked for by an unknown
            kid.
        timeout: seconds for one fetch, connection included.
        monotonic: monotonic seconds (injected for the rate limit).
    """

    def __init__(
        self,
        url: str,
        *,
        refresh_every: float,
        min_interval: float,
        timeout: float,
        monotonic: Callable[[], float],
    ) -> None:
        self.url = url
        self._refresh_every = refresh_every
        self._min_interval = min_interval
        self._timeout = timeout
        self._monotonic = monotonic
        self._keys: jwt.PyJWKSet | None = None
        self._last_demand: float | None = None
        self._fetching: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.fetches = 0  # attempts, for metrics and tests

    @property
    def loaded(self) -> bool:
        """Whether a key set has been fetched at least once."""
        return self._keys is not None

    def key(self, kid: str | None) -> Any | None:
        """The key for ``kid`` (any key for a token without one, if the set has exactly
        one), or ``None``."""
        keys = self._keys.keys if self._keys is not None else []
        if kid is None:
            return keys[0].key if len(keys) == 1 else None
        for k in keys:
            if k.key_id == kid:
                return k.key
        return None

    async def start(self) -> None:
        """Fetch once (a failure is logged, not raised), then refresh in the background."""
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={"Accept": "application/json"},
        )
        await self.refresh()
        self._loop_task = asyncio.create_task(self._refresh_loop(), name="jwks-refresh")

    async def stop(self) -> None:
        for task in (self._loop_task, self._fetching):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._http is not None:
            await self._http.close()

    async def ensure(self, kid: str | None) -> None:
        """Make sure the set is as fresh as allowed for a token naming ``kid``: fetch now
        if the kid is unknown and no fetch happened in the last ``min_interval`` s."""
        if self.key(kid) is not None:
            return
        if self._fetching is not None and not self._fetching.done():
            await asyncio.shield(self._fetching)
            return
        now = self._monotonic()
        # Only fetches asked for by tokens count: the scheduled ones are not theirs to spend.
        if self._last_demand is not None and now - self._last_demand < self._min_interval:
            return
        self._last_demand = now
        await self.refresh()

    async def refresh(self) -> None:
        """Fetch the set now; concurrent callers share one fetch."""
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.create_task(self._fetch(), name="jwks-fetch")
        await asyncio.shield(self._fetching)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_every)
            await self.refresh()

    async def _fetch(self) -> None:
        assert self._http is not None, "start() first"
        self.fetches += 1
        try:
            async with self._http.get(self.url) as response:
                if response.status != 200:
                    raise JwksError(f"HTTP {response.status}")
                raw = await response.content.read(MAX_JWKS_BYTES + 1)
                if len(raw) > MAX_JWKS_BYTES:
                    raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
            keys = parse_jwks(raw)
        except (aiohttp.ClientError, TimeoutError, JwksError) as exc:
            held = "keeping the keys held" if self._keys is not None else "no keys yet"
            log.warning("JWKS fetch from %s failed (%s): %s", self.url, held, exc or repr(exc))
            return
        before = {k.key_id for k in self._keys.keys} if self._keys is not None else set()
        after = {k.key_id for k in keys.keys}
        if before != after:
            log.info("JWKS from %s: keys %s", self.url, sorted(str(k) for k in after))
        self._keys = keys
