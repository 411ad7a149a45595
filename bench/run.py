"""tidings benchmark: every scenario against tidings AND the guide-001 Node
reference in the same run, side by side.

    .venv/bin/python bench/run.py            # full run (~5 min)
    .venv/bin/python bench/run.py --quick    # smoke run (~1 min)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import jwt

from servers import (
    LOADGEN_CORE,
    SERVER_CORE,
    RunningServer,
    ServerSpec,
    ServerUnavailable,
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
    steady_conns: int
    steady_rate: float  # publications per second
    steady_warmup_s: float
    steady_seconds: float
    idle_conns: int
    idle_broadcasts: int


FULL = Params(
    fan_conns=2000,
    fan1_pubs=300,
    fan1_warmup=20,
    fan100_pubs=15000,
    fan100_warmup=1000,
    fan_time_cap=25.0,
    steady_conns=1000,
    steady_rate=10.0,
    steady_warmup_s=1.0,
    steady_seconds=10.0,
    idle_conns=10000,
    idle_broadcasts=3,
)

QUICK = Params(
    fan_conns=2000,
    fan1_pubs=50,
    fan1_warmup=5,
    fan100_pubs=2500,
    fan100_warmup=200,
    fan_time_cap=8.0,
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
                sub = await open_subscriber(tally, HOST, server.port, path, channel_of(i), SETUP_TIMEOUT)
            except (OSError, TimeoutError, ConnectionError) as e:
                errors.append(f"{type(e).__name__}: {e}")
                return
            out.append(sub)

    for i in indices:
        TOKENS.get(i)  # mint up front, outside the timed connect loop
    await asyncio.gather(*(one(i) for i in indices))
    if errors:
        for s in out:
            s.close()
        raise BenchError(
            f"{len(indices) - len(out)}/{len(indices)} connections failed to set up; "
            f"first error: {errors[0]}"
        )
    return out


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
            await tally.wait_for(base + (k + 1) * per_pub - window, DRAIN_TIMEOUT)
            # (await first: `reported += await ...` would read `reported`
            # before suspending and lose the other workers' increments)
            got = await pub.publish(channel_of(k), {"seq": k, "msg": "benchmark notification"})
            reported += got

    await asyncio.gather(*(worker() for _ in range(workers)))
    return next_k, reported


async def run_fanout(server: RunningServer, p: Params, n_channels: int, quick: bool) -> Result:
    res = Result()
    n = p.fan_conns
    tally = Tally()
    channels = ["bench"] if n_channels == 1 else [f"bench:{c}" for c in range(n_channels)]
    per_pub = n // n_channels
    subs = await connect_many(server, tally, range(n), lambda i: channels[i % n_channels])
    pub = Publisher(HOST, server.port, server.spec.api_key, size=8 if n_channels > 1 else 2)
    try:
        await pub.start()
        # Outstanding-delivery window: a few publications for one channel,
        # enough parallel requests to keep the server busy for 100 channels.
        window = 3 * per_pub if n_channels == 1 else 400
        workers = 2 if n_channels == 1 else 8
        pubs, warm = (p.fan1_pubs, p.fan1_warmup) if n_channels == 1 else (p.fan100_pubs, p.fan100_warmup)

        def channel_of(k: int) -> str:
            return channels[k % n_channels]

        # Warm-up (JIT, allocator, lazy imports) is not measured.
        issued, _ = await paced_publish(pub, tally, warm, per_pub, window, channel_of, workers, 30.0)
        await tally.wait_for(issued * per_pub, DRAIN_TIMEOUT)
        check_server(server)

        gc.collect()
        gc.disable()  # no collector pauses in the load generator mid-window
        d0 = tally.delivered
        cpu0, self0, t0 = server.cpu_seconds(), self_cpu_seconds(), time.perf_counter()
        issued, reported = await paced_publish(
            pub, tally, pubs, per_pub, window, channel_of, workers, p.fan_time_cap
        )
        expected = d0 + issued * per_pub
        try:
            await tally.wait_for(expected, DRAIN_TIMEOUT)
        except TimeoutError:
            res.notes.append(f"lost {expected - tally.delivered} of {issued * per_pub} deliveries")
        t1, cpu1, self1 = time.perf_counter(), server.cpu_seconds(), self_cpu_seconds()
        gc.enable()
        check_server(server)

        delivered = tally.delivered - d0
        wall = t1 - t0
        if delivered <= 0:
            raise BenchError("no deliveries in the measured window")
        if reported != issued * per_pub:
            res.notes.append(f"server reported delivered={reported}, expected {issued * per_pub}")
        if issued < pubs:
            res.notes.append(f"time cap hit: {issued}/{pubs} publications")
        res.metrics["deliveries_per_s"] = delivered / wall
        res.metrics["cpu_us_per_delivery"] = (cpu1 - cpu0) * 1e6 / delivered
        res.metrics["server_util"] = (cpu1 - cpu0) / wall
        res.metrics["loadgen_util"] = (self1 - self0) / wall
        res.metrics["publications"] = issued
        res.metrics["deliveries"] = delivered
        res.metrics["wall_s"] = wall
        if res.metrics["loadgen_util"] > 0.9:
            res.notes.append("load generator >90% busy: throughput is client-bound")
        if tally.unexpected_closes:
            res.notes.append(f"{tally.unexpected_closes} connections closed by the server")
        return res
    finally:
        gc.enable()
        pub.close()
        for s in subs:
            s.close()


async def run_steady(server: RunningServer, p: Params, quick: bool) -> Result:
    res = Result()
    n = p.steady_conns
    tally = Tally()
    subs = await connect_many(server, tally, range(n), lambda i: "bench")
    pub = Publisher(HOST, server.port, server.spec.api_key, size=4)
    tasks: set[asyncio.Task[int]] = set()
    try:
        await pub.start()
        interval = 1.0 / p.steady_rate
        seq = 0

        async def run_schedule(seconds: float) -> tuple[int, float]:
            """Fire publications on a fixed clock (not after the previous one
            completes), so a slow server shows up as latency rather than as a
            lower offered rate. Returns (publications, worst lateness s)."""
            nonlocal seq
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
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            return count, worst

        warm, _ = await run_schedule(p.steady_warmup_s)
        await tally.wait_for(warm * n, DRAIN_TIMEOUT)
        check_server(server)

        gc.collect()
        gc.disable()
        latencies: list[int] = []
        tally.latencies_ns = latencies
        d0 = tally.delivered
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        count, worst = await run_schedule(p.steady_seconds)
        expected = d0 + count * n
        try:
            await tally.wait_for(expected, DRAIN_TIMEOUT)
        except TimeoutError:
            res.notes.append(f"lost {expected - tally.delivered} of {count * n} deliveries")
        t1, cpu1 = time.perf_counter(), server.cpu_seconds()
        tally.latencies_ns = None
        gc.enable()
        check_server(server)
        for t in list(tasks):
            await t  # surface publish errors

        delivered = tally.delivered - d0
        if not latencies:
            raise BenchError("no latency samples (publications not delivered?)")
        latencies.sort()
        ms = [x / 1e6 for x in latencies]
        res.metrics["p50_ms"] = ms[len(ms) // 2]
        res.metrics["p99_ms"] = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        res.metrics["max_ms"] = ms[-1]
        res.metrics["cpu_us_per_delivery"] = (cpu1 - cpu0) * 1e6 / max(1, delivered)
        res.metrics["deliveries_per_s"] = delivered / (t1 - t0)
        res.metrics["deliveries"] = delivered
        if worst > 0.005:
            res.notes.append(f"publisher ran up to {worst * 1e3:.1f} ms behind schedule")
        return res
    finally:
        gc.enable()
        tally.latencies_ns = None
        for t in tasks:
            t.cancel()
        pub.close()
        for s in subs:
            s.close()


async def run_idle(server: RunningServer, p: Params, quick: bool) -> Result:
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
        await tally.wait_for(warm_n, DRAIN_TIMEOUT)
        await asyncio.sleep(1.0)
        rss0 = server.rss_kib()
        subs += await connect_many(server, tally, range(warm_n, n), lambda i: "bench")
        await asyncio.sleep(2.0)  # let the server finish any post-accept work
        check_server(server)
        rss1 = server.rss_kib()
        res.metrics["rss_kib_per_conn"] = (rss1 - rss0) / (n - warm_n)
        res.metrics["rss_mib_total"] = rss1 / 1024

        times: list[float] = []
        cpu_total = 0.0
        for b in range(p.idle_broadcasts):
            base = tally.delivered
            cpu0 = server.cpu_seconds()
            t0 = time.perf_counter_ns()
            reported = await pub.publish("bench", {"seq": b})
            try:
                t_last = await tally.wait_for(base + n, DRAIN_TIMEOUT)
            except TimeoutError:
                raise BenchError(
                    f"broadcast {b}: only {tally.delivered - base}/{n} clients received it"
                ) from None
            cpu_total += server.cpu_seconds() - cpu0
            times.append((t_last - t0) / 1e6)
            if reported != n:
                res.notes.append(f"broadcast {b}: server reported delivered={reported}, expected {n}")
            await asyncio.sleep(0.5)
        res.metrics["broadcast_ms"] = statistics.median(times)
        res.metrics["broadcast_ms_max"] = max(times)
        res.metrics["broadcast_cpu_us_per_delivery"] = cpu_total * 1e6 / (n * len(times))
        if tally.unexpected_closes:
            res.notes.append(f"{tally.unexpected_closes} idle connections closed by the server")
        return res
    finally:
        pub.close()
        for s in subs:
            s.close()


ScenarioFn = Callable[[RunningServer, Params, bool], Awaitable[Result]]

SCENARIOS: dict[str, ScenarioFn] = {
    "fanout-1ch": lambda s, p, q: run_fanout(s, p, 1, q),
    "fanout-100ch": lambda s, p, q: run_fanout(s, p, 100, q),
    "steady": run_steady,
    "idle": run_idle,
}


# ---------------------------------------------------------------------------
# Driver


async def run_one(spec: ServerSpec, name: str, p: Params, quick: bool, log_dir: Path) -> Result:
    """Fresh server per scenario: memory and CPU baselines must not carry
    state (connections, heap growth) over from the previous scenario."""
    try:
        server = await start_server(spec, log_dir)
    except ServerUnavailable as e:
        return Result(error=f"unavailable: {e}")
    try:
        return await SCENARIOS[name](server, p, quick)
    except BenchError as e:
        return Result(error=str(e))
    except (RuntimeError, OSError, TimeoutError, ConnectionError) as e:
        tail = server.log_tail() if not server.alive() else ""
        return Result(error=f"{type(e).__name__}: {e}" + (f"\nlog tail:\n{tail}" if tail else ""))
    finally:
        await server.stop()
        # Let the kernel finish tearing down thousands of sockets before the
        # next server starts, so that work doesn't land in its measurement.
        await asyncio.sleep(0.5)


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def print_table(results: dict[str, dict[str, Result]], servers: list[str]) -> bool:
    """Print the comparison table; return True if every measured target is met."""
    all_ok = True
    rows: list[list[str]] = [["scenario", "metric", *servers]]
    both = "tidings" in servers and "node" in servers
    if both:
        rows[0] += ["tidings/node", "target"]
    for scen, per in results.items():
        for m in SCENARIO_METRICS[scen]:
            row = [scen, m.label]
            vals: dict[str, float | None] = {}
            for s in servers:
                r = per.get(s)
                v = None if r is None or r.error else r.metrics.get(m.key)
                vals[s] = v
                row.append("ERR" if r is not None and r.error else ("-" if v is None else m.fmt.format(v)))
            if both:
                row.append(fmt_ratio(vals["tidings"], vals["node"]))
                verdict = ""
                if m.target is not None:
                    kind, limit = m.target
                    t, nd = vals["tidings"], vals["node"]
                    if kind == "ratio":
                        ok = None if t is None or nd is None or nd == 0 else t / nd <= limit
                        desc = f"<= {limit}x node"
                    else:
                        ok = None if t is None else t < limit
                        desc = f"< {limit:g}"
                    verdict = f"{desc} {'PASS' if ok else ('FAIL' if ok is False else '?')}"
                    if ok is not True:
                        all_ok = False
                row.append(verdict)
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    sep = "  "
    for j, r in enumerate(rows):
        cells = [c.ljust(widths[i]) if i < 2 or i == len(r) - 1 and both else c.rjust(widths[i]) for i, c in enumerate(r)]
        print(sep.join(cells).rstrip())
        if j == 0:
            print(sep.join("-" * w for w in widths))
    return all_ok


def print_details(results: dict[str, dict[str, Result]]) -> None:
    print("\ndetails:")
    for scen, per in results.items():
        for srv, r in per.items():
            if r.error:
                print(f"  {scen} [{srv}] ERROR: {r.error}")
                continue
            extra = ", ".join(
                f"{k}={v:,.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.metrics.items()
            )
            print(f"  {scen} [{srv}] {extra}")
            for note in r.notes:
                print(f"  {scen} [{srv}] note: {note}")


def pin_self() -> None:
    """Pin the load generator (this process) to its own core."""
    if (os.cpu_count() or 1) <= LOADGEN_CORE:
        print("bench: WARNING only one CPU; server and load generator share it", file=sys.stderr)
        return
    os.sched_setaffinity(0, {LOADGEN_CORE})


async def main_async(args: argparse.Namespace) -> int:
    p = QUICK if args.quick else FULL
    names = list(SCENARIOS) if not args.only else args.only
    for nm in names:
        if nm not in SCENARIOS:
            print(f"unknown scenario {nm!r}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
            return 2
    server_names = args.servers
    specs = {"tidings": tidings_spec(SECRET, API_KEY), "node": node_spec(SECRET)}
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="tidings-bench-"))
    nofile = raise_nofile()
    need = max(p.idle_conns if "idle" in names else 0, p.fan_conns) + 512
    if nofile < need:
        print(f"bench: RLIMIT_NOFILE is {nofile}, need ~{need}", file=sys.stderr)
        return 2
    pin_self()
    print(
        f"tidings bench ({'quick' if args.quick else 'full'}): servers on core {SERVER_CORE}, "
        f"load generator on core {LOADGEN_CORE}; logs in {log_dir}",
        flush=True,
    )

    results: dict[str, dict[str, Result]] = {}
    t_start = time.monotonic()
    for nm in names:
        results[nm] = {}
        for s in server_names:
            t = time.monotonic()
            print(f"  {nm:<13} {s:<8} ...", end="", flush=True)
            r = await run_one(specs[s], nm, p, args.quick, log_dir)
            results[nm][s] = r
            status = "ERROR" if r.error else "ok"
            print(f" {status} ({time.monotonic() - t:.1f}s)", flush=True)
    print(f"\ntotal {time.monotonic() - t_start:.0f}s\n")
    ok = print_table(results, server_names)
    print_details(results)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    scen: {s: {"metrics": r.metrics, "notes": r.notes, "error": r.error} for s, r in per.items()}
                    for scen, per in results.items()
                },
                indent=2,
            )
        )
    errors = any(r.error for per in results.values() for r in per.values())
    if errors:
        return 1
    if args.check and not ok:
        return 3
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (~1 min)")
    ap.add_argument(
        "--only", action="append", metavar="NAME", help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}"
    )
    ap.add_argument(
        "--servers",
        type=lambda v: [x for x in v.split(",") if x],
        default=["tidings", "node"],
        help="comma-separated subset of tidings,node (default both)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write raw results as JSON")
    ap.add_argument("--log-dir", metavar="DIR", help="where server logs go (default: a new temp dir)")
    ap.add_argument("--check", action="store_true", help="exit 3 if a target is missed")
    args = ap.parse_args()
    for s in args.servers:
        if s not in ("tidings", "node"):
            ap.error(f"unknown server {s!r}")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
