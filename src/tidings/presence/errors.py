"""The presence backends' error (apart from the package, which imports the backends)."""

from __future__ import annotations

from ..broker import BrokerError


class PresenceError(BrokerError):
    """The presence backend cannot be reached (a cluster's Redis is down or hung): the
    operation did nothing. A ``BrokerError``, so callers answer 503 / ``UNAVAILABLE``."""
