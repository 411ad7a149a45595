"""fanout-cluster(-100ch): two tidings instances on one Redis next to one instance.

Three set-ups are up at once, each with its own N subscribers (on channel `bench`, or
on `bench:0`..`bench:99` for fanout-cluster-100ch):

* `1 memory`: one instance, `broker_url` memory (the single-node default), core 0;
* `1 redis`: one instance on Redis, alone in its cluster (what the broker itself costs), core 0;
* `2 redis`: two instances on Redis (one cluster), N/2 subscribers on each; publication
  k goes to instance k mod 2. Instance A is pinned to core 0, instance B to core 1.

Measured rounds alternate between the set-ups (A B C, C B A, ...), as in the other
fan-out scenarios. The machine has two cores, so the load generator cannot have a core
of its own while two instances run: during `2 redis` rounds it may run on both cores
(the scheduler places it), otherwise on core 1. That is why the verdict is on capacity,
deliveries per server-CPU-second, rather than on the wall-clock rate. See
bench/README.md, "Cluster scenarios".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import secrets
import statistics
import time
from pathlib import Path

import redis.asyncio as aioredis
from common import (
    API_KEY,
    HOST,
    SECRET,
    BenchError,
    DeliveryTimeout,
    Metric,
    Params,
    Result,
    check_server,
    connect_many,
    reach,
)
from redis.exceptions import RedisError
from servers import (
    LOADGEN_CORE,
    SERVER_CORE,
    RunningServer,
    ServerSpec,
    ServerUnavailable,
    core_busy_seconds,
    self_cpu_seconds,
    start_server,
    tidings_spec,
)
from wsload import PUB_TYPE, Publisher, Tally, WsSubscriber

REDIS_URL = os.environ.get("TIDINGS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# Bounds on the cleanup of the run's Redis keys (count and time).
CLEANUP_MAX_KEYS = 200_000
CLEANUP_SECONDS = 10.0

METRICS: list[Metric] = [
    Metric("mem1_deliveries_per_s", "1 instance, memory: deliveries/s", "{:,.0f}"),
    Metric("mem1_cpu_us", "1 instance, memory: server CPU µs/delivery", "{:.2f}"),
    Metric("redis1_deliveries_per_s", "1 instance, Redis: deliveries/s", "{:,.0f}"),
    Metric("redis1_cpu_us", "1 instance, Redis: server CPU µs/delivery", "{:.2f}"),
    Metric("redis2_deliveries_per_s", "2 instances, Redis: deliveries/s", "{:,.0f}"),
    Metric("redis2_cpu_us", "2 instances, Redis: server CPU µs/delivery (sum)", "{:.2f}"),
    Metric("redis2_redis_publish_us_per_call", "2 instances, Redis: PUBLISH µs in Redis", "{:.1f}"),
    Metric("mem1_wakeups_per_pub", "1 instance, memory: server wake-ups/publication", "{:.2f}"),
    Metric("redis1_wakeups_per_pub", "1 instance, Redis: server wake-ups/publication", "{:.2f}"),
    Metric("redis2_wakeups_per_pub", "2 instances, Redis: wake-ups/publication (sum)", "{:.2f}"),
    Metric("measured_ratio", "2 vs 1 instance: measured deliveries/s (2 cores)", "{:.2f}x"),
    Metric("mem1_capacity", "1 instance: capacity, deliveries/s on 1 server core", "{:,.0f}"),
    Metric("redis2_capacity", "2 instances: capacity, deliveries/s on 2 cores", "{:,.0f}"),
    Metric("capacity_ratio", "2 vs 1 instance: capacity", "{:.2f}x", ("min", 1.6)),
    Metric("capacity_ratio_redis1", "2 vs 1 instance on Redis: capacity", "{:.2f}x"),
]

# Short keys of the set-ups in the metrics.
_KEY = {"1 memory": "mem1", "1 redis": "redis1", "2 redis": "redis2"}


async def redis_counters(client: aioredis.Redis) -> tuple[float, int, int]:
    """redis-server's CPU seconds (INFO cpu: getrusage figures in µs, finer than
    /proc's 10 ms ticks, which a round's few hundred PUBLISHes would not reach),
    and its PUBLISH calls and the µs spent executing them (INFO commandstats).
    Both count every client of that Redis, not only this run's instances."""
    cpu = await client.info("cpu")
    stats = (await client.info("commandstats")).get("cmdstat_publish", {})
    return (
        float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        int(stats.get("calls", 0)),
        int(stats.get("usec", 0)),
    )


class ClusterWindow:
    """CPU accounting of one measured round over several servers: their CPU time
    (summed), the load generator's, redis-server's, and both cores' busy and
    stolen time, so that work by anything else on the machine can be reported."""

    def __init__(
        self, servers: list[RunningServer], redis: tuple[float, int, int], uses_redis: bool
    ) -> None:
        self.servers = servers
        self.redis0 = redis
        # Redis working for other clients is disturbance like any other process.
        self.uses_redis = uses_redis
        self.t0 = time.perf_counter()
        self.cpu0 = [s.cpu_seconds() for s in servers]
        self.wake0 = sum(s.wakeups() for s in servers)
        self.self0 = self_cpu_seconds()
        self.cores0 = [core_busy_seconds(c) for c in (SERVER_CORE, LOADGEN_CORE)]

    def close(
        self, notes: list[str], label: str, redis_now: tuple[float, int, int]
    ) -> dict[str, float]:
        """End the window (`redis_now`: redis_counters() now)."""
        wall = time.perf_counter() - self.t0
        per = [s.cpu_seconds() - c0 for s, c0 in zip(self.servers, self.cpu0, strict=True)]
        own = self_cpu_seconds() - self.self0
        wakeups = sum(s.wakeups() for s in self.servers) - self.wake0
        redis, calls, usec = (b - a for a, b in zip(self.redis0, redis_now, strict=True))
        cores = [core_busy_seconds(c) for c in (SERVER_CORE, LOADGEN_CORE)]
        busy = sum(c[0] - c0[0] for c, c0 in zip(cores, self.cores0, strict=True))
        steal = sum(c[1] - c0[1] for c, c0 in zip(cores, self.cores0, strict=True))
        out = {
            "wall_s": wall,
            "server_cpu_s": sum(per),
            "wakeups": wakeups,
            "loadgen_util": own / wall,
            "redis_util": redis / wall,
            "redis_cpu_s": redis,
            "redis_publish_calls": calls,
            "redis_publish_us_per_call": usec / calls if calls else 0.0,
            # Busy time of the two cores not spent in the servers, the load
            # generator or redis-server (in cores: 0.1 = 10% of one core).
            "foreign": max(0.0, busy - sum(per) - own - (redis if self.uses_redis else 0.0)) / wall,
            "steal": steal / wall,
        }
        for i, cpu in enumerate(per):
            out[f"util_{'ab'[i]}"] = cpu / wall
        if out["foreign"] > 0.1 or out["steal"] > 0.05:
            notes.append(
                f"{label}: machine disturbed: {out['foreign']:.0%} of a core busy with other "
                f"work, {out['steal']:.0%} stolen by the hypervisor: numbers may be noisy"
            )
        return out


@dataclasses.dataclass(frozen=True)
class Shape:
    """The traffic of a cluster scenario: that of fanout-1ch or fanout-100ch."""

    n_channels: int
    conns: int
    pubs: int  # per measured round
    warmup: int  # publications
    window: int  # deliveries outstanding at the clients, at most
    workers: int  # publishing workers (= HTTP connections per instance)
    time_cap: float  # seconds per round, at most

    @classmethod
    def of(cls, p: Params, n_channels: int) -> Shape:
        if n_channels == 1:
            # 3 publications outstanding, 2 workers, as fanout-1ch.
            return cls(
                1, p.fan_conns, p.fan1_pubs, p.fan1_warmup, 3 * p.fan_conns, 2, p.fan_time_cap
            )
        return cls(n_channels, p.fan_conns, p.fan100_pubs, p.fan100_warmup, 400, 8, p.fan_time_cap)

    @property
    def per_pub(self) -> int:
        return self.conns // self.n_channels

    def channel(self, i: int) -> str:
        """Channel of subscriber i and of publication i (round-robin)."""
        return "bench" if self.n_channels == 1 else f"bench:{i % self.n_channels}"


@dataclasses.dataclass
class Setup:
    """One set-up: its servers, its N subscribers (split evenly over the servers,
    one shared delivery count), a publisher per server, and its rounds."""

    name: str
    servers: list[RunningServer]
    loadgen_cores: set[int]
    shape: Shape
    tally: Tally = dataclasses.field(default_factory=Tally)
    subs: list[WsSubscriber] = dataclasses.field(default_factory=list)
    pubs: list[Publisher] = dataclasses.field(default_factory=list)
    rounds: list[dict[str, float]] = dataclasses.field(default_factory=list)

    async def prepare(self) -> None:
        """Connect and subscribe the clients (subscriber i on the i-th share of
        the servers), then an unmeasured warm-up."""
        shape, k = self.shape, len(self.servers)
        for i, server in enumerate(self.servers):
            part = range(i * shape.conns // k, (i + 1) * shape.conns // k)
            self.subs += await connect_many(server, self.tally, part, shape.channel)
            pub = Publisher(HOST, server.port, API_KEY, size=shape.workers)
            await pub.start()
            self.pubs.append(pub)
        issued, _ = await self.publish_paced(shape.warmup, 30.0)
        await reach(self.tally, issued * shape.per_pub)
        for server in self.servers:
            check_server(server)

    async def publish_paced(self, count: int, time_cap: float) -> tuple[int, int]:
        """Up to `count` publications, publication k through server k mod the
        number of servers, never more than `shape.window` deliveries
        outstanding at the clients (as run.paced_publish). Returns
        (publications issued, sum of the local `delivered` answers; a cluster
        answers null, so only a single memory instance reports a count)."""
        shape = self.shape
        base = self.tally.delivered
        next_k = 0
        reported = 0
        deadline = time.monotonic() + time_cap

        async def worker() -> None:
            nonlocal next_k, reported
            while next_k < count and time.monotonic() < deadline:
                k = next_k
                next_k += 1
                await reach(self.tally, base + (k + 1) * shape.per_pub - shape.window)
                pub = self.pubs[k % len(self.pubs)]
                got = await publish(pub, shape.channel(k), k)
                reported += got or 0

        await asyncio.gather(*(worker() for _ in range(shape.workers)))
        return next_k, reported

    async def measure_round(self, rnd: int, redis: aioredis.Redis, notes: list[str]) -> None:
        label = f"{self.name} round {rnd}"
        tally, shape, n = self.tally, self.shape, self.shape.per_pub
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, self.loadgen_cores)
        gc.collect()
        gc.disable()  # no collector pauses in the load generator mid-window
        try:
            d0 = tally.delivered
            win = ClusterWindow(self.servers, await redis_counters(redis), self.name != "1 memory")
            issued, reported = await self.publish_paced(shape.pubs, shape.time_cap)
            expected = d0 + issued * n
            try:
                await reach(tally, expected)
            except DeliveryTimeout:
                notes.append(f"{label}: lost {expected - tally.delivered} of {issued * n}")
            r = win.close(notes, label, await redis_counters(redis))
        finally:
            gc.enable()
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {LOADGEN_CORE})
        for server in self.servers:
            check_server(server)
        delivered = tally.delivered - d0
        if delivered <= 0:
            raise BenchError(f"{label}: no deliveries in the measured window")
        if self.name == "1 memory" and reported != issued * n:
            notes.append(f"{label}: server reported delivered={reported}, expected {issued * n}")
        if issued < shape.pubs:
            notes.append(f"{label}: time cap hit after {issued}/{shape.pubs} publications")
        r["deliveries"] = delivered
        r["deliveries_per_s"] = delivered / r["wall_s"]
        r["cpu_us"] = r["server_cpu_s"] * 1e6 / delivered
        r["wakeups_per_pub"] = r["wakeups"] / issued
        self.rounds.append(r)

    def close(self) -> None:
        for pub in self.pubs:
            pub.close()
        for sub in self.subs:
            sub.close()


async def publish(pub: Publisher, channel: str, k: int) -> int | None:
    """POST one publication; return the server's `delivered` (null in a cluster)."""
    body = json.dumps(
        {"channel": channel, "type": PUB_TYPE, "data": {"seq": k, "msg": "benchmark notification"}},
        separators=(",", ":"),
    ).encode()
    status, resp, _ = await pub.post("/api/publish", body)
    if status != 200:
        raise RuntimeError(f"publish -> HTTP {status}: {resp[:300]!r}")
    try:
        delivered = json.loads(resp)["delivered"]
    except (ValueError, KeyError, TypeError) as e:
        raise RuntimeError(f"publish response without delivered: {resp[:300]!r}") from e
    return delivered if isinstance(delivered, int) else None


def instance_spec(broker: str | None, prefix: str, store: str | None) -> ServerSpec:
    """tidings as in the other scenarios, on the memory broker (broker None) or on
    Redis with the given key prefix; `store` shares one SQLite file in a cluster."""
    spec = tidings_spec(SECRET, API_KEY)
    env = dict(spec.env)
    if broker is not None:
        env["TIDINGS_BROKER_URL"] = broker
        env["TIDINGS_BROKER_PREFIX"] = prefix
    if store is not None:
        env["TIDINGS_STORE_URL"] = store
    return dataclasses.replace(spec, env=env)


async def delete_prefix(client: aioredis.Redis, prefix: str) -> int:
    """Delete the run's keys (bounded in count and time); return how many."""
    deleted = 0
    async with asyncio.timeout(CLEANUP_SECONDS):
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.delete(*batch)
                batch.clear()
            if deleted + len(batch) >= CLEANUP_MAX_KEYS:
                break
        if batch:
            deleted += await client.delete(*batch)
    return deleted


async def run_cluster(p: Params, log_dir: Path, n_channels: int) -> Result:
    """The fanout-cluster scenario (see the module docstring) on 1 channel or on
    `n_channels` channels (fanout-cluster-100ch)."""
    res = Result()
    shape = Shape.of(p, n_channels)
    prefix = f"tidings-bench-{os.getpid()}-{secrets.token_hex(4)}:"
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await redis_counters(client)
    except (RedisError, OSError) as e:
        await client.aclose()
        res.error = f"Redis not reachable at {REDIS_URL}: {e}"
        return res
    two_cores = (os.cpu_count() or 1) > LOADGEN_CORE
    servers: list[RunningServer] = []
    setups: list[Setup] = []
    try:
        shared_store = str(Path(log_dir) / f"cluster-{secrets.token_hex(4)}.db")
        plan = [
            ("1 memory", [(instance_spec(None, "", None), SERVER_CORE)]),
            ("1 redis", [(instance_spec(REDIS_URL, prefix + "one:", None), SERVER_CORE)]),
            (
                "2 redis",
                [
                    (instance_spec(REDIS_URL, prefix + "two:", shared_store), SERVER_CORE),
                    (
                        instance_spec(REDIS_URL, prefix + "two:", shared_store),
                        LOADGEN_CORE if two_cores else SERVER_CORE,
                    ),
                ],
            ),
        ]
        for name, specs in plan:
            up: list[RunningServer] = []
            for i, (spec, core) in enumerate(specs):
                scenario = "fanout-cluster" + ("" if n_channels == 1 else f"-{n_channels}ch")
                label = f"{scenario}.{_KEY[name]}{'ab'[i] if len(specs) > 1 else ''}"
                server = await start_server(spec, log_dir, label, core=core)
                servers.append(server)
                up.append(server)
            # With two instances no core is left for the load generator: the
            # scheduler places it on either core.
            cores = {SERVER_CORE, LOADGEN_CORE} if len(up) > 1 else {LOADGEN_CORE}
            setups.append(Setup(name, up, cores if two_cores else {SERVER_CORE}, shape))
        for setup in setups:
            await setup.prepare()
        for rnd in range(p.fan_rounds):
            for setup in setups if rnd % 2 == 0 else reversed(setups):
                await setup.measure_round(rnd, client, res.notes)
        summarise(setups, res)
    except ServerUnavailable as e:
        res.error = f"unavailable: {e}"
    except BenchError as e:
        res.error = str(e)
    except (RuntimeError, OSError, TimeoutError, ConnectionError) as e:
        tails = [s.log_tail() for s in servers if not s.alive()]
        res.error = f"{type(e).__name__}: {e}" + "".join(f"\nlog tail:\n{t}" for t in tails)
    finally:
        for setup in setups:
            setup.close()
        for server in servers:
            await server.stop()
        try:
            deleted = await delete_prefix(client, prefix)
            res.notes.append(f"Redis prefix {prefix!r}: {deleted} keys deleted after the run")
        except (RedisError, OSError, TimeoutError) as e:
            res.notes.append(f"could not delete the keys of Redis prefix {prefix!r}: {e}")
        await client.aclose()
        # Let the kernel tear down the sockets before the next scenario.
        await asyncio.sleep(0.5)
    return res


def summarise(setups: list[Setup], res: Result) -> None:
    """Medians per set-up into res.metrics, ratios, and per-round notes."""
    m = res.metrics
    by = {s.name: s for s in setups}
    for setup in setups:
        key = _KEY[setup.name]
        for field in (
            "deliveries_per_s",
            "cpu_us",
            "redis_util",
            "redis_publish_us_per_call",
            "loadgen_util",
            "foreign",
            "wakeups_per_pub",
        ):
            m[f"{key}_{field}"] = statistics.median(r[field] for r in setup.rounds)
        for field in ("util_a", "util_b"):
            if field in setup.rounds[0]:
                m[f"{key}_{field}"] = statistics.median(r[field] for r in setup.rounds)
        res.notes.append(
            f"{setup.name}: per-round deliveries/s "
            + ", ".join(f"{r['deliveries_per_s']:,.0f}" for r in setup.rounds)
            + "; CPU µs/delivery "
            + ", ".join(f"{r['cpu_us']:.2f}" for r in setup.rounds)
        )
    one, two = by["1 memory"], by["2 redis"]
    m["measured_ratio"] = m["redis2_deliveries_per_s"] / m["mem1_deliveries_per_s"]
    # Capacity: what each instance delivers per second of its own CPU, times the
    # number of instances, i.e. the rate with every instance on a core of its own
    # (and the load generator and Redis elsewhere).
    m["mem1_capacity"] = 1e6 / m["mem1_cpu_us"]
    m["redis1_capacity"] = 1e6 / m["redis1_cpu_us"]
    m["redis2_capacity"] = 2e6 / m["redis2_cpu_us"]
    m["capacity_ratio"] = m["redis2_capacity"] / m["mem1_capacity"]
    m["capacity_ratio_redis1"] = m["redis2_capacity"] / m["redis1_capacity"]
    # Rounds of one cycle ran back to back: the spread of these ratios shows
    # how much of the machine's noise cancels.
    per_round = [2 * a["cpu_us"] / b["cpu_us"] for a, b in zip(one.rounds, two.rounds, strict=True)]
    res.notes.append("per-round capacity ratio: " + ", ".join(f"{x:.2f}" for x in per_round))
