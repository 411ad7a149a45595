"""Names and pictures of registered users, for the events that show them.

Chat events carry their author's name and avatar (guide 004's ``authorName``,
``authorImage``, ``userName``, ``userImage``). Reading the directory for every message or
typing event would put a store read on the hot path, so lookups are cached for a short
while: a renamed user shows the new name within ``ttl`` seconds on every instance.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

from .store import StoreError
from .store.users import UserRecord

log = logging.getLogger("tidings.directory")

Profile = tuple[str | None, str | None]  # (name, avatar URL)
NOBODY: Profile = (None, None)


class UserLookup(Protocol):
    """What ``Profiles`` needs of the store."""

    async def get_user(self, user_id: str) -> UserRecord | None: ...


class Profiles:
    """A bounded, time-limited cache of ``(name, avatar URL)`` per user id.

    Args:
        store: reads a registered user.
        monotonic: the clock the entries' age is measured on.
        ttl: seconds an entry (a miss included) is trusted.
        size: entries kept at most; the oldest go first.
    """

    def __init__(
        self,
        store: UserLookup,
        monotonic: Callable[[], float],
        *,
        ttl: float = 30.0,
        size: int = 10_000,
    ) -> None:
        self._store = store
        self._monotonic = monotonic
        self._ttl = ttl
        self._size = size
        self._cache: OrderedDict[str, tuple[float, Profile]] = OrderedDict()

    async def get(self, user_id: str) -> Profile:
        """The user's name and avatar; ``(None, None)`` if unregistered or the store fails
        (an event is never held back for want of a name)."""
        now = self._monotonic()
        hit = self._cache.get(user_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        try:
            user = await self._store.get_user(user_id)
        except StoreError as exc:
            log.debug("directory lookup of %s failed: %s", user_id, exc)
            return hit[1] if hit is not None else NOBODY
        profile = NOBODY if user is None else (user.name, user.avatar_url)
        self._cache[user_id] = (now, profile)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return profile

    async def many(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        """``get`` for each distinct id."""
        return {uid: await self.get(uid) for uid in dict.fromkeys(user_ids)}

    def forget(self, user_id: str) -> None:
        """Drop a cached entry (this instance changed or erased the user)."""
        self._cache.pop(user_id, None)
