"""What a publication is refused with and what a send returns, apart from ``node.py`` so
that everything that publishes can name them without depending on the node."""

from __future__ import annotations

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


def iso_timestamp(unix: float) -> str:
    """ISO 8601 UTC with milliseconds, as the guides' ``timestamp`` fields."""
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
