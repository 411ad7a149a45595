"""Presence in Redis: per-instance entries whose liveness is a TTL'd key refreshed by a
heartbeat.

Keys, under ``{prefix}presence:``:

* ``alive:{iid}``: exists while instance ``iid`` is live (``PX ttl``, refreshed by
  ``heartbeat``); ``insts``: every instance that ever registered and is not swept yet.
* ``c:{len(scope)}:{scope}:{user}``: the user's entries in a scope, ``{iid}|{conn}``
  (the length prefix keeps ``("a:b", "c")`` and ``("a", "b:c")`` apart).
* ``a:{scope}``: the announced users of a scope.
* ``i:{iid}``: the entries an instance owns (JSON ``[scope, user, conn]``), for its sweep.

``connect`` and ``settle`` are Lua scripts, so "announce once" and "leave once" hold
however many instances race.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .errors import PresenceError

P = ParamSpec("P")
T = TypeVar("T")


def _unavailable(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Redis failures (refused, reset, past the command deadline) as ``PresenceError``."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise PresenceError(f"presence: {exc}") from exc

    return wrapper


_CONNECT: Final = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[3])
return redis.call('SADD', KEYS[2], ARGV[2])
"""
_SETTLE: Final = """
local members = redis.call('SMEMBERS', KEYS[1])
for _, m in ipairs(members) do
  local iid = string.match(m, '^([^|]*)|')
  if iid and redis.call('EXISTS', ARGV[2] .. iid) == 1 then
    return 0
  end
  redis.call('SREM', KEYS[1], m)
end
return redis.call('SREM', KEYS[2], ARGV[1])
"""


class RedisPresence:
    """``Presence`` on Redis (``redis.asyncio``)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tidings:",
        ttl: float = 15.0,
        instance_id: str | None = None,
        command_timeout: float = 1.0,
    ) -> None:
        self._url = url
        # A Redis that hangs with its socket open must not hang presence updates.
        self._command_timeout = command_timeout
        self._p = f"{prefix}presence:"
        self.ttl = ttl
        self.instance_id = instance_id or os.urandom(6).hex()
        self._r: Any = None
        self._connect: Any = None
        self._settle: Any = None

    def _db(self) -> Any:
        if self._r is None:
            raise RuntimeError("presence is not started")
        return self._r

    def _entries_key(self, scope: str, user_id: str) -> str:
        return f"{self._p}c:{len(scope)}:{scope}:{user_id}"

    async def start(self) -> None:
        self._r = aioredis.Redis.from_url(
            self._url, decode_responses=True, socket_timeout=self._command_timeout
        )
        self._connect = self._r.register_script(_CONNECT)
        self._settle = self._r.register_script(_SETTLE)
        await self.heartbeat()

    async def close(self) -> None:
        r, self._r = self._r, None
        if r is not None:
            await r.aclose()

    @_unavailable
    async def heartbeat(self) -> None:
        r = self._db()
        async with r.pipeline(transaction=True) as pipe:
            pipe.set(f"{self._p}alive:{self.instance_id}", "1", px=int(self.ttl * 1000))
            pipe.sadd(f"{self._p}insts", self.instance_id)
            await pipe.execute()

    @_unavailable
    async def connect(self, scope: str, user_id: str, conn_id: str) -> bool:
        self._db()
        keys = [
            self._entries_key(scope, user_id),
            f"{self._p}a:{scope}",
            f"{self._p}i:{self.instance_id}",
        ]
        entry = json.dumps([scope, user_id, conn_id])
        args = [f"{self.instance_id}|{conn_id}", user_id, entry]
        return bool(await self._connect(keys=keys, args=args))

    @_unavailable
    async def disconnect(self, scope: str, user_id: str, conn_id: str) -> None:
        r = self._db()
        async with r.pipeline(transaction=True) as pipe:
            pipe.srem(self._entries_key(scope, user_id), f"{self.instance_id}|{conn_id}")
            pipe.srem(f"{self._p}i:{self.instance_id}", json.dumps([scope, user_id, conn_id]))
            await pipe.execute()

    @_unavailable
    async def settle(self, scope: str, user_id: str) -> bool:
        self._db()
        keys = [self._entries_key(scope, user_id), f"{self._p}a:{scope}"]
        return bool(await self._settle(keys=keys, args=[user_id, f"{self._p}alive:"]))

    @_unavailable
    async def online(self, scope: str) -> list[str]:
        return sorted(await self._db().smembers(f"{self._p}a:{scope}"))

    @_unavailable
    async def is_online(self, scope: str, user_id: str) -> bool:
        return bool(await self._db().sismember(f"{self._p}a:{scope}", user_id))

    @_unavailable
    async def sweep(self) -> list[tuple[str, str]]:
        r = self._db()
        gone: list[tuple[str, str]] = []
        for iid in await r.smembers(f"{self._p}insts"):
            if iid == self.instance_id or await r.exists(f"{self._p}alive:{iid}"):
                continue
            # Whoever removes the instance from the set owns its cleanup: one sweeper.
            if not await r.srem(f"{self._p}insts", iid):
                continue
            owned_key = f"{self._p}i:{iid}"
            entries = [json.loads(e) for e in await r.smembers(owned_key)]
            async with r.pipeline(transaction=False) as pipe:
                for scope, user, conn in entries:
                    pipe.srem(self._entries_key(scope, user), f"{iid}|{conn}")
                pipe.delete(owned_key)
                await pipe.execute()
            for scope, user in sorted({(s, u) for s, u, _ in entries}):
                if await self.settle(scope, user):
                    gone.append((scope, user))
        return gone
