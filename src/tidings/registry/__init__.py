"""The cluster registry: instance heartbeats and stats, and each user's connections over
the cluster (the cluster-wide cap). ``redis.py`` keeps them in Redis; a single instance
has none (its hub is the whole truth).
"""

from __future__ import annotations

from typing import Any, Protocol


class Registry(Protocol):
    """Who is connected where, across a cluster.

    Contract: ``add`` counts a connection against its user's cap atomically (concurrent
    adds on different instances never both pass the cap); the entries of an instance
    that stops beating stop counting within three heartbeat periods; every method may
    raise when the backend is unreachable, and callers decide (the cap then falls back
    to the local one, a removal expires with the heartbeat).
    """

    async def beat(self, stats: dict[str, Any]) -> None:
        """Say this instance is alive, with its stats."""
        ...

    async def leave(self) -> None:
        """Drop this instance's entries (a clean shutdown)."""
        ...

    async def close(self) -> None: ...

    async def add(self, user_id: str, client_id: str, cap: int) -> int:
        """Count a connection; its user's connection count, or -1 if over ``cap``."""
        ...

    async def remove(self, user_id: str, client_id: str) -> None: ...

    async def count(self, user_id: str) -> int:
        """The user's live connections over the cluster."""
        ...

    async def instances(self) -> tuple[int, list[dict[str, Any]]]:
        """Users connected anywhere, and each live instance's last stats."""
        ...
