"""The Broker contract, run against every backend: in-process memory and real Redis.

"Two nodes" means two brokers of one cluster: two ``MemoryBroker`` on one shared
``MemoryExchange``, or two ``RedisBroker`` with the same prefix on one Redis. Each test
gets a prefix of its own (Redis keys and channels), deleted at teardown.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tidings.broker import Broker, BrokerError, Handler, StreamPosition
from tidings.broker.memory import MemoryBroker, MemoryExchange
from tidings.broker.redis import RedisBroker

from ..conftest import TIMEOUT

REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS", "redis://127.0.0.1:6379/0")
HISTORY_TTL = 0.3  # the TTLs the tests check were set (expiry itself is Redis's job)
META_TTL = 0.6


class Clock:
    """A hand-driven monotonic clock for the memory exchange."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A broker handler that records deliveries and lets a test wait for them."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, StreamPosition | None]] = []
        self._changed = asyncio.Event()

    def __call__(self, topic: str, payload: bytes, position: StreamPosition | None) -> None:
        self.got.append((topic, payload, position))
        self._changed.set()

    def payloads(self, topic: str) -> list[bytes]:
        return [payload for t, payload, _ in self.got if t == topic]

    async def wait(self, topic: str, count: int) -> list[bytes]:
        """The first ``count`` payloads of ``topic``, waiting for them to arrive."""
        async with asyncio.timeout(TIMEOUT):
            while len(self.payloads(topic)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.payloads(topic)[:count]


class Cluster:
    """Builds started nodes of one backend and lets time pass for its TTLs."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = f"test:{secrets.token_hex(6)}:"
        self.clock = Clock()
        self.exchange = MemoryExchange(clock=self.clock, meta_ttl=META_TTL)
        self.brokers: list[Broker] = []
        self.admin = aioredis.Redis.from_url(REDIS_URL)

    async def node(self, handler: Handler | None = None) -> tuple[Broker, Recorder]:
        """A started node delivering to a new ``Recorder`` (or to ``handler``)."""
        broker: Broker
        if self.kind == "memory":
            broker = MemoryBroker(self.exchange)
        else:
            broker = RedisBroker(REDIS_URL, prefix=self.prefix, meta_ttl=META_TTL)
        recorder = Recorder()
        await broker.start(handler or recorder)
        self.brokers.append(broker)
        return broker, recorder

    async def _gone(self, key: str, ttl: float) -> None:
        # Expiry itself is Redis's job: check the TTL we set, then let it happen now.
        ttl_ms = await self.admin.pttl(key)
        assert 0 < ttl_ms <= ttl * 1000, ttl_ms
        await self.admin.delete(key)

    async def history_expires(self, topic: str) -> None:
        """Let ``HISTORY_TTL`` pass with no publication to ``topic``."""
        if self.kind == "memory":
            self.clock.now += HISTORY_TTL
        else:
            await self._gone(f"{self.prefix}stream:{topic}", HISTORY_TTL)

    async def meta_expires(self, topic: str) -> None:
        """Let ``META_TTL`` pass: the stream's epoch and offset are forgotten."""
        if self.kind == "memory":
            self.clock.now += META_TTL
        else:
            await self._gone(f"{self.prefix}meta:{topic}", META_TTL)

    async def close(self) -> None:
        for broker in self.brokers:
            await broker.close()
        keys = [key async for key in self.admin.scan_iter(match=f"{self.prefix}*")]
        if keys:
            await self.admin.delete(*keys)
        await self.admin.aclose()


@pytest.fixture(params=["memory", "redis"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """A fresh cluster of one backend with a prefix of its own."""
    c = Cluster(request.param)
    try:
        yield c
    finally:
        await c.close()


async def test_publication_reaches_every_subscribed_node(cluster: Cluster) -> None:
    """A publication reaches the subscribed nodes, the publisher included, once each."""
    a, got_a = await cluster.node()
    b, got_b = await cluster.node()
    await a.subscribe("ch:news")
    await b.subscribe("ch:news")
    assert await a.publish("ch:news", b"hello") is None
    assert await got_a.wait("ch:news", 1) == [b"hello"]
    assert await got_b.wait("ch:news", 1) == [b"hello"]
    assert got_b.got == [("ch:news", b"hello", None)]


async def test_node_not_subscribed_gets_nothing(cluster: Cluster) -> None:
    """Only nodes subscribed to a topic receive it."""
    a, got_a = await cluster.node()
    b, got_b = await cluster.node()
    await a.subscribe("user:1")
    await b.subscribe("user:2")
    await b.publish("user:1", b"for-1")
    await b.publish("user:2", b"for-2")
    await got_b.wait("user:2", 1)
    await got_a.wait("user:1", 1)
    assert got_a.payloads("user:2") == []
    assert got_b.payloads("user:1") == []


async def test_order_per_topic_is_publish_order(cluster: Cluster) -> None:
    """Publications to one topic arrive in publish order on every node."""
    a, got_a = await cluster.node()
    b, got_b = await cluster.node()
    for broker in (a, b):
        await broker.subscribe("all")
    sent = [f"m{i}".encode() for i in range(200)]
    for payload in sent:
        await a.publish("all", payload)
    assert await got_a.wait("all", 200) == sent
    assert await got_b.wait("all", 200) == sent


async def test_one_nodes_concurrent_publishes_keep_call_order(cluster: Cluster) -> None:
    """Publishes a node starts without waiting for each other arrive in the order started,
    plain and with history mixed (one node's publications are one ordered stream)."""
    a, _ = await cluster.node()
    b, got = await cluster.node()
    await b.subscribe("ch:o")
    sent = [b"%d" % i for i in range(300)]
    await asyncio.gather(
        *(
            a.publish("ch:o", p, **({"history_size": 10, "history_ttl": 60} if i % 3 else {}))
            for i, p in enumerate(sent)
        )
    )
    assert await got.wait("ch:o", 300) == sent


async def test_subscribe_and_unsubscribe_are_idempotent(cluster: Cluster) -> None:
    """Subscribing twice delivers once; unsubscribing an unknown topic is harmless."""
    a, got = await cluster.node()
    await a.unsubscribe("ch:never")
    await a.subscribe("ch:x")
    await a.subscribe("ch:x")
    await a.publish("ch:x", b"one")
    await a.publish("ch:x", b"two")
    assert await got.wait("ch:x", 2) == [b"one", b"two"]
    assert got.payloads("ch:x") == [b"one", b"two"]


async def test_unsubscribe_stops_delivery(cluster: Cluster) -> None:
    """After unsubscribe returns, nothing more arrives for that topic."""
    a, got_a = await cluster.node()
    b, _ = await cluster.node()
    await a.subscribe("ch:gone")
    await a.subscribe("ch:kept")
    await b.publish("ch:gone", b"before")
    await got_a.wait("ch:gone", 1)
    await a.unsubscribe("ch:gone")
    await b.publish("ch:gone", b"after")
    # One publisher, one link: "after" would have arrived before this marker.
    await b.publish("ch:kept", b"marker")
    await got_a.wait("ch:kept", 1)
    assert got_a.payloads("ch:gone") == [b"before"]


async def test_handler_error_does_not_stop_delivery(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises is logged and the next publication is still delivered."""
    got = Recorder()

    def handler(topic: str, payload: bytes, position: StreamPosition | None) -> None:
        if payload == b"boom":
            raise RuntimeError("handler bug")
        got(topic, payload, position)

    broker, _ = await cluster.node(handler)
    await broker.subscribe("ch:e")
    await broker.publish("ch:e", b"boom")
    await broker.publish("ch:e", b"fine")
    assert await got.wait("ch:e", 1) == [b"fine"]
    errors = [r for r in caplog.records if r.name == "tidings.broker"]
    assert [r.levelname for r in errors] == ["ERROR"]
    caplog.clear()  # the expected ERROR must not fail the test


async def test_history_offsets_increase_by_one_with_one_epoch(cluster: Cluster) -> None:
    """Publications with history get offsets 1, 2, 3 … under one epoch, also delivered."""
    a, got_a = await cluster.node()
    b, got_b = await cluster.node()
    await b.subscribe("ch:h")
    positions = []
    for i in range(5):
        broker = a if i % 2 else b
        pos = await broker.publish("ch:h", b"p%d" % i, history_size=10, history_ttl=60)
        positions.append(pos)
    assert [p.offset for p in positions if p] == [1, 2, 3, 4, 5]
    assert len({p.epoch for p in positions if p}) == 1
    await got_b.wait("ch:h", 5)
    assert [pos for _, _, pos in got_b.got] == positions
    assert got_a.got == []


async def test_concurrent_history_publishes_are_gapless_and_ordered(cluster: Cluster) -> None:
    """Concurrent publishers get distinct gapless offsets; delivery follows offset order."""
    a, got = await cluster.node()
    b, _ = await cluster.node()
    await a.subscribe("ch:c")
    results = await asyncio.gather(
        *(
            (a if i % 2 else b).publish("ch:c", b"%d" % i, history_size=100, history_ttl=60)
            for i in range(50)
        )
    )
    assert sorted(p.offset for p in results if p) == list(range(1, 51))
    await got.wait("ch:c", 50)
    assert [pos.offset for _, _, pos in got.got if pos] == list(range(1, 51))


async def test_history_position_before_first_publication_recovers(cluster: Cluster) -> None:
    """A position read before any publication is a valid place to recover from."""
    a, _ = await cluster.node()
    empty = await a.history("ch:new", limit=0)
    assert empty.position.offset == 0
    assert empty.publications == []
    pos = await a.publish("ch:new", b"first", history_size=10, history_ttl=60)
    assert pos == StreamPosition(1, empty.position.epoch)
    result = await a.history("ch:new", since=empty.position)
    assert result.recoverable
    assert result.publications == [(1, b"first")]


async def test_recovery_returns_exactly_what_was_missed(cluster: Cluster) -> None:
    """From a position, history returns the later publications in order and recoverable."""
    a, _ = await cluster.node()
    b, _ = await cluster.node()
    seen = None
    for i in range(1, 8):
        pos = await a.publish("ch:r", b"m%d" % i, history_size=10, history_ttl=60)
        if i == 3:
            seen = pos
    assert seen is not None
    result = await b.history("ch:r", since=seen)
    assert result.recoverable
    assert result.publications == [(i, b"m%d" % i) for i in range(4, 8)]
    assert result.position.offset == 7
    page = await b.history("ch:r", since=seen, limit=2)
    assert page.recoverable
    assert page.publications == [(4, b"m4"), (5, b"m5")]
    up_to_date = await b.history("ch:r", since=result.position)
    assert up_to_date.recoverable
    assert up_to_date.publications == []


async def test_history_without_since_lists_oldest_kept(cluster: Cluster) -> None:
    """Without a position, history lists the oldest kept publications up to the limit."""
    a, _ = await cluster.node()
    for i in range(1, 6):
        await a.publish("ch:l", b"m%d" % i, history_size=3, history_ttl=60)
    result = await a.history("ch:l", limit=2)
    assert result.publications == [(3, b"m3"), (4, b"m4")]
    assert result.position.offset == 5
    assert result.recoverable
    only_position = await a.history("ch:l", limit=0)
    assert only_position.publications == []
    assert only_position.position == result.position


async def test_not_recoverable_after_trimming(cluster: Cluster) -> None:
    """When the history was trimmed past the position, recovery is refused."""
    a, _ = await cluster.node()
    first = await a.publish("ch:t", b"m1", history_size=3, history_ttl=60)
    for i in range(2, 6):
        await a.publish("ch:t", b"m%d" % i, history_size=3, history_ttl=60)
    assert first is not None
    result = await a.history("ch:t", since=first)
    assert not result.recoverable
    assert result.publications == []
    assert result.position.offset == 5
    covered = await a.history("ch:t", since=StreamPosition(2, first.epoch))
    assert covered.recoverable
    assert [offset for offset, _ in covered.publications] == [3, 4, 5]
    edge = await a.history("ch:t", since=StreamPosition(1, first.epoch), limit=0)
    assert not edge.recoverable


async def test_not_recoverable_from_another_epoch_or_the_future(cluster: Cluster) -> None:
    """A position of another epoch, or beyond the stream's top, cannot be recovered from."""
    a, _ = await cluster.node()
    pos = await a.publish("ch:e", b"m1", history_size=3, history_ttl=60)
    assert pos is not None
    other = await a.history("ch:e", since=StreamPosition(pos.offset, "not-the-epoch"))
    assert not other.recoverable
    ahead = await a.history("ch:e", since=StreamPosition(pos.offset + 5, pos.epoch))
    assert not ahead.recoverable


async def test_history_expires_but_epoch_and_offset_remain(cluster: Cluster) -> None:
    """After history_ttl without publications, history is gone and recovery is refused;
    offsets continue under the same epoch."""
    a, _ = await cluster.node()
    pos = await a.publish("ch:x", b"m1", history_size=10, history_ttl=HISTORY_TTL)
    await a.publish("ch:x", b"m2", history_size=10, history_ttl=HISTORY_TTL)
    assert pos is not None
    await cluster.history_expires("ch:x")
    result = await a.history("ch:x", since=pos)
    assert not result.recoverable
    assert result.position == StreamPosition(2, pos.epoch)
    assert (await a.history("ch:x")).publications == []
    nxt = await a.publish("ch:x", b"m3", history_size=10, history_ttl=HISTORY_TTL)
    assert nxt == StreamPosition(3, pos.epoch)


async def test_epoch_changes_when_the_stream_is_forgotten(cluster: Cluster) -> None:
    """Once the epoch and offset expire too, the stream restarts at 1 under a new epoch."""
    a, _ = await cluster.node()
    old = await a.publish("ch:y", b"m1", history_size=10, history_ttl=HISTORY_TTL)
    assert old is not None
    await cluster.meta_expires("ch:y")
    new = await a.publish("ch:y", b"n1", history_size=10, history_ttl=HISTORY_TTL)
    assert new is not None
    assert new.offset == 1
    assert new.epoch != old.epoch
    result = await a.history("ch:y", since=old)
    assert not result.recoverable
    assert result.publications == []


async def test_history_needs_a_ttl(cluster: Cluster) -> None:
    """history_size without a positive history_ttl is refused, never kept forever."""
    a, _ = await cluster.node()
    with pytest.raises(ValueError):
        await a.publish("ch:z", b"m", history_size=3)
    with pytest.raises(ValueError):
        await a.publish("ch:z", b"m", history_size=-1, history_ttl=1)


async def test_healthy_while_running(cluster: Cluster) -> None:
    """A started broker reports healthy; a closed one does not; close twice is harmless."""
    a, _ = await cluster.node()
    assert a.healthy
    await a.close()
    assert not a.healthy
    await a.close()


async def test_binary_payloads_round_trip(cluster: Cluster) -> None:
    """Payloads are opaque bytes: NUL, newlines and non-UTF-8 survive delivery and history."""
    a, got = await cluster.node()
    await a.subscribe("ch:bin")
    payload = b"\x00\x01\n:\xff\xfe" + bytes(range(256))
    await a.publish("ch:bin", payload, history_size=2, history_ttl=60)
    await a.publish("ch:bin", payload)
    assert await got.wait("ch:bin", 2) == [payload, payload]
    assert (await a.history("ch:bin")).publications == [(1, payload)]


# --- memory only --------------------------------------------------------------------------


async def test_memory_delivers_the_same_object_before_publish_returns() -> None:
    """MemoryBroker calls the handlers inside publish, with the very object published
    (no copy, no encoding), and keeps that object in history."""
    exchange = MemoryExchange()
    a, b = MemoryBroker(exchange), MemoryBroker(exchange)
    seen_a, seen_b = Recorder(), Recorder()
    await a.start(seen_a)
    await b.start(seen_b)
    await b.subscribe("ch:x")
    message = object()
    position = await a.publish("ch:x", message, history_size=5, history_ttl=60)
    assert seen_b.got == [("ch:x", message, position)]
    assert seen_a.got == []  # a did not subscribe
    assert (await a.history("ch:x")).publications[0][1] is message


async def test_memory_alone_gets_every_topic() -> None:
    """A lone node (alone=True, a single instance) needs no subscriptions."""
    broker = MemoryBroker(alone=True)
    seen = Recorder()
    await broker.start(seen)
    await broker.publish("user:u1", b"m")
    assert seen.got == [("user:u1", b"m", None)]


# --- Redis only ---------------------------------------------------------------------------


async def test_redis_codec_encodes_once_and_decodes_for_handlers_and_history() -> None:
    """A RedisBroker built with a codec publishes objects: handlers and history get them
    back decoded."""
    prefix = f"tidings-test:{secrets.token_hex(4)}:"
    encoded: list[object] = []

    def encode(message: object) -> bytes:
        encoded.append(message)
        return repr(message).encode()

    def decode(data: bytes) -> object:
        return ("decoded", data.decode())

    broker = RedisBroker(REDIS_URL, prefix=prefix, encode=encode, decode=decode)
    seen = Recorder()
    await broker.start(seen)
    try:
        await broker.subscribe("ch:c")
        await broker.publish("ch:c", (1, "x"), history_size=3, history_ttl=60)
        got = await seen.wait("ch:c", 1)
        assert got == [("decoded", "(1, 'x')")]
        assert encoded == [(1, "x")]
        history = await broker.history("ch:c")
        assert [m for _, m in history.publications] == [("decoded", "(1, 'x')")]
    finally:
        await broker.close()


@pytest.fixture
async def redis_cluster() -> AsyncIterator[Cluster]:
    """A Redis cluster with a prefix of its own."""
    c = Cluster("redis")
    try:
        yield c
    finally:
        await c.close()


async def _kill_link(admin: aioredis.Redis, broker: RedisBroker) -> None:
    """Kill this broker's pub/sub connection only (other users of the Redis are spared)."""
    clients = await admin.client_list(_type="pubsub")
    ids = [c["id"] for c in clients if c.get("name") == f"tidings-broker-{broker.node_id}"]
    assert len(ids) == 1
    await admin.client_kill_filter(_id=ids[0])


async def test_redis_resubscribes_after_losing_its_link(redis_cluster: Cluster) -> None:
    """A killed pub/sub link is noticed (unhealthy), restored with every topic, and delivers."""
    node, got = await redis_cluster.node()
    assert isinstance(node, RedisBroker)
    await node.subscribe("ch:a")
    await node.subscribe("user:7")
    await node.publish("ch:a", b"before")
    await got.wait("ch:a", 1)
    await _kill_link(redis_cluster.admin, node)
    async with asyncio.timeout(TIMEOUT):
        await node.wait_until(lambda: not node.healthy or node.connects >= 2)
        # A second connect means the link went down and came back.
        await node.wait_until(lambda: node.connects >= 2 and node.healthy)
    await node.publish("ch:a", b"after")
    await node.publish("user:7", b"hi")
    assert await got.wait("ch:a", 2) == [b"before", b"after"]
    assert await got.wait("user:7", 1) == [b"hi"]


async def test_redis_subscribe_while_link_is_down_applies_on_reconnect(
    redis_cluster: Cluster,
) -> None:
    """A topic subscribed while the link is down is active once the link is back."""
    node, got = await redis_cluster.node()
    assert isinstance(node, RedisBroker)
    await _kill_link(redis_cluster.admin, node)
    await node.subscribe("ch:late")
    async with asyncio.timeout(TIMEOUT):
        await node.wait_until(lambda: node.connects >= 2 and node.healthy)
    await node.publish("ch:late", b"x")
    assert await got.wait("ch:late", 1) == [b"x"]


async def test_redis_unreachable_fails_start_and_publish() -> None:
    """No Redis at the URL: start raises BrokerError, and so does publish."""
    broker = RedisBroker("redis://127.0.0.1:1/0", prefix="test:none:")
    with pytest.raises(BrokerError):
        await broker.start(Recorder())
    with pytest.raises(BrokerError):
        await broker.publish("ch:a", b"x")
    with pytest.raises(BrokerError):
        await broker.history("ch:a")
    assert not broker.healthy
    await broker.close()


async def test_guarded_publication_is_delivered_when_every_link_is_up(cluster: Cluster) -> None:
    """With every node's link subscribed, a guarded publication is taken and delivered."""
    a, got_a = await cluster.node()
    b, got_b = await cluster.node()
    for node in (a, b):
        await node.subscribe("ch:g")
    assert b.members == 2  # the later node knows both at once; a learns of b by its next beat
    await a.publish("ch:g", b"one", guarded=True)
    assert await got_a.wait("ch:g", 1) == [b"one"]
    assert await got_b.wait("ch:g", 1) == [b"one"]


async def test_redis_guarded_publication_refused_while_a_member_has_no_link(
    redis_cluster: Cluster,
) -> None:
    """A live member whose link is not subscribed makes a guarded publication fail with
    nothing sent; unguarded ones still go; once the member is gone the same guarded
    publication is taken."""
    admin, p = redis_cluster.admin, redis_cluster.prefix
    # A member that beats but has no pub/sub link (as one reconnecting after an outage).
    await admin.set(f"{p}member:ghost", b"1", px=60_000)
    await admin.sadd(f"{p}members", "ghost")
    node, got = await redis_cluster.node()
    assert node.members == 2
    await node.subscribe("ch:g")
    with pytest.raises(BrokerError, match="not subscribed"):
        await node.publish("ch:g", b"refused", guarded=True)
    await node.publish("ch:g", b"plain")
    await node.publish("ch:g", b"kept", history_size=5, history_ttl=60)
    assert await got.wait("ch:g", 2) == [b"plain", b"kept"]
    # The ghost's entry expires: the next refusal re-reads the members and sends again.
    await admin.delete(f"{p}member:ghost")
    await node.publish("ch:g", b"taken", guarded=True)
    assert await got.wait("ch:g", 3) == [b"plain", b"kept", b"taken"]
    assert node.members == 1
