"""Admission control: which new connections a client address may open, before any upgrade.

One address must not be able to take the whole server. Three limits, each per client
address (the peer, or what a trusted proxy's X-Forwarded-For names):

* a rate of new connections (a token bucket), so reconnect storms and scanners slow down;
* a cap on connections still authenticating (opened without a handshake token, waiting
  for ``auth``), per address and for the whole instance. Those connections cost a socket
  and memory but prove nothing, so they get an allowance of their own, apart from
  ``max_connections``: a real user who brings a token never waits behind them;
* throttling of failed authentications: each failure spends a token; with none left, the
  address is refused until the bucket refills.

Loopback addresses are exempt from the per-address limits (the instance-wide cap still
counts them): a connection from the host itself is a local reverse proxy whose clients
are not named (``trusted_proxies`` unset), a health check, or a test, and limiting it
would limit every client behind that proxy as one.

Pure: no sockets, time from an injected monotonic clock. The transport asks ``admit`` at
the handshake and reports what happened to the connection afterwards.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .config import Settings
from .metrics import Metrics
from .ratelimit import TokenBucket

# Per-address state is dropped once it would be back to its initial state (full buckets,
# nothing pending): scanned at most this often, so the table cannot grow without bound.
SWEEP_INTERVAL: Final = 60.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer to a handshake refused before the upgrade."""

    status: int  # 429: this address is over a limit; 503: the instance is
    reason: str  # the metric label and the log's word for it
    message: str
    retry_after: int  # seconds, for the Retry-After header


class _Address:
    __slots__ = ("connects", "failures", "pending")

    def __init__(self, connects: TokenBucket | None, failures: TokenBucket | None) -> None:
        self.connects = connects
        self.failures = failures
        self.pending = 0


class Admission:
    """The admission limits of one instance.

    Args:
        settings: read for ``connection_rate_per_address``, ``connection_burst_per_address``,
            ``max_pending_connections``, ``max_pending_per_address``,
            ``auth_failure_rate_per_address`` and ``auth_failure_burst_per_address``.
        monotonic: seconds, for the buckets.
        metrics: where refusals (by reason) and the pending count are kept.
    """

    def __init__(
        self, settings: Settings, monotonic: Callable[[], float], metrics: Metrics
    ) -> None:
        self._rate = float(settings.connection_rate_per_address)
        self._burst = int(settings.connection_burst_per_address)
        self._fail_rate = float(settings.auth_failure_rate_per_address)
        self._fail_burst = int(settings.auth_failure_burst_per_address)
        self.max_pending = int(settings.max_pending_connections)
        self.max_pending_per_address = int(settings.max_pending_per_address)
        self._clock = monotonic
        self._metrics = metrics
        self._addresses: dict[str, _Address] = {}
        self.pending = 0  # connections still authenticating, whole instance
        self._swept = monotonic()

    def admit(self, address: str | None, *, has_token: bool) -> Refusal | None:
        """A handshake from ``address``: None to go ahead (then report ``opened``), or the
        refusal. A connection with a handshake token is verified at once, so the caps on
        connections still authenticating do not apply to it."""
        self._sweep()
        refusal = self._check(self._entry(address), has_token)
        if refusal is not None:
            self._metrics.admission_refusals[refusal.reason] += 1
        return refusal

    def _check(self, entry: _Address | None, has_token: bool) -> Refusal | None:
        if entry is None:  # a loopback address: only the instance-wide cap applies
            if not has_token and self.pending >= self.max_pending:
                return Refusal(503, "pending", "too many unauthenticated connections", 1)
            return None
        if entry.failures is not None and entry.failures.tokens < 1:
            return Refusal(
                429,
                "auth_failures",
                "too many failed authentications from this address",
                _wait(entry.failures),
            )
        if entry.connects is not None and not entry.connects.take():
            return Refusal(
                429,
                "connection_rate",
                "too many new connections from this address",
                _wait(entry.connects),
            )
        if has_token:
            return None
        if entry.pending >= self.max_pending_per_address:
            return Refusal(
                429,
                "pending_per_address",
                "too many unauthenticated connections from this address",
                1,
            )
        if self.pending >= self.max_pending:
            return Refusal(503, "pending", "too many unauthenticated connections", 1)
        return None

    def opened(self, address: str | None) -> None:
        """A connection admitted without a token is open and authenticating."""
        entry = self._entry(address)
        if entry is not None:
            entry.pending += 1
        self.pending += 1
        self._metrics.pending_connections = self.pending

    def settled(self, address: str | None) -> None:
        """A connection reported by ``opened`` authenticated, or closed before it did."""
        entry = self._entry(address)
        if entry is not None:
            entry.pending -= 1
        self.pending -= 1
        self._metrics.pending_connections = self.pending

    def failed(self, address: str | None) -> None:
        """An authentication from ``address`` failed (a bad or missing token)."""
        entry = self._entry(address)
        if entry is not None and entry.failures is not None:
            entry.failures.take()

    def _entry(self, address: str | None) -> _Address | None:
        """The state of ``address``; None for a loopback address, which is exempt."""
        key = address or ""
        entry = self._addresses.get(key)
        if entry is None and _is_loopback(key):
            return None
        if entry is None:
            clock = self._clock
            entry = self._addresses[key] = _Address(
                TokenBucket(self._rate, self._burst, clock) if self._rate > 0 else None,
                TokenBucket(self._fail_rate, self._fail_burst, clock)
                if self._fail_rate > 0
                else None,
            )
        return entry

    def _sweep(self) -> None:
        now = self._clock()
        if now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        for key, entry in list(self._addresses.items()):
            if entry.pending == 0 and all(
                b is None or b.tokens >= b.burst for b in (entry.connects, entry.failures)
            ):
                del self._addresses[key]

    @property
    def addresses(self) -> int:
        """How many addresses have state (for tests and operators)."""
        return len(self._addresses)


@functools.lru_cache(maxsize=256)
def _is_loopback(address: str) -> bool:
    # Cached: parsing the address costs a few µs on every connect from a local proxy.
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _wait(bucket: TokenBucket) -> int:
    """Whole seconds until ``bucket`` has a token again (Retry-After)."""
    return max(1, math.ceil((1 - bucket.tokens) / bucket.rate))
