"""In-process presence: one ``PresenceSpace`` shared by the instances of one process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


class PresenceSpace:
    """The shared state: entries, announcements, and each instance's liveness deadline."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.entries: dict[tuple[str, str], set[tuple[str, str]]] = {}  # -> {(iid, conn)}
        self.announced: dict[str, set[str]] = {}
        self.alive: dict[str, float] = {}  # iid -> deadline
        self.owned: dict[str, set[tuple[str, str, str]]] = {}  # iid -> {(scope, user, conn)}

    def live(self, iid: str) -> bool:
        deadline = self.alive.get(iid)
        return deadline is not None and deadline > self.clock()


class MemoryPresence:
    """``Presence`` in memory. Alone (the default space), it is one instance's presence;
    several on one ``PresenceSpace`` behave as a cluster."""

    def __init__(
        self,
        space: PresenceSpace | None = None,
        *,
        ttl: float = 15.0,
        instance_id: str | None = None,
    ) -> None:
        self.space = space or PresenceSpace()
        self.ttl = ttl
        self.instance_id = instance_id or os.urandom(6).hex()

    async def start(self) -> None:
        await self.heartbeat()

    async def close(self) -> None:
        return None  # the deadline runs out on its own

    async def heartbeat(self) -> None:
        s = self.space
        s.alive[self.instance_id] = s.clock() + self.ttl
        s.owned.setdefault(self.instance_id, set())

    async def connect(self, scope: str, user_id: str, conn_id: str) -> bool:
        s = self.space
        s.entries.setdefault((scope, user_id), set()).add((self.instance_id, conn_id))
        s.owned.setdefault(self.instance_id, set()).add((scope, user_id, conn_id))
        announced = s.announced.setdefault(scope, set())
        if user_id in announced:
            return False
        announced.add(user_id)
        return True

    async def disconnect(self, scope: str, user_id: str, conn_id: str) -> None:
        s = self.space
        entries = s.entries.get((scope, user_id))
        if entries is not None:
            entries.discard((self.instance_id, conn_id))
            if not entries:
                del s.entries[(scope, user_id)]
        s.owned.get(self.instance_id, set()).discard((scope, user_id, conn_id))

    async def settle(self, scope: str, user_id: str) -> bool:
        s = self.space
        entries = s.entries.get((scope, user_id), set())
        for entry in list(entries):
            if s.live(entry[0]):
                return False
            entries.discard(entry)
        s.entries.pop((scope, user_id), None)
        announced = s.announced.get(scope)
        if announced is None or user_id not in announced:
            return False
        announced.discard(user_id)
        if not announced:
            del s.announced[scope]
        return True

    async def online(self, scope: str) -> list[str]:
        return sorted(self.space.announced.get(scope, ()))

    async def is_online(self, scope: str, user_id: str) -> bool:
        return user_id in self.space.announced.get(scope, ())

    async def sweep(self) -> list[tuple[str, str]]:
        s = self.space
        gone: list[tuple[str, str]] = []
        for iid in [i for i in s.owned if i != self.instance_id and not s.live(i)]:
            owned = s.owned.pop(iid)
            s.alive.pop(iid, None)
            pairs = sorted({(scope, user) for scope, user, _ in owned})
            for scope, user, conn in owned:
                entries = s.entries.get((scope, user))
                if entries is not None:
                    entries.discard((iid, conn))
            for scope, user in pairs:
                if await self.settle(scope, user):
                    gone.append((scope, user))
        return gone
