"""What a publication is refused with and what a send returns, apart from ``node.py`` so
that everything that publishes can name them without depending on the node."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import NamedTuple

from .broker import StreamPosition


class PublishError(ValueError):
    """A publication the server refuses (bad channel name or type)."""


class Sent(NamedTuple):
    """What a send did.

    ``delivered`` is the number of connections it was queued to on a single instance;
    in a cluster it is the user's connection count over the cluster for a user send and
    None otherwise (no instance knows who else took it). ``position`` is a channel
    publication's stream position when its namespace keeps history.
    """

    id: str
    delivered: int | None
    position: StreamPosition | None = None


def _formatted(unix: float) -> str:
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


# The last second formatted, and its text up to the second ("2026-12-05T12:00:00").
# One tuple, replaced whole, so a thread reading it never sees half of an update.
_last_second: tuple[int, str] = (0, _formatted(0)[:-5])


def iso_timestamp(unix: float) -> str:
    """ISO 8601 UTC with milliseconds, as the guides' ``timestamp`` fields.

    Every publication, pushed notification and welcome carries one, and formatting a
    datetime costs more than the rest of an envelope; stamps come in runs within one
    second, so that second's text is kept and only the milliseconds are formatted. The
    result is ``datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")``
    exactly (tested): microseconds rounded half to even, then truncated to milliseconds.
    """
    global _last_second
    if not 0.0 <= unix < 1e11:  # before 1970, past year 5138, NaN: datetime decides
        return _formatted(unix)
    second = math.floor(unix)
    # Exact: unix and its floor are within one unit of each other.
    micros = round((unix - second) * 1e6)
    if micros >= 1_000_000:
        second += 1
        micros -= 1_000_000
    cached = _last_second
    if cached[0] != second:
        cached = (second, _formatted(second)[:-5])  # without ".000Z"
        _last_second = cached
    return f"{cached[1]}.{micros // 1000:03d}Z"
