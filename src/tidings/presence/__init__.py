"""Presence: which users are online in which scope (a room), per user, across instances.

A user is *online* in a scope from their first connection there until they have had none,
on any instance, for a grace period (so a page reload does not flap ``USER_LEFT`` /
``USER_JOINED``). The backend only keeps the facts; ``rooms.Rooms`` decides when
to ask and what to publish.

Implementations: ``memory.MemoryPresence`` (one process; instances sharing one
``PresenceSpace`` act as a cluster, which is how the contract suite drives it) and
``redis.RedisPresence`` (instances sharing a Redis). ``tests/test_presence_contract.py``
runs one suite against both.
"""

from __future__ import annotations

from typing import Protocol

from .errors import PresenceError

__all__ = ["Presence", "PresenceError", "open_presence"]


class Presence(Protocol):
    """Per-user presence shared by the instances of a cluster.

    Contract, for every implementation:

    * **Entries** are ``(scope, user, connection)`` owned by the instance that added them.
      A user is *announced* in a scope from the ``connect`` that returned True until the
      ``settle`` (or ``sweep``) that reports them gone; ``online`` lists announced users.
    * ``connect`` returns True exactly once per announcement, cluster-wide, however many
      connections, tabs and instances race: the caller publishes ``USER_JOINED`` then.
    * ``disconnect`` removes one entry and never announces anything by itself.
    * ``settle(scope, user)`` returns True, exactly once cluster-wide, when the user is
      announced but has no entry left on a live instance; the caller publishes
      ``USER_LEFT``. Callers call it after their grace period, so a connection that came
      back meanwhile keeps the user online without a leave/join pair.
    * **Instance death.** An instance is live while its heartbeat is fresh (``heartbeat``
      at least every ``ttl / 3`` seconds). ``sweep``, run by any live instance, removes the
      entries of instances whose heartbeat expired and settles their users, returning the
      ``(scope, user)`` pairs that went offline, each reported by one sweeper only.
    * ``close`` stops this instance's heartbeat and releases its connections but leaves
      its liveness to run out on its own TTL: its entries are then swept like a dead
      instance's. A graceful restart's clients reconnect elsewhere meanwhile, so a deploy
      does not make every user of the instance leave and join again.
    """

    instance_id: str

    async def start(self) -> None:
        """Connect and write the first heartbeat."""
        ...

    async def close(self) -> None:
        """Release connections; liveness runs out on its own (see the contract)."""
        ...

    async def heartbeat(self) -> None:
        """Refresh this instance's liveness."""
        ...

    async def connect(self, scope: str, user_id: str, conn_id: str) -> bool:
        """Add an entry; True if this announced the user in the scope."""
        ...

    async def disconnect(self, scope: str, user_id: str, conn_id: str) -> None:
        """Remove an entry (no-op if absent)."""
        ...

    async def settle(self, scope: str, user_id: str) -> bool:
        """Un-announce the user if no live entry is left; True if this did it."""
        ...

    async def online(self, scope: str) -> list[str]:
        """Announced users of the scope, sorted."""
        ...

    async def is_online(self, scope: str, user_id: str) -> bool:
        """Whether the user is announced in the scope."""
        ...

    async def sweep(self) -> list[tuple[str, str]]:
        """Clean up after dead instances; the ``(scope, user)`` pairs that went offline."""
        ...


def open_presence(url: str, *, prefix: str, ttl: float, command_timeout: float = 1.0) -> Presence:
    """The presence backend a broker URL implies: Redis for ``redis://``, else memory;
    a Redis command fails after ``command_timeout`` seconds without an answer."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisPresence

        return RedisPresence(url, prefix=prefix, ttl=ttl, command_timeout=command_timeout)
    from .memory import MemoryPresence

    return MemoryPresence(ttl=ttl)
