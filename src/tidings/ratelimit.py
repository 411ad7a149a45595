"""Token buckets for client message rates; time comes from an injected clock."""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    """A bucket of ``burst`` tokens refilled at ``rate`` per second.

    ``take()`` spends one token and says whether there was one. The clock is a callable
    returning seconds (monotonic), so tests move time instead of sleeping.
    """

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    @property
    def tokens(self) -> float:
        """Tokens available now (a fraction while refilling)."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        self._last = now
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)

    def take(self) -> bool:
        """Spend one token if there is one."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
