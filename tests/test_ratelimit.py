"""Token buckets under an injected clock."""

from __future__ import annotations

import pytest

from tidings.ratelimit import TokenBucket


def test_burst_then_refill() -> None:
    """A full bucket allows a burst, then refills at the rate, never above the burst."""
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert bucket.take() is True
    assert bucket.take() is False
    now[0] += 100
    assert sum(bucket.take() for _ in range(10)) == 3


def test_bad_parameters() -> None:
    """Non-positive rates and empty bursts are refused."""
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1, clock=lambda: 0.0)
