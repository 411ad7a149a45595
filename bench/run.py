"""tidings benchmark: every scenario against tidings AND the guide-001 Node
reference in the same run, side by side.

    .venv/bin/python bench/run.py            # full run (~2 min)
    .venv/bin/python bench/run.py --quick    # smoke run (<1 min)
    .venv/bin/python bench/run.py --only fanout-1ch --servers node

Servers run pinned to core 0, this process (the load generator) to core 1.
See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from servers import (
    LOADGEN_CORE,
    SERVER_CORE,
    RunningServer,
    ServerSpec,
    ServerUnavailable,
    core_busy_seconds,
    node_spec,
    raise_nofile,
    self_cpu_seconds,
    start_server,
    tidings_spec,
)
from wsload import Publisher, Tally, WsSubscriber, open_subscriber

HOST = "127.0.0.1"
SECRET = "bench-secret-" + "x" * 32  # HS256 key; >= 32 bytes so PyJWT doesn't warn
API_KEY = "bench-api-key"
CONNECT_CONCURRENCY = 200
SETUP_TIMEOUT = 30.0
DRAIN_TIMEOUT = 20.0


class BenchError(RuntimeError):
    """The scenario could not produce a valid measurement on this server."""


# ---------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class Params:
    fan_conns: int
    fan1_pubs: int
    fan1_warmup: int
    fan100_pubs: int
    fan100_warmup: int
    fan_time_cap: float
    fan_rounds: int
    steady_conns: int
    steady_rate: float  # publications per second
    steady_warmup_s: float
    steady_seconds: float
    idle_conns: int
    idle_broadcasts: int


FULL = Params(
    fan_conns=2000,
    fan1_pubs=150,
    fan1_warmup=30,
    fan100_pubs=8000,
    fan100_warmup=1500,
    fan_time_cap=15.0,
    # Back-to-back tidings/node round pairs vary by about ±0.08 in their
    # ratio on the development VM; the median of 5 settles the verdict.
    fan_rounds=5,
    steady_conns=1000,
    steady_rate=10.0,
    steady_warmup_s=1.0,
    steady_seconds=10.0,
    idle_conns=10000,
    idle_broadcasts=3,
)

QUICK = Params(
    fan_conns=2000,
    fan1_pubs=40,
    fan1_warmup=20,
    fan100_pubs=2000,
    # V8 needs this much to optimise the guide's per-client channel scan; with
    # 500 the Node figure came out ~1.7x worse than in the full run.
    fan100_warmup=1500,
    fan_time_cap=8.0,
    fan_rounds=3,
    steady_conns=1000,
    steady_rate=10.0,
    steady_warmup_s=0.5,
    steady_seconds=3.0,
    idle_conns=3000,
    idle_broadcasts=2,
)


# ---------------------------------------------------------------------------
# Results


@dataclass
class Result:
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    fmt: str
    # Target: ("ratio", max tidings/node) or ("abs", max tidings value) or None.
    target: tuple[str, float] | None = None


SCENARIO_METRICS: dict[str, list[Metric]] = {
    "fanout-1ch": [
        Metric("deliveries_per_s", "deliveries/s", "{:,.0f}"),
        Metric("cpu_us_per_delivery", "server CPU µs/delivery", "{:.2f}", ("ratio", 0.75)),
        Metric("server_util", "server core busy", "{:.0%}"),
    ],
    "fanout-100ch": [
        Metric("deliveries_per_s", "deliveries/s", "{:,.0f}"),
        Metric("cpu_us_per_delivery", "server CPU µs/delivery", "{:.2f}", ("ratio", 0.5)),
        Metric("server_util", "server core busy", "{:.0%}"),
    ],
    "steady": [
        Metric("p50_ms", "latency p50 ms", "{:.2f}"),
        Metric("p99_ms", "latency p99 ms", "{:.2f}", ("abs", 10.0)),
        Metric("max_ms", "latency max ms", "{:.2f}"),
        Metric("cpu_us_per_delivery", "server CPU µs/delivery", "{:.2f}"),
    ],
    "idle": [
        Metric("rss_kib_per_conn", "RSS KiB/connection", "{:.2f}", ("abs", 20.0)),
        Metric("broadcast_ms", "broadcast-to-all ms (median)", "{:.1f}"),
    ],
}


# ---------------------------------------------------------------------------
# Connection management


class Tokens:
    """HS256 JWTs, one distinct user per connection, minted once per run."""

    def __init__(self) -> None:
        self._cache: list[tuple[str, str]] = []

    def get(self, i: int) -> tuple[str, str]:
        exp = int(time.time()) + 3600
        while len(self._cache) <= i:
            uid = f"bench-user-{len(self._cache)}"
            tok = jwt.encode({"sub": uid, "userId": uid, "exp": exp}, SECRET, algorithm="HS256")
            self._cache.append((uid, tok))
        return self._cache[i]


TOKENS = Tokens()


async def connect_many(
    server: RunningServer,
    tally: Tally,
    indices: range,
    channel_of: Callable[[int], str],
) -> list[WsSubscriber]:
    """Open, authenticate and subscribe one connection per index, at most
    CONNECT_CONCURRENCY handshakes in flight (a burst of 10k SYNs would
    overflow the accept backlog and measure TCP retransmits instead)."""
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    out: list[WsSubscriber] = []
    errors: list[str] = []

    async def one(i: int) -> None:
        uid, tok = TOKENS.get(i)
        path = f"/ws?token={tok}"
        if server.spec.wants_user_id_param:
            path += f"&userId={uid}"
        async with sem:
            if errors and len(errors) >= 20:
                return  # clearly broken: stop hammering
            try:
                async with asyncio.timeout(SETUP_TIMEOUT):
                    sub = await open_subscriber(tally, HOST, server.port, path, channel_of(i))
            except (OSError, TimeoutError, ConnectionError) as e:
                errors.append(f"{type(e).__name__}: {e}")
                return
            first = (sub.first_msg or {}).get("type")
            if first != server.spec.first_type:
                sub.close()
                errors.append(f"first message type {first!r}, expected {server.spec.first_type!r}")
                return
            out.append(sub)

    for i in indices:
        TOKENS.get(i)  # mint up front, outside the timed connect loop
    await asyncio.gather(*(one(i) for i in indices))
    if errors:
        for s in out:
            s.close()
        raise BenchError(
            f"{len(errors)} connection setups failed ({len(out)}/{len(indices)} connected "
            f"before giving up); first error: {errors[0]}"
        )
    return out


class Window:
    """CPU accounting for one measured window: the server's CPU time, the
    load generator's, and both cores' busy/steal time from /proc/stat, so
    that work by anything else on either core can be reported."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.t0 = time.perf_counter()
        self.cpu0 = server.cpu_seconds()
        self.self0 = self_cpu_seconds()
        self.core0 = core_busy_seconds(SERVER_CORE)
        self.lg0 = core_busy_seconds(LOADGEN_CORE)

    def close(self, res: Result) -> dict[str, float]:
        """End the window; return its figures and add a note to `res` if
        either core was disturbed."""
        wall = time.perf_counter() - self.t0
        server_cpu = self.server.cpu_seconds() - self.cpu0
        own_cpu = self_cpu_seconds() - self.self0
        core0, lg = core_busy_seconds(SERVER_CORE), core_busy_seconds(LOADGEN_CORE)
        out = {
            "wall_s": wall,
            "server_cpu_s": server_cpu,
            "server_util": server_cpu / wall,
            "loadgen_util": own_cpu / wall,
            # Busy time on each core not spent in the process pinned there.
            "core0_foreign": max(0.0, core0[0] - self.core0[0] - server_cpu) / wall,
            "core1_foreign": max(0.0, lg[0] - self.lg0[0] - own_cpu) / wall,
            "steal": (core0[1] - self.core0[1] + lg[1] - self.lg0[1]) / wall,
        }
        if out["core0_foreign"] > 0.1 or out["core1_foreign"] > 0.1 or out["steal"] > 0.05:
            res.notes.append(
                f"cores disturbed: server core {out['core0_foreign']:.0%} busy with other work, "
                f"load-generator core {out['core1_foreign']:.0%}, {out['steal']:.0%} stolen "
                "by the hypervisor: numbers may be noisy, rerun on a quiet machine"
            )
        return out


class DeliveryTimeout(BenchError):
    pass


async def reach(tally: Tally, threshold: int) -> int:
    """tally.reach() bounded by DRAIN_TIMEOUT: a lost message must fail the
    scenario, not hang the run. Returns the perf_counter_ns it was reached."""
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT):
            return await tally.reach(threshold)
    except TimeoutError:
        raise DeliveryTimeout(
            f"no progress for {DRAIN_TIMEOUT:.0f}s: {tally.delivered} deliveries received, "
            f"waiting for {threshold}"
        ) from None


def check_server(server: RunningServer) -> None:
    if not server.alive():
        raise BenchError(
            f"{server.spec.name} died (rc={server.proc.returncode}); log tail:\n{server.log_tail()}"
        )


# ---------------------------------------------------------------------------
# Scenarios


async def paced_publish(
    pub: Publisher,
    tally: Tally,
    count: int,
    per_pub: int,
    window: int,
    channel_of: Callable[[int], str],
    workers: int,
    time_cap: float,
) -> tuple[int, int]:
    """Publish up to `count` publications, never letting more than `window`
    deliveries be outstanding at the clients (so neither the server's send
    buffers nor the client's backlog grow without bound, and we measure the
    server's steady per-delivery cost instead of queueing). Returns
    (publications issued, sum of the server's `delivered` answers)."""
    base = tally.delivered
    next_k = 0
    reported = 0
    deadline = time.monotonic() + time_cap

    async def worker() -> None:
        nonlocal next_k, reported
        while next_k < count and time.monotonic() < deadline:
            k = next_k
            next_k += 1
            await reach(tally, base + (k + 1) * per_pub - window)
            # (await first: `reported += await ...` would read `reported`
            # before suspending and lose the other workers' increments)
            got = await pub.publish(channel_of(k), {"seq": k, "msg": "benchmark notification"})
            reported += got

    await asyncio.gather(*(worker() for _ in range(workers)))
    return next_k, reported


class FanoutRig:
    """One server's side of a fan-out scenario: its subscribers, publisher
    and per-round figures. Rounds of several rigs are interleaved by
    run_fanout so that slow spells of the shared VM hit both servers."""

    def __init__(self, server: RunningServer, p: Params, n_channels: int) -> None:
        self.server = server
        self.res = Result()
        self.tally = Tally()
        self.n_channels = n_channels
        self.channels = ["bench"] if n_channels == 1 else [f"bench:{c}" for c in range(n_channels)]
        self.per_pub = p.fan_conns // n_channels
        self.n = p.fan_conns
        # Outstanding-delivery window: a few publications for one channel;
        # for 100 channels enough parallel requests to keep the server busy.
        self.window = 3 * self.per_pub if n_channels == 1 else 400
        self.workers = 2 if n_channels == 1 else 8
        self.pubs, self.warm = (
            (p.fan1_pubs, p.fan1_warmup) if n_channels == 1 else (p.fan100_pubs, p.fan100_warmup)
        )
        self.time_cap = p.fan_time_cap
        self.subs: list[WsSubscriber] = []
        self.pub = Publisher(HOST, server.port, server.spec.api_key, size=self.workers)
        self.rounds: list[dict[str, float]] = []

    def channel_of(self, k: int) -> str:
        return self.channels[k % self.n_channels]

    async def prepare(self) -> None:
        """Connect, subscribe, and warm up (JIT, allocator, lazy imports);
        nothing here is measured."""
        self.subs = await connect_many(
            self.server, self.tally, range(self.n), lambda i: self.channels[i % self.n_channels]
        )
        await self.pub.start()
        issued, _ = await paced_publish(
            self.pub,
            self.tally,
            self.warm,
            self.per_pub,
            self.window,
            self.channel_of,
            self.workers,
            30.0,
        )
        await reach(self.tally, issued * self.per_pub)
        check_server(self.server)

    async def measure_round(self, rnd: int) -> None:
        tally, res, per_pub = self.tally, self.res, self.per_pub
        gc.collect()
        gc.disable()  # no collector pauses in the load generator mid-window
        try:
            d0 = tally.delivered
            win = Window(self.server)
            issued, reported = await paced_publish(
                self.pub,
                tally,
                self.pubs,
                per_pub,
                self.window,
                self.channel_of,
                self.workers,
                self.time_cap,
            )
            expected = d0 + issued * per_pub
            try:
                await reach(tally, expected)
            except DeliveryTimeout:
                res.notes.append(
                    f"round {rnd}: lost {expected - tally.delivered} "
                    f"of {issued * per_pub} deliveries"
                )
            r = win.close(res)
        finally:
            gc.enable()
        check_server(self.server)
        delivered = tally.delivered - d0
        if delivered <= 0:
            raise BenchError("no deliveries in the measured window")
        if reported != issued * per_pub:
            res.notes.append(
                f"round {rnd}: server reported delivered={reported}, expected {issued * per_pub}"
            )
        if issued < self.pubs:
            res.notes.append(f"round {rnd}: time cap hit after {issued}/{self.pubs} publications")
        r["deliveries"] = delivered
        r["deliveries_per_s"] = delivered / r["wall_s"]
        r["cpu_us_per_delivery"] = r["server_cpu_s"] * 1e6 / delivered
        self.rounds.append(r)

    def finish(self) -> Result:
        res = self.res
        if res.error is not None:
            return res
        for key in self.rounds[0]:
            res.metrics[key] = statistics.median(r[key] for r in self.rounds)
        if len(self.rounds) > 1:
            res.notes.append(
                "per-round CPU µs/delivery: "
                + ", ".join(f"{r['cpu_us_per_delivery']:.2f}" for r in self.rounds)
            )
        if res.metrics["loadgen_util"] > 0.9 and res.metrics["server_util"] < 0.9:
            res.notes.append("load generator >90% busy, server not: throughput is client-bound")
        if self.tally.unexpected_closes:
            res.notes.append(f"{self.tally.unexpected_closes} connections closed by the server")
        return res

    def close(self) -> None:
        self.pub.close()
        for sub in self.subs:
            sub.close()


async def run_fanout(
    servers: dict[str, RunningServer], p: Params, n_channels: int
) -> dict[str, Result]:
    """All servers are up at once, each with its own subscribers; measured
    rounds alternate between them (A B, B A, A B, ...), and each reports the
    median of its rounds. The idle server's connections cost nothing while
    the other is measured, and a slow spell of the VM lands on both."""
    rigs: dict[str, FanoutRig] = {}
    try:
        for name, server in servers.items():
            rig = rigs[name] = FanoutRig(server, p, n_channels)
            await guarded(rig.res, server, rig.prepare())
        order = list(rigs)
        for rnd in range(p.fan_rounds):
            for name in order if rnd % 2 == 0 else reversed(order):
                rig = rigs[name]
                if rig.res.error is None:
                    await guarded(rig.res, rig.server, rig.measure_round(rnd))
        out = {name: rig.finish() for name, rig in rigs.items()}
        t, nd = rigs.get("tidings"), rigs.get("node")
        if t and nd and t.res.error is None and nd.res.error is None:
            # Rounds run back to back, so each pair saw the same machine: the
            # spread of these ratios shows how much of the noise cancels.
            ratios = [
                a["cpu_us_per_delivery"] / b["cpu_us_per_delivery"]
                for a, b in zip(t.rounds, nd.rounds, strict=True)
            ]
            out["tidings"].notes.append(
                "per-round CPU ratio tidings/node: " + ", ".join(f"{x:.2f}" for x in ratios)
            )
        return out
    finally:
        for rig in rigs.values():
            rig.close()


async def guarded(res: Result, server: RunningServer, step: Awaitable[None]) -> None:
    """Run one step of a scenario; a failure is recorded in `res` (the table
    shows ERR for that server) instead of aborting the other server's run."""
    try:
        await step
    except BenchError as e:
        res.error = str(e)
    except (RuntimeError, OSError, TimeoutError, ConnectionError) as e:
        tail = server.log_tail() if not server.alive() else ""
        res.error = f"{type(e).__name__}: {e}" + (f"\nlog tail:\n{tail}" if tail else "")


def percentile_ms(samples_ns: list[int], q: float) -> float:
    if not samples_ns:
        return float("nan")
    ordered = sorted(samples_ns)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1e6


async def run_steady(server: RunningServer, p: Params) -> Result:
    res = Result()
    n = p.steady_conns
    tally = Tally()
    subs = await connect_many(server, tally, range(n), lambda i: "bench")
    pub = Publisher(HOST, server.port, server.spec.api_key, size=4)
    tasks: list[asyncio.Task[int]] = []
    try:
        await pub.start()
        interval = 1.0 / p.steady_rate
        seq = 0

        async def run_schedule(seconds: float) -> tuple[int, float]:
            """Fire publications on a fixed clock (not after the previous one
            completes), so a slow server shows up as latency rather than as a
            lower offered rate. Returns (publications, worst lateness s)
            once every publish has been answered; raises if one failed."""
            nonlocal seq
            tasks.clear()
            start = time.perf_counter()
            count = max(1, round(seconds * p.steady_rate))
            worst = 0.0
            for k in range(count):
                due = start + k * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                worst = max(worst, time.perf_counter() - due)
                t = asyncio.create_task(pub.publish("bench", {"seq": seq}, stamp=True))
                seq += 1
                tasks.append(t)
            await asyncio.gather(*tasks)
            return count, worst

        warm, _ = await run_schedule(p.steady_warmup_s)
        await reach(tally, warm * n)
        check_server(server)

        gc.collect()
        gc.disable()
        latencies: list[int] = []
        app_latencies: list[int] = []
        tally.latencies_ns = latencies
        tally.app_latencies_ns = app_latencies
        d0 = tally.delivered
        win = Window(server)
        count, worst = await run_schedule(p.steady_seconds)
        expected = d0 + count * n
        try:
            await reach(tally, expected)
        except DeliveryTimeout:
            res.notes.append(f"lost {expected - tally.delivered} of {count * n} deliveries")
        res.metrics.update(win.close(res))
        tally.latencies_ns = tally.app_latencies_ns = None
        gc.enable()
        check_server(server)

        delivered = tally.delivered - d0
        if not latencies:
            raise BenchError("no latency samples (publications not delivered?)")
        res.metrics["p50_ms"] = percentile_ms(latencies, 0.50)
        res.metrics["p99_ms"] = percentile_ms(latencies, 0.99)
        res.metrics["max_ms"] = percentile_ms(latencies, 1.0)
        # Same, stamped when the load generator parsed the frame: the gap to
        # the kernel-stamped figures is the generator's own queueing.
        res.metrics["app_p50_ms"] = percentile_ms(app_latencies, 0.50)
        res.metrics["app_p99_ms"] = percentile_ms(app_latencies, 0.99)
        res.metrics["cpu_us_per_delivery"] = res.metrics["server_cpu_s"] * 1e6 / max(1, delivered)
        res.metrics["deliveries_per_s"] = delivered / res.metrics["wall_s"]
        res.metrics["deliveries"] = delivered
        if worst > 0.005:
            res.notes.append(f"publisher ran up to {worst * 1e3:.1f} ms behind schedule")
        return res
    finally:
        gc.enable()
        tally.latencies_ns = tally.app_latencies_ns = None
        for t in tasks:
            t.cancel()
        pub.close()
        for s in subs:
            s.close()


async def run_idle(server: RunningServer, p: Params) -> Result:
    res = Result()
    n = p.idle_conns
    tally = Tally()
    # Warm-up connections + one publish first, so one-off costs (lazy
    # imports, JIT, first-use allocator arenas) are in the baseline rather
    # than smeared over the per-connection figure.
    warm_n = 100
    pub = Publisher(HOST, server.port, server.spec.api_key, size=1)
    subs: list[WsSubscriber] = []
    try:
        subs += await connect_many(server, tally, range(warm_n), lambda i: "bench")
        await pub.start()
        await pub.publish("bench", {"seq": -1})
        await reach(tally, warm_n)
        await asyncio.sleep(1.0)
        rss0 = server.rss_kib()
        subs += await connect_many(server, tally, range(warm_n, n), lambda i: "bench")
        await asyncio.sleep(2.0)  # let the server finish any post-accept work
        check_server(server)
        rss1 = server.rss_kib()
        res.metrics["rss_kib_per_conn"] = (rss1 - rss0) / (n - warm_n)
        res.metrics["rss_mib_total"] = rss1 / 1024

        # Broadcast time = the largest (kernel receive timestamp - send
        # timestamp) over all N clients, so the load generator's own time to
        # walk 10k sockets is not counted; the app-level figure is kept too.
        times: list[float] = []
        app_times: list[float] = []
        cpu_total = 0.0
        for b in range(p.idle_broadcasts):
            base = tally.delivered
            lat: list[int] = []
            tally.latencies_ns, tally.app_latencies_ns = lat, []
            cpu0 = server.cpu_seconds()
            t0 = time.perf_counter_ns()
            reported = await pub.publish("bench", {"seq": b}, stamp=True)
            try:
                t_last = await reach(tally, base + n)
            except DeliveryTimeout:
                raise BenchError(
                    f"broadcast {b}: only {tally.delivered - base}/{n} clients received it"
                ) from None
            finally:
                tally.latencies_ns = tally.app_latencies_ns = None
            cpu_total += server.cpu_seconds() - cpu0
            if not lat:
                raise BenchError(f"broadcast {b}: no send timestamp found in the deliveries")
            times.append(max(lat) / 1e6)
            app_times.append((t_last - t0) / 1e6)
            if reported != n:
                res.notes.append(
                    f"broadcast {b}: server reported delivered={reported}, expected {n}"
                )
            await asyncio.sleep(0.5)
        res.metrics["broadcast_ms"] = statistics.median(times)
        res.metrics["broadcast_ms_max"] = max(times)
        res.metrics["broadcast_app_ms"] = statistics.median(app_times)
        res.metrics["broadcast_cpu_us_per_delivery"] = cpu_total * 1e6 / (n * len(times))
        if tally.unexpected_closes:
            res.notes.append(f"{tally.unexpected_closes} idle connections closed by the server")
        return res
    finally:
        pub.close()
        for s in subs:
            s.close()


SoloFn = Callable[[RunningServer, Params], Awaitable[Result]]
PairedFn = Callable[[dict[str, RunningServer], Params], Awaitable[dict[str, Result]]]

# Fan-out scenarios run the servers side by side with interleaved rounds;
# steady and idle run one server at a time (idle's RSS baseline and steady's
# latency must not share the core with another server's connections).
PAIRED: dict[str, PairedFn] = {
    "fanout-1ch": lambda s, p: run_fanout(s, p, 1),
    "fanout-100ch": lambda s, p: run_fanout(s, p, 100),
}
SOLO: dict[str, SoloFn] = {
    "steady": run_steady,
    "idle": run_idle,
}
SCENARIOS: list[str] = [*PAIRED, *SOLO]


async def start_all(
    specs: list[ServerSpec], log_dir: Path, label: str
) -> tuple[dict[str, RunningServer], dict[str, Result]]:
    up: dict[str, RunningServer] = {}
    failed: dict[str, Result] = {}
    for spec in specs:
        try:
            up[spec.name] = await start_server(spec, log_dir, label)
        except ServerUnavailable as e:
            failed[spec.name] = Result(error=f"unavailable: {e}")
    return up, failed


async def stop_all(servers: dict[str, RunningServer]) -> None:
    for server in servers.values():
        await server.stop()
    # Let the kernel finish tearing down thousands of sockets before the
    # next server starts, so that work doesn't land in its measurement.
    await asyncio.sleep(0.5)


async def run_scenario(
    name: str, specs: list[ServerSpec], p: Params, log_dir: Path
) -> dict[str, Result]:
    """Fresh servers for every scenario: memory and CPU baselines must not
    carry state (connections, heap growth) over from the previous one."""
    results: dict[str, Result] = {}
    if name in PAIRED:
        up, results = await start_all(specs, log_dir, name)
        try:
            results.update(await PAIRED[name](up, p))
        finally:
            await stop_all(up)
        return {spec.name: results[spec.name] for spec in specs}
    for spec in specs:
        up, failed = await start_all([spec], log_dir, name)
        results.update(failed)
        if spec.name not in up:
            continue
        res = Result()
        try:
            await guarded(res, up[spec.name], _solo(SOLO[name], up[spec.name], p, res))
        finally:
            await stop_all(up)
        results[spec.name] = res
    return results


async def _solo(fn: SoloFn, server: RunningServer, p: Params, into: Result) -> None:
    got = await fn(server, p)
    into.metrics, into.notes, into.error = got.metrics, got.notes, got.error


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def judge(m: Metric, vals: dict[str, float | None]) -> tuple[str, bool | None]:
    """Target verdict for one metric: (text, met?); met is None if unknown."""
    if m.target is None:
        return "", True
    kind, limit = m.target
    t, nd = vals.get("tidings"), vals.get("node")
    if kind == "ratio":
        ok = None if t is None or nd is None or nd == 0 else t / nd <= limit
        desc = f"<= {limit}x node"
    else:
        ok = None if t is None else t < limit
        desc = f"< {limit:g}"
    return f"{desc} {'PASS' if ok else ('FAIL' if ok is False else '?')}", ok


def print_table(results: dict[str, dict[str, Result]], servers: list[str]) -> bool:
    """Print the comparison table; return True if every target is met."""
    all_ok = True
    both = "tidings" in servers and "node" in servers
    header = ["scenario", "metric", *servers]
    with_target = "tidings" in servers  # targets are about tidings
    if both:
        header.append("tidings/node")
    if with_target:
        header.append("target")
    rows: list[list[str]] = [header]
    for scen, per in results.items():
        for m in SCENARIO_METRICS[scen]:
            row = [scen, m.label]
            vals: dict[str, float | None] = {}
            for srv in servers:
                res = per.get(srv)
                v = None if res is None or res.error else res.metrics.get(m.key)
                vals[srv] = v
                if res is not None and res.error:
                    row.append("ERR")
                else:
                    row.append("-" if v is None else m.fmt.format(v))
            if both:
                row.append(fmt_ratio(vals["tidings"], vals["node"]))
            if with_target:
                verdict, ok = judge(m, vals)
                all_ok = all_ok and ok is True
                row.append(verdict)
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    # Left-align the label columns and the verdict, right-align numbers.
    last = len(header) - 1 if with_target else -1
    for j, cells in enumerate(rows):
        line = "  ".join(
            c.ljust(widths[i]) if i < 2 or i == last else c.rjust(widths[i])
            for i, c in enumerate(cells)
        )
        print(line.rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    return all_ok


def print_details(results: dict[str, dict[str, Result]]) -> None:
    print("\ndetails:")
    for scen, per in results.items():
        for srv, res in per.items():
            if res.error:
                print(f"  {scen} [{srv}] ERROR: {res.error}")
                continue
            extra = ", ".join(
                f"{k}={v:,.3g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in res.metrics.items()
            )
            print(f"  {scen} [{srv}] {extra}")
            for note in res.notes:
                print(f"  {scen} [{srv}] note: {note}")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop roughly halves the load generator's per-frame cost in the event
    loop itself, which keeps it ahead of a fast server; plain asyncio works
    too (the generator just saturates earlier)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("bench: --loop uvloop but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def loop_name(choice: str) -> str:
    return "asyncio" if loop_factory(choice) is None else "uvloop"


def pin_self() -> None:
    """Pin the load generator (this process) to its own core."""
    if (os.cpu_count() or 1) <= LOADGEN_CORE:
        print("bench: WARNING only one CPU; server and load generator share it", file=sys.stderr)
        return
    os.sched_setaffinity(0, {LOADGEN_CORE})


async def run_all(
    names: list[str], server_names: list[str], p: Params, log_dir: Path
) -> dict[str, dict[str, Result]]:
    all_specs = {"tidings": tidings_spec(SECRET, API_KEY), "node": node_spec(SECRET)}
    specs = [all_specs[s] for s in server_names]
    results: dict[str, dict[str, Result]] = {}
    for nm in names:
        t = time.monotonic()
        print(f"  {nm:<13} ...", end="", flush=True)
        results[nm] = await run_scenario(nm, specs, p, log_dir)
        status = ", ".join(
            f"{srv} {'ERROR' if res.error else 'ok'}" for srv, res in results[nm].items()
        )
        print(f" {status} ({time.monotonic() - t:.1f}s)", flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="short smoke run (~1 min)")
    ap.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        choices=SCENARIOS,
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    ap.add_argument(
        "--servers",
        type=lambda v: [x for x in v.split(",") if x],
        default=["tidings", "node"],
        help="comma-separated subset of tidings,node (default both)",
    )
    ap.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="load generator event loop (auto: uvloop when installed)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write raw results as JSON")
    ap.add_argument("--log-dir", metavar="DIR", help="server logs (default: a new temp dir)")
    ap.add_argument("--check", action="store_true", help="exit 3 if a target is missed")
    args = ap.parse_args()
    for srv in args.servers:
        if srv not in ("tidings", "node"):
            ap.error(f"unknown server {srv!r}")

    p = QUICK if args.quick else FULL
    names: list[str] = args.only or SCENARIOS
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="tidings-bench-"))
    nofile = raise_nofile()
    need = max(p.idle_conns if "idle" in names else 0, p.fan_conns) + 512
    if nofile < need:
        print(f"bench: RLIMIT_NOFILE is {nofile}, need ~{need}", file=sys.stderr)
        return 2
    pin_self()
    print(
        f"tidings bench ({'quick' if args.quick else 'full'}): servers on core {SERVER_CORE}, "
        f"load generator on core {LOADGEN_CORE} ({loop_name(args.loop)} loop); logs in {log_dir}",
        flush=True,
    )
    t_start = time.monotonic()
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        results = runner.run(run_all(names, args.servers, p, log_dir))
    print(f"\ntotal {time.monotonic() - t_start:.0f}s\n")
    ok = print_table(results, args.servers)
    print_details(results)
    if args.json:
        raw = {
            scen: {
                srv: {"metrics": res.metrics, "notes": res.notes, "error": res.error}
                for srv, res in per.items()
            }
            for scen, per in results.items()
        }
        Path(args.json).write_text(json.dumps(raw, indent=2))
    if any(res.error for per in results.values() for res in per.values()):
        return 1
    if args.check and not ok:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
