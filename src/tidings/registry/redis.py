"""Who is connected where, across a cluster: the instance registry in Redis.

Each instance writes a heartbeat key holding its stats; the key expires after three
missed beats, which is how a killed instance leaves the cluster on its own. A user's
connections are members ``<instance>|<client>`` of one set; members whose instance has
no live heartbeat are dropped whenever the set is read, so a dead instance's
connections stop counting within three heartbeats with no clean-up job.

A single instance (the in-process broker) has no registry: its hub is the whole truth.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

log = logging.getLogger("tidings.registry")

# Keys: {p}inst:<id> heartbeat+stats; {p}insts set of ids; {p}uc:<user> a user's
# connections; {p}iu:<id> the users with a connection on instance <id>.
_LIVE_MEMBERS = """
local live = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local inst = string.match(m, '^([^|]+)|')
  if inst and redis.call('EXISTS', ARGV[1] .. 'inst:' .. inst) == 1 then
    live = live + 1
  else
    redis.call('SREM', KEYS[1], m)
  end
end
"""

_ADD = (
    _LIVE_MEMBERS
    + """
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 1 then return live end
if live >= tonumber(ARGV[3]) then return -1 end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return live + 1
"""
)

_COUNT = _LIVE_MEMBERS + "\nreturn live\n"

_REMOVE = """
redis.call('SREM', KEYS[1], ARGV[1])
local left = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if string.sub(m, 1, string.len(ARGV[2])) == ARGV[2] then left = left + 1 end
end
if left == 0 then redis.call('SREM', KEYS[2], ARGV[3]) end
return left
"""

# Live instances' stats, and the number of distinct users over all of them.
_INSTANCES = """
local out = {}
local users = {}
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local stats = redis.call('GET', ARGV[1] .. 'inst:' .. id)
  if stats then
    table.insert(out, stats)
    for _, u in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'iu:' .. id)) do
      if not users[u] then users[u] = true; n = n + 1 end
    end
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return {n, out}
"""


class RedisRegistry:
    """The cluster's connection registry and instance heartbeats, in Redis.

    Args:
        redis: a client (``decode_responses`` off).
        instance_id: this instance's id.
        prefix: key prefix shared by the cluster.
        ttl: seconds an instance counts as alive after its last heartbeat.
    """

    def __init__(self, redis: Redis, instance_id: str, *, prefix: str, ttl: float) -> None:
        self._redis = redis
        self.instance_id = instance_id
        self._p = prefix
        self._ttl_ms = max(1, int(ttl * 1000))
        self._add = redis.register_script(_ADD)
        self._count = redis.register_script(_COUNT)
        self._remove = redis.register_script(_REMOVE)
        self._instances = redis.register_script(_INSTANCES)

    @classmethod
    def from_url(
        cls,
        url: str,
        instance_id: str,
        *,
        prefix: str,
        ttl: float,
        command_timeout: float = 1.0,
    ) -> RedisRegistry:
        """A registry on its own connection pool to ``url``; each command fails after
        ``command_timeout`` seconds without an answer (a hung Redis cannot hang it)."""
        # Blocking pool: a burst of connections waits for a Redis connection instead of
        # failing the cluster-wide cap check (the default pool raises when exhausted).
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=32,
            timeout=5,
            socket_connect_timeout=5,
            socket_timeout=command_timeout,
        )
        return cls(Redis.from_pool(pool), instance_id, prefix=prefix, ttl=ttl)

    def _member(self, client_id: str) -> str:
        return f"{self.instance_id}|{client_id}"

    async def beat(self, stats: dict[str, Any]) -> None:
        """Mark this instance alive for another ``ttl`` and publish its stats.

        Raises:
            RedisError: Redis cannot be reached.
        """
        p, me = self._p, self.instance_id
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(f"{p}inst:{me}", msgspec.json.encode(stats), px=self._ttl_ms)
            pipe.sadd(f"{p}insts", me)
            pipe.pexpire(f"{p}iu:{me}", self._ttl_ms)
            await pipe.execute()

    async def leave(self) -> None:
        """Remove this instance and its connections at once (a clean shutdown)."""
        p, me = self._p, self.instance_id
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(f"{p}inst:{me}", f"{p}iu:{me}")
                pipe.srem(f"{p}insts", me)
                await pipe.execute()
        except RedisError as exc:
            log.warning("registry: could not leave cleanly (%s); entries expire on their own", exc)

    async def close(self) -> None:
        await self._redis.aclose()

    async def add(self, user_id: str, client_id: str, cap: int) -> int:
        """Record a connection unless the user already holds ``cap`` live ones.

        Returns:
            The user's live connections including this one, or -1 if over the cap.
        Raises:
            RedisError: Redis cannot be reached.
        """
        p = self._p
        result = await self._add(
            keys=[f"{p}uc:{user_id}", f"{p}iu:{self.instance_id}"],
            args=[p, self._member(client_id), cap, user_id, self._ttl_ms],
        )
        return int(result)

    async def remove(self, user_id: str, client_id: str) -> None:
        """Forget a connection (its user stays listed on this instance while others remain)."""
        p = self._p
        await self._remove(
            keys=[f"{p}uc:{user_id}", f"{p}iu:{self.instance_id}"],
            args=[self._member(client_id), f"{self.instance_id}|", user_id],
        )

    async def count(self, user_id: str) -> int:
        """The user's live connections on every instance."""
        return int(await self._count(keys=[f"{self._p}uc:{user_id}"], args=[self._p]))

    async def instances(self) -> tuple[int, list[dict[str, Any]]]:
        """Distinct users over the cluster, and each live instance's last stats."""
        users, raw = await self._instances(keys=[f"{self._p}insts"], args=[self._p])
        return int(users), [msgspec.json.decode(item) for item in raw]
