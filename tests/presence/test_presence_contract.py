"""The Presence contract, run against every backend: in-process memory and real Redis.

"Instances" are several presences of one cluster: ``MemoryPresence`` on one shared
``PresenceSpace`` (with a hand-driven clock), or ``RedisPresence`` on one Redis with one
key prefix per test (deleted at teardown).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tidings.presence import Presence
from tidings.presence.memory import MemoryPresence, PresenceSpace
from tidings.presence.redis import RedisPresence

REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS", "redis://127.0.0.1:6379/0")
TTL = 15.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    """Builds started presences of one backend; ``kill`` makes one's liveness lapse."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = f"test:{secrets.token_hex(6)}:"
        self.clock = Clock()
        self.space = PresenceSpace(self.clock)
        self.members: list[Presence] = []
        self.admin = aioredis.Redis.from_url(REDIS_URL)

    async def instance(self) -> Presence:
        p: Presence
        if self.kind == "memory":
            p = MemoryPresence(self.space, ttl=TTL)
        else:
            p = RedisPresence(REDIS_URL, prefix=self.prefix, ttl=TTL)
        await p.start()
        self.members.append(p)
        return p

    async def kill(self, p: Presence) -> None:
        """The instance stops heartbeating and its liveness runs out (no close)."""
        if self.kind == "memory":
            self.clock.now += TTL + 1
            for other in self.members:
                if other is not p:
                    await other.heartbeat()
        else:
            # Expiry is Redis's job (test_heartbeat_sets_a_ttl checks the TTL is set).
            await self.admin.delete(f"{self.prefix}presence:alive:{p.instance_id}")

    async def aclose(self) -> None:
        for p in self.members:
            if self.kind == "memory" or getattr(p, "_r", None) is not None:
                await p.close()
        keys = [k async for k in self.admin.scan_iter(match=f"{self.prefix}*")]
        if keys:
            await self.admin.delete(*keys)
        await self.admin.aclose()


@pytest.fixture(params=["memory", "redis"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    c = Cluster(request.param)
    yield c
    await c.aclose()


async def test_one_join_per_user_across_tabs_and_instances(cluster: Cluster) -> None:
    """Three tabs on two instances announce the user once."""
    a, b = await cluster.instance(), await cluster.instance()
    assert await a.connect("r1", "bob", "c1")
    assert not await a.connect("r1", "bob", "c2")
    assert not await b.connect("r1", "bob", "c3")
    assert await a.online("r1") == ["bob"]
    assert await b.is_online("r1", "bob")
    assert not await b.is_online("r2", "bob")
    assert await b.online("r2") == []


async def test_settle_leaves_once_when_no_entry_is_left(cluster: Cluster) -> None:
    """A user with an entry anywhere stays; the last settle reports the leave once."""
    a, b = await cluster.instance(), await cluster.instance()
    await a.connect("r1", "bob", "c1")
    await b.connect("r1", "bob", "c2")
    await a.disconnect("r1", "bob", "c1")
    assert not await a.settle("r1", "bob")
    await b.disconnect("r1", "bob", "c2")
    results = await asyncio.gather(a.settle("r1", "bob"), b.settle("r1", "bob"))
    assert sorted(results) == [False, True]
    assert await a.online("r1") == []
    assert not await a.settle("r1", "bob")


async def test_reconnect_within_grace_keeps_the_user(cluster: Cluster) -> None:
    """A reload (disconnect, then connect before settling) neither leaves nor rejoins."""
    a, b = await cluster.instance(), await cluster.instance()
    assert await a.connect("r1", "bob", "c1")
    await a.disconnect("r1", "bob", "c1")
    assert not await b.connect("r1", "bob", "c2")  # the reload landed on another instance
    assert not await a.settle("r1", "bob")
    assert await a.online("r1") == ["bob"]


async def test_racing_connects_announce_once(cluster: Cluster) -> None:
    """Concurrent first connections on two instances: exactly one announcement."""
    a, b = await cluster.instance(), await cluster.instance()
    results = await asyncio.gather(
        *(p.connect("r1", "bob", f"c{i}") for i, p in enumerate([a, b] * 5))
    )
    assert results.count(True) == 1


async def test_dead_instance_is_swept_once(cluster: Cluster) -> None:
    """A killed instance's users go offline at the next sweep, reported by one sweeper;
    a user with a tab on a live instance stays."""
    a, b, c = await cluster.instance(), await cluster.instance(), await cluster.instance()
    await b.connect("r1", "bob", "c1")
    await b.connect("r1", "carol", "c2")
    await a.connect("r1", "carol", "c3")
    await b.connect("r2", "bob", "c4")
    await cluster.kill(b)
    swept = await asyncio.gather(a.sweep(), c.sweep())
    assert sorted(swept[0] + swept[1]) == [("r1", "bob"), ("r2", "bob")]
    assert [] in swept
    assert await a.online("r1") == ["carol"]
    assert await a.online("r2") == []
    assert await a.sweep() == []


async def test_live_instances_are_not_swept(cluster: Cluster) -> None:
    """Sweeping with every instance live changes nothing."""
    a, b = await cluster.instance(), await cluster.instance()
    await b.connect("r1", "bob", "c1")
    assert await a.sweep() == []
    assert await a.online("r1") == ["bob"]


async def test_a_closed_instance_is_swept_once_its_liveness_runs_out(cluster: Cluster) -> None:
    """A gracefully closed instance stays live until its TTL, so a client reconnecting
    elsewhere meanwhile keeps its user online; the rest is swept afterwards."""
    a, b = await cluster.instance(), await cluster.instance()
    await b.connect("r1", "bob", "c1")
    await b.connect("r1", "dave", "c2")
    await b.close()
    assert await a.sweep() == []
    assert not await a.connect("r1", "bob", "c3")  # bob's client came back on a
    await cluster.kill(b)
    assert await a.sweep() == [("r1", "dave")]
    assert await a.online("r1") == ["bob"]


async def test_scopes_and_users_with_separators_stay_apart(cluster: Cluster) -> None:
    """(scope "a:b", user "c") and (scope "a", user "b:c") are different entries."""
    a = await cluster.instance()
    assert await a.connect("a:b", "c", "c1")
    assert await a.connect("a", "b:c", "c2")
    await a.disconnect("a:b", "c", "c1")
    assert await a.settle("a:b", "c")
    assert await a.online("a") == ["b:c"]


async def test_heartbeat_sets_a_ttl(cluster: Cluster) -> None:
    """Liveness expires on its own: a deadline ttl ahead (memory), a key with a TTL (Redis)."""
    a = await cluster.instance()
    if cluster.kind == "memory":
        assert cluster.space.alive[a.instance_id] == cluster.clock.now + TTL
        return
    ttl_ms = await cluster.admin.pttl(f"{cluster.prefix}presence:alive:{a.instance_id}")
    assert 0 < ttl_ms <= TTL * 1000
