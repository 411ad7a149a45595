"""The reconnection delay: exponential backoff with full jitter."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    initial: float,
    maximum: float,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (from 0).

    Uniform in ``[0, min(maximum, initial * 2**attempt)]`` ("full jitter"), so a crowd of
    clients dropped at once by a restart does not come back at once.
    """
    cap = min(maximum, initial * 2 ** min(attempt, 32))
    return uniform(0, cap)
