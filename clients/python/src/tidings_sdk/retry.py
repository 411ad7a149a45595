"""When to send a request again, and after how long: pure, shared by both clients.

A request is retried only when doing it twice cannot do it twice:

- it never reached the server (connection refused, no connection from the pool), or the
  server said it did nothing (``429``, ``503``): any call;
- it may have reached the server (a dropped connection, a read timeout, a proxy's
  ``502``/``504``): only a call marked ``repeatable`` (reads, replacements, and a
  notification create, whose ``Idempotency-Key`` makes the server answer a repeat with the
  first result instead of creating again).

A publish or a send is not repeatable (the server keeps no key for them), so after an
ambiguous failure it raises :class:`~tidings_sdk.errors.TransportError` with
``maybe_sent=True`` and the caller decides.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

# The server did nothing: it refused before acting (rate limit) or could not act.
NOTHING_DONE: Final = frozenset({429, 503})
# A gateway in front of the server failed: the request may or may not have been served.
AMBIGUOUS: Final = frozenset({502, 504})


@dataclass(frozen=True, slots=True)
class Retry:
    """How hard to try.

    Attributes:
        attempts: retries after the first try (0: never retry).
        backoff: the first retry's delay ceiling in seconds; doubled each retry (full
            jitter: the delay is uniform between 0 and the ceiling).
        max_backoff: the largest ceiling, and the longest ``Retry-After`` waited for: a
            server asking for a longer wait gets no retry (the error, with its
            ``retry_after``, is raised at once), since retrying sooner than asked would
            only be refused again.
    """

    attempts: int = 3
    backoff: float = 0.25
    max_backoff: float = 5.0

    def delay(
        self,
        attempt: int,
        *,
        repeatable: bool,
        maybe_sent: bool,
        retry_after: float | None = None,
        rand: float | None = None,
    ) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or ``None`` to give up.

        Args:
            attempt: retries already made (0 after the first try).
            repeatable: the call is safe to perform twice.
            maybe_sent: the failed try may have reached the server.
            retry_after: the server's ``Retry-After``, if it sent one.
            rand: a number in [0, 1) for the jitter (tests pass one; default random).
        """
        if attempt >= self.attempts or (maybe_sent and not repeatable):
            return None
        if retry_after is not None:
            return float(retry_after) if retry_after <= self.max_backoff else None
        ceiling = min(self.backoff * 2.0**attempt, self.max_backoff)
        return float(ceiling * (random.random() if rand is None else rand))


def status_outcome(status: int) -> bool | None:
    """For an error status: ``False`` if nothing was done (retry any call), ``True`` if
    it may have been done (retry a repeatable call), ``None`` if final (do not retry)."""
    if status in NOTHING_DONE:
        return False
    if status in AMBIGUOUS:
        return True
    return None
