"""tidings benchmark: every scenario against tidings AND the guide-001 Node
reference in the same run, side by side.

    .venv/bin/python bench/run.py            # full run (~3 min)
    .venv/bin/python bench/run.py --quick    # smoke run (~1 min)
    .venv/bin/python bench/run.py --only fanout-1ch --servers node
    .venv/bin/python bench/run.py --only inbox-sqlite --only inbox-postgres

Servers run pinned to core 0, this process (the load generator) to core 1.
The inbox-* scenarios run tidings only (the Node reference has no inbox) and
compare it with the raw insert rate of the same database (bench/rawdb.py).
See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from common import (
    API_KEY,
    FULL,
    HOST,
    QUICK,
    SECRET,
    TOKENS,
    BenchError,
    DeliveryTimeout,
    Metric,
    Params,
    Result,
    Window,
    check_server,
    connect_many,
    guarded,
    paced_publish,
    percentile_ms,
    reach,
)
from rawdb import pg_schema
from servers import (
    BENCH_DIR,
    LOADGEN_CORE,
    SERVER_CORE,
    RunningServer,
    ServerSpec,
    ServerUnavailable,
    children_cpu_seconds,
    core_busy_seconds,
    kernel_work_seconds,
    node_spec,
    pids_cpu_seconds,
    raise_nofile,
    ref_spec,
    self_cpu_seconds,
    start_server,
    tidings_spec,
)
from wsload import PUB_TYPE, Arrival, Publisher, Tally, WsSubscriber

import cluster
import rooms as rooms_bench

# The inbox-postgres scenario creates (and drops) its own schemas in this database.
PG_URL = os.environ.get("TIDINGS_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
INBOX_USERS = 50  # one WebSocket connection each
INBOX_CONCURRENCY = 32  # create requests in flight; also the raw PostgreSQL connections
RAW_BATCH = 100  # rows per transaction of the raw "batched" insert rate
INBOX_BATCH = 100  # notifications per POST /api/notifications/batch in inbox-*-batch
FANOUT_USERS = 100_000  # users known to the server in inbox-fanout
# Every server the bench knows: tidings, the two bare references (bench/ref_*.py)
# and the Node server of guide 001. Ratios in the table are tidings / each other one.
SERVERS = ["tidings", "aiohttp", "picows", "node"]
# Not run unless named: tidings again, its subscribers on Socket.IO (/socket.io/) instead
# of the native WebSocket (`--servers tidings,socketio --only fanout-1ch` compares them);
# and tidings on one WebSocket engine each (`ws_engine`), beside the default one
# (`--servers tidings-aiohttp,tidings-lean,aiohttp`); and tidings with its HTTP front off
# (`http_fast_path = false`: aiohttp parses every request, as before the front).
OPTIONAL_SERVERS = ["socketio", "tidings-aiohttp", "tidings-lean", "tidings-nofront"]


def inbox_metrics(db: str, raw_client: str, per_request: int = 1) -> list[Metric]:
    batch = f"{RAW_BATCH} rows/txn"
    # Issue 14: on SQLite, single creates at least 10,000/s, batches at least 20,000/s.
    target = (20000.0 if per_request > 1 else 10000.0) if db == "sqlite" else None
    what = f"batches of {per_request}" if per_request > 1 else "single creates"
    out = [
        Metric(
            "notifications_per_s",
            f"created+delivered notifications/s ({what})",
            "{:,.0f}",
            ("min", target) if target else None,
        ),
        Metric("p50_ms", "create->push latency p50 ms", "{:.2f}"),
        Metric("p99_ms", "create->push latency p99 ms", "{:.2f}"),
        Metric("cpu_us_per_notification", "server CPU µs/notification", "{:.1f}"),
    ]
    if db == "postgres":
        out.append(Metric("db_cpu_us_per_notification", "postgres CPU µs/notification", "{:.1f}"))
    return [
        *out,
        Metric("raw_single_per_s", f"raw {raw_client} rows/s, 1 row/txn", "{:,.0f}"),
        Metric("raw_batched_per_s", f"raw {raw_client} rows/s, {batch}", "{:,.0f}"),
        Metric("vs_raw_single", "tidings / raw 1 row/txn", "{:.2f}x", ("min", 1 / 3)),
        Metric("vs_raw_batched", f"tidings / raw {batch}", "{:.2f}x"),
    ]


SCENARIO_METRICS: dict[str, list[Metric]] = {
    "fanout-1ch": [
        Metric("deliveries_per_s", "deliveries/s", "{:,.0f}"),
        Metric("cpu_us_per_delivery", "server CPU µs/delivery", "{:.2f}", ("ratio", 0.5, "node")),
        Metric("server_util", "server core busy", "{:.0%}"),
    ],
    "fanout-100ch": [
        Metric("deliveries_per_s", "deliveries/s", "{:,.0f}"),
        Metric("cpu_us_per_delivery", "server CPU µs/delivery", "{:.2f}", ("ratio", 0.25, "node")),
        Metric("server_util", "server core busy", "{:.0%}"),
    ],
    "steady": [
        Metric("p50_ms", "latency p50 ms", "{:.2f}"),
        # No worse than the stack tidings is built on, at 20,000 deliveries/s.
        Metric("p99_ms", "latency p99 ms", "{:.2f}", ("ratio", 1.0, "aiohttp")),
        Metric("max_ms", "latency max ms", "{:.2f}"),
        Metric("cpu_us_per_delivery", "server CPU µs/delivery", "{:.2f}"),
    ],
    "idle": [
        Metric(
            "connects_per_s",
            "connect storm: connects/s (auth, welcome, catch-up, subscribe)",
            "{:,.0f}",
            (("min", 2500.0), ("ratio_min", 1.0, "aiohttp")),
        ),
        Metric("cpu_us_per_connect", "connect storm: server CPU µs/connect", "{:.0f}"),
        Metric("rss_kib_per_conn", "RSS KiB/idle connection", "{:.2f}", ("max", 10.0)),
        Metric("broadcast_ms", "broadcast-to-all ms (median)", "{:.1f}"),
    ],
    "inbox-sqlite": inbox_metrics("sqlite", "sqlite3"),
    "inbox-sqlite-batch": inbox_metrics("sqlite", "sqlite3", INBOX_BATCH),
    "inbox-postgres": inbox_metrics("postgres", f"asyncpg x{INBOX_CONCURRENCY}"),
    "inbox-postgres-batch": inbox_metrics("postgres", f"asyncpg x{INBOX_CONCURRENCY}", INBOX_BATCH),
    "inbox-fanout": [
        Metric("fanout_users", "users known to the server", "{:,.0f}"),
        # Issue 14: one notification to all of 100,000 users committed within 2 s.
        Metric("fanout_commit_s", "all: POST to 201 (committed) s", "{:.2f}", ("max", 2.0)),
        Metric("fanout_push_s", "all: POST to the last online user's push s", "{:.2f}"),
        Metric("fanout_role_commit_s", "role of half: POST to 201 s", "{:.2f}", ("max", 2.0)),
    ],
}


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
        self.pub = Publisher(HOST, server.publish_port, server.spec.api_key, size=self.workers)
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
        t = rigs.get("tidings")
        for ref, other in rigs.items():
            if ref == "tidings" or t is None or t.res.error or other.res.error:
                continue
            # Rounds run back to back, so each pair saw the same machine: the
            # spread of these ratios shows how much of the noise cancels.
            ratios = [
                a["cpu_us_per_delivery"] / b["cpu_us_per_delivery"]
                for a, b in zip(t.rounds, other.rounds, strict=True)
            ]
            out["tidings"].notes.append(
                f"per-round CPU ratio tidings/{ref}: " + ", ".join(f"{x:.2f}" for x in ratios)
            )
        return out
    finally:
        for rig in rigs.values():
            rig.close()


async def run_steady(server: RunningServer, p: Params) -> Result:
    res = Result()
    n = p.steady_conns
    tally = Tally()
    subs = await connect_many(server, tally, range(n), lambda i: "bench")
    pub = Publisher(HOST, server.publish_port, server.spec.api_key, size=4)
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


def record_known_users(server: RunningServer, n: int) -> bool:
    """For tidings: record bench-user-0..n-1 in its store as users who connected before,
    with the roles their tokens carry (none), as after a deploy: the connect storm is
    then the issue's reconnect storm (each user compared with the store, nothing
    written). The server's own records of them are untouched, so each is read from the
    file as after a restart. Returns False for servers without a tidings store."""
    path = server.spec.env.get("TIDINGS_STORE_URL", "")
    if not server.spec.name.startswith("tidings") or "://" in path or not path:
        return False
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        record_users(conn, [TOKENS.get(i)[0] for i in range(n)])
        conn.execute("COMMIT")
    finally:
        conn.close()
    return True


def record_users(conn: sqlite3.Connection, users: list[str]) -> None:
    """Users who connected once (with no roles), in tidings' schema; any already there
    stay as they are."""
    conn.executemany(
        "INSERT INTO inbox_users (user_id, seen_at) VALUES (?, 1.0) "
        "ON CONFLICT (user_id) DO NOTHING",
        [(u,) for u in users],
    )


async def run_idle(server: RunningServer, p: Params) -> Result:
    res = Result()
    n = p.idle_conns
    tally = Tally()
    if record_known_users(server, n):
        res.notes.append(f"the storm's {n:,} users were recorded beforehand: reconnects")
    # Warm-up connections + one publish first, so one-off costs (lazy
    # imports, JIT, first-use allocator arenas) are in the baseline rather
    # than smeared over the per-connection figure.
    warm_n = 100
    pub = Publisher(HOST, server.publish_port, server.spec.api_key, size=1)
    subs: list[WsSubscriber] = []
    try:
        subs += await connect_many(server, tally, range(warm_n), lambda i: "bench")
        await pub.start()
        await pub.publish("bench", {"seq": -1})
        await reach(tally, warm_n)
        await asyncio.sleep(1.0)
        rss0 = server.rss_kib()
        # The connect storm: the other connections as fast as the server takes them,
        # CONNECT_CONCURRENCY handshakes in flight (tokens minted beforehand).
        TOKENS.get(n - 1)
        win = Window(server)
        subs += await connect_many(server, tally, range(warm_n, n), lambda i: "bench")
        storm = win.close(res)
        res.metrics["connects_per_s"] = (n - warm_n) / storm["wall_s"]
        res.metrics["cpu_us_per_connect"] = storm["server_cpu_s"] * 1e6 / (n - warm_n)
        res.metrics["storm_server_util"] = storm["server_util"]
        res.metrics["storm_loadgen_util"] = storm["loadgen_util"]
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


# ---------------------------------------------------------------------------
# Inbox: POST /api/notifications -> committed -> pushed to the user's socket,
# beside the raw insert rate of the same database.


def _raw_log_path(log_dir: Path, kind: str) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir / f"inbox-{kind}.rawdb.log"


def _log_tail(path: Path, lines: int = 8) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def raw_insert_rates(
    kind: str, p: Params, log_dir: Path, res: Result
) -> dict[str, dict[str, float]]:
    """bench/rawdb.py on the server core: the database's own insert rates,
    one row per transaction and batched (see its docstring). Adds a note to
    `res` if something else kept the cores busy meanwhile."""
    argv = [
        "taskset",
        "-c",
        str(SERVER_CORE),
        sys.executable,
        str(BENCH_DIR / "rawdb.py"),
        kind,
        "--url",
        PG_URL,
        "--seconds",
        str(p.raw_seconds),
        "--batch",
        str(RAW_BATCH),
        "--concurrency",
        str(INBOX_CONCURRENCY),
        "--users",
        str(INBOX_USERS),
    ]
    log_path = _raw_log_path(log_dir, kind)
    t0 = time.perf_counter()
    cores = (SERVER_CORE, LOADGEN_CORE)
    busy0 = sum(core_busy_seconds(c)[0] for c in cores)
    own0 = self_cpu_seconds() + children_cpu_seconds() + kernel_work_seconds(cores)
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=BENCH_DIR,
        )
        try:
            async with asyncio.timeout(2 * p.raw_seconds + 60):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BenchError(f"bench/rawdb.py {kind} did not finish; log: {log_path}") from None
    if proc.returncode != 0:
        raise BenchError(
            f"bench/rawdb.py {kind} failed (rc={proc.returncode}): {_log_tail(log_path, 1)} "
            f"(traceback in {log_path})"
        )
    result: dict[str, dict[str, float]] = json.loads(out)
    wall = time.perf_counter() - t0
    # Busy time of both cores not spent by rawdb.py, this process, the
    # kernel's own work (fsync completion, loopback) or the raw backends.
    busy = sum(core_busy_seconds(c)[0] for c in cores) - busy0
    own = self_cpu_seconds() + children_cpu_seconds() + kernel_work_seconds(cores) - own0
    db = sum(ph.get("db_cpu_s", 0.0) for ph in result.values())
    foreign = max(0.0, busy - own - db) / wall
    res.metrics["raw_foreign"] = foreign
    if foreign > 0.1:
        res.notes.append(
            f"raw insert phases disturbed: other processes kept {foreign:.0%} of a core "
            "busy: the raw rates may be low, rerun on a quiet machine"
        )
    return result


@dataclass
class InboxStore:
    kind: str
    url: str  # TIDINGS_STORE_URL
    schema: str | None = None  # PostgreSQL
    app_name: str | None = None  # PostgreSQL application_name of tidings' connections


@contextlib.asynccontextmanager
async def fresh_store(kind: str) -> AsyncIterator[InboxStore]:
    """An empty database for one run: a SQLite file in a new temp dir, or a new
    PostgreSQL schema; removed (dropped) afterwards."""
    if kind == "sqlite":
        tmp = Path(tempfile.mkdtemp(prefix="tidings-bench-inbox-"))
        try:
            yield InboxStore(kind, str(tmp / "tidings.db"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    async with pg_schema(PG_URL, "tidings_bench") as schema:
        # Unknown query parameters are server settings for asyncpg: search_path
        # puts tidings' tables in the schema, application_name lets us find
        # its backends in pg_stat_activity.
        app = f"tidings-bench-{schema}"
        sep = "&" if "?" in PG_URL else "?"
        url = f"{PG_URL}{sep}search_path={schema}&application_name={app}"
        yield InboxStore(kind, url, schema, app)


async def stored_rows(store: InboxStore) -> tuple[int, int, int]:
    """After the server has stopped: (rows, rows without delivered_at, users
    whose seqs are not exactly 1..count)."""
    rows_sql = "SELECT COUNT(*), COUNT(*) - COUNT(delivered_at) FROM notifications"
    seq_sql = (
        "SELECT COUNT(*) FROM (SELECT user_id FROM notifications GROUP BY user_id "
        "HAVING MIN(seq) <> 1 OR MAX(seq) <> COUNT(*) OR COUNT(DISTINCT seq) <> COUNT(*)) AS bad"
    )
    if store.kind == "sqlite":
        conn = sqlite3.connect(store.url)
        try:
            rows, undelivered = conn.execute(rows_sql).fetchone()
            (bad,) = conn.execute(seq_sql).fetchone()
        finally:
            conn.close()
        return int(rows), int(undelivered), int(bad)
    pg = await asyncpg.connect(PG_URL, server_settings={"search_path": str(store.schema)})
    try:
        row = await pg.fetchrow(rows_sql)
        bad = await pg.fetchval(seq_sql)
    finally:
        await pg.close()
    return int(row[0]), int(row[1]), int(bad)


class DbCpu:
    """CPU time over a window of the PostgreSQL backends serving tidings (found
    by their application_name) and of PostgreSQL's own background processes
    (WAL writer, checkpointer, ...: work our writes cause, though not only
    ours). Processes that start during the window count with all their CPU."""

    def __init__(self, store: InboxStore) -> None:
        self.store = store
        self.start: dict[int, float] = {}

    async def _pids(self) -> tuple[list[int], list[int]]:
        pg = await asyncpg.connect(PG_URL)
        try:
            rows = await pg.fetch(
                "SELECT pid, application_name = $1 AS ours FROM pg_stat_activity "
                "WHERE application_name = $1 OR backend_type <> 'client backend'",
                self.store.app_name,
            )
        finally:
            await pg.close()
        ours = [int(r["pid"]) for r in rows if r["ours"]]
        return ours, [int(r["pid"]) for r in rows if not r["ours"]]

    async def begin(self) -> None:
        ours, aux = await self._pids()
        self.start = pids_cpu_seconds(ours + aux)

    async def end(self) -> tuple[float, float, int]:
        """(CPU seconds of tidings' backends, of the background processes,
        number of tidings' backends), since begin()."""
        ours, aux = await self._pids()
        now = pids_cpu_seconds(ours + aux)

        def used(pids: list[int]) -> float:
            return sum(now[pid] - self.start.get(pid, 0.0) for pid in pids if pid in now)

        return used(ours), used(aux), len(ours)


async def run_inbox(
    spec: ServerSpec, kind: str, p: Params, log_dir: Path, label: str, per_request: int = 1
) -> Result:
    res = Result()
    raw = await raw_insert_rates(kind, p, log_dir, res)
    for phase in ("single", "batched"):
        rows = max(1.0, raw[phase]["rows"])
        res.metrics[f"raw_{phase}_per_s"] = raw[phase]["rows_per_s"]
        res.metrics[f"raw_{phase}_client_cpu_us_per_row"] = raw[phase]["cpu_s"] * 1e6 / rows
        if kind == "postgres":
            res.metrics[f"raw_{phase}_db_cpu_us_per_row"] = raw[phase]["db_cpu_s"] * 1e6 / rows
    async with fresh_store(kind) as store:
        srv_spec = dataclasses.replace(spec, env={**spec.env, "TIDINGS_STORE_URL": store.url})
        try:
            server = await start_server(srv_spec, log_dir, label)
        except ServerUnavailable as e:
            raise BenchError(f"unavailable: {e}") from e
        try:
            created = await measure_inbox(server, store, p, res, per_request)
        except (RuntimeError, OSError, TimeoutError, ConnectionError) as e:
            if isinstance(e, BenchError) or server.alive():
                raise
            raise BenchError(f"{type(e).__name__}: {e}\nlog tail:\n{server.log_tail()}") from e
        finally:
            await server.stop()
        rows, undelivered, bad_users = await stored_rows(store)
    if rows != created:
        res.notes.append(f"store holds {rows} notifications, {created} were created (201)")
    if undelivered:
        res.notes.append(f"{undelivered} stored notifications have no delivered_at")
    if bad_users:
        res.notes.append(f"{bad_users} users' stored seqs are not exactly 1..count")
    m = res.metrics
    m["vs_raw_single"] = m["notifications_per_s"] / m["raw_single_per_s"]
    m["vs_raw_batched"] = m["notifications_per_s"] / m["raw_batched_per_s"]
    return res


async def measure_inbox(
    server: RunningServer, store: InboxStore, p: Params, res: Result, per_request: int = 1
) -> int:
    """Warm up, then one measured window of create requests (``per_request`` > 1:
    batches of that many, round-robin over the users); fills res and returns the
    number of notifications created (201) over the whole run."""
    n = INBOX_USERS
    tally = Tally()
    subs = await connect_many(server, tally, range(n), lambda i: None)
    pub = Publisher(HOST, server.port, server.spec.api_key, size=INBOX_CONCURRENCY)
    items = [{"userId": TOKENS.get(i)[0], "type": PUB_TYPE, "title": "t"} for i in range(n)]
    path = "/api/notifications"
    if per_request == 1:
        bodies = [json.dumps(item, separators=(",", ":")).encode() for item in items]
    else:
        path = "/api/notifications/batch"
        bodies = [
            json.dumps(
                {"notifications": [items[(k + j) % n] for j in range(per_request)]},
                separators=(",", ":"),
            ).encode()
            for k in range(n)
        ]
    # Notification id -> time.time_ns() just before its create request was
    # written, in creation order; arrivals at the clients, in arrival order.
    sent: dict[bytes, int] = {}
    arrivals: list[Arrival] = []
    issued = 0
    errors: list[str] = []

    async def drive(seconds: float) -> int:
        """Create requests, round-robin over the users, INBOX_CONCURRENCY in
        flight, for `seconds` or p.inbox_max requests; returns requests sent."""
        nonlocal issued
        first = issued
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal issued
            while not errors and issued - first < p.inbox_max and time.monotonic() < deadline:
                body = bodies[issued % n]
                issued += 1
                try:
                    status, resp, t0 = await pub.post(path, body)
                    if status != (201 if per_request == 1 else 200):
                        errors.append(f"POST {path} -> HTTP {status}: {resp[:300]!r}")
                        return
                    answer = json.loads(resp)
                    for one in answer.get("results", [answer]):
                        if one.get("status", 201) != 201:
                            errors.append(f"POST {path}: an item answered {one!r:.300}")
                            return
                        for item in one["notifications"]:
                            sent[item["id"].encode()] = t0
                except (RuntimeError, OSError, TimeoutError, ValueError, KeyError) as e:
                    errors.append(f"create request failed: {type(e).__name__}: {e}")
                    return

        await asyncio.gather(*(worker() for _ in range(INBOX_CONCURRENCY)))
        if errors:
            check_server(server)
            raise BenchError(errors[0])
        return issued - first

    db = DbCpu(store) if store.kind == "postgres" else None
    try:
        await pub.start()
        tally.arrivals = arrivals
        await drive(p.inbox_warmup_s)
        await reach(tally, len(sent))  # one push per notification
        check_server(server)

        gc.collect()
        gc.disable()  # no collector pauses in the load generator mid-window
        a0, d0, s0 = len(arrivals), tally.delivered, len(sent)
        if db is not None:
            await db.begin()
        win = Window(server)
        requests = await drive(p.inbox_seconds)
        created = len(sent) - s0
        try:
            await reach(tally, d0 + created)
        except DeliveryTimeout:
            res.notes.append(
                f"lost {d0 + created - tally.delivered} of {created} pushes in the window"
            )
        db_cpu, aux_cpu, backends = (0.0, 0.0, 0) if db is None else await db.end()
        res.metrics.update(win.close(res, shared_cpu_s=db_cpu + aux_cpu))
        gc.enable()
        # Let stragglers (if any) arrive before the books are checked.
        await asyncio.sleep(0.2)
        tally.arrivals = None
        check_server(server)
    finally:
        gc.enable()
        tally.arrivals = None
        pub.close()
        for s in subs:
            s.close()

    m = res.metrics
    delivered = tally.delivered - d0
    if delivered <= 0:
        raise BenchError("no notification pushed in the measured window")
    if created != requests * per_request:
        res.notes.append(f"{requests} create requests made {created} notifications")
    m["requests"] = requests
    m["per_request"] = per_request
    m["notifications"] = delivered
    m["notifications_per_s"] = delivered / m["wall_s"]
    m["cpu_us_per_notification"] = m["server_cpu_s"] * 1e6 / delivered
    if db is not None:
        m["db_backends"] = backends
        m["db_util"] = db_cpu / m["wall_s"]
        m["db_background_util"] = aux_cpu / m["wall_s"]
        m["db_cpu_us_per_notification"] = db_cpu * 1e6 / delivered

    # Latency: kernel receive time of the push - send time of its request.
    window_ids = set(list(sent)[s0:])
    lat = [kts - sent[nid] for _, nid, _, kts, _ in arrivals[a0:] if nid in window_ids]
    app = [ats - sent[nid] for _, nid, _, _, ats in arrivals[a0:] if nid in window_ids]
    m["p50_ms"] = percentile_ms(lat, 0.50)
    m["p99_ms"] = percentile_ms(lat, 0.99)
    m["max_ms"] = percentile_ms(lat, 1.0)
    m["app_p50_ms"] = percentile_ms(app, 0.50)
    m["app_p99_ms"] = percentile_ms(app, 0.99)
    # Pushes per second of the window, to show a rate that drifts as the
    # database grows (or a slow spell of the machine).
    if lat:
        first_ns = min(sent[nid] for nid in window_ids)
        per_s = Counter((a[3] - first_ns) // 1_000_000_000 for a in arrivals[a0:])
        res.notes.append(
            "pushes in each second of the window: "
            + ", ".join(f"{per_s[i]:,}" for i in range(max(per_s) + 1))
        )

    # The books over the whole run: every created notification pushed exactly
    # once, and each connection (one per user) saw seq 1, 2, 3, ... in order.
    got = Counter(nid for _, nid, _, _, _ in arrivals)
    lost = sum(1 for nid in sent if nid not in got)
    dupes = sum(c - 1 for c in got.values() if c > 1)
    unknown = sum(1 for nid in got if nid not in sent)
    last: dict[int, int] = {}
    out_of_order = 0
    for fd, _, seq, _, _ in arrivals:
        if seq != last.get(fd, 0) + 1:
            out_of_order += 1
        last[fd] = seq
    for what, count in (
        ("created but never pushed", lost),
        ("pushed more than once", dupes),
        ("pushed but not in any 201 answer", unknown),
        ("pushed out of seq order (or with a gap)", out_of_order),
    ):
        if count:
            res.notes.append(f"{count} notifications {what}")
    if tally.unexpected_closes:
        res.notes.append(f"{tally.unexpected_closes} connections closed by the server")
    return len(sent)


def seed_users(path: str, online: list[str]) -> None:
    """A SQLite store with tidings' schema and FANOUT_USERS users who connected once
    (``online`` among them); every even one holds the role ``half``."""
    from tidings.store.sqlite import _connect, _migrate

    users = online + [f"fan-{i:06d}" for i in range(FANOUT_USERS - len(online))]
    conn = _connect(path, 30.0)
    try:
        _migrate(conn)
        conn.execute("BEGIN IMMEDIATE")
        record_users(conn, users)
        conn.executemany(
            "INSERT INTO user_roles (user_id, role) VALUES (?, 'half')",
            [(u,) for u in users[::2]],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def run_inbox_fanout(spec: ServerSpec, log_dir: Path) -> Result:
    """One notification to ``all`` of FANOUT_USERS users, INBOX_USERS of them online:
    the time to its 201 (every row committed) and to the last online user's push;
    then one to a role held by half of them."""
    res = Result()
    n = INBOX_USERS
    async with fresh_store("sqlite") as store:
        seed_users(store.url, [TOKENS.get(i)[0] for i in range(n)])
        srv_spec = dataclasses.replace(spec, env={**spec.env, "TIDINGS_STORE_URL": store.url})
        server = await start_server(srv_spec, log_dir, FANOUT)
        tally = Tally()
        subs: list[WsSubscriber] = []
        pub = Publisher(HOST, server.port, server.spec.api_key, size=1)
        try:
            subs = await connect_many(server, tally, range(n), lambda i: None)
            await pub.start()
            for target, key in (({"all": True}, "fanout_commit_s"), ({"role": "half"}, None)):
                body = json.dumps({**target, "type": PUB_TYPE, "title": "t"}).encode()
                before = tally.delivered
                t0 = time.perf_counter()
                status, resp, _ = await pub.post("/api/notifications", body)
                took = time.perf_counter() - t0
                if status != 201:
                    raise BenchError(f"POST /api/notifications -> HTTP {status}: {resp[:300]!r}")
                rows = len(json.loads(resp)["notifications"])
                if key is not None:
                    res.metrics["fanout_users"] = rows
                    res.metrics[key] = took
                    await reach(tally, before + n)
                    res.metrics["fanout_push_s"] = time.perf_counter() - t0
                else:
                    res.metrics["fanout_role_commit_s"] = took
                    res.notes.append(f"role of {rows:,} users: 201 in {took:.2f} s")
            check_server(server)
        finally:
            pub.close()
            for sub in subs:
                sub.close()
            await server.stop()
        rows, _, bad_users = await stored_rows(store)
    if bad_users:
        res.notes.append(f"{bad_users} users' stored seqs are not exactly 1..count")
    res.notes.append(f"{rows:,} rows stored")
    return res


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
# tidings only (the Node reference has no inbox); name -> database.
INBOX: dict[str, tuple[str, int]] = {
    "inbox-sqlite": ("sqlite", 1),
    "inbox-sqlite-batch": ("sqlite", INBOX_BATCH),
    "inbox-postgres": ("postgres", 1),
    "inbox-postgres-batch": ("postgres", INBOX_BATCH),
}
# One notification to everyone, then to a role, of FANOUT_USERS users (SQLite).
FANOUT = "inbox-fanout"
# Two tidings instances on Redis next to one instance (bench/cluster.py), with
# the traffic of fanout-1ch and of fanout-100ch; name -> channels.
CLUSTER: dict[str, int] = {"fanout-cluster": 1, "fanout-cluster-100ch": 100}
SCENARIOS: list[str] = [*PAIRED, *CLUSTER, *SOLO, *INBOX, FANOUT]

# One chat room of 1,000 members (bench/rooms.py); tidings only.
ROOMS = "rooms"
SCENARIOS.append(ROOMS)


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
    if name == ROOMS:
        if any(s.name == "tidings" for s in specs):
            got = await rooms_bench.run_rooms(log_dir, quick=p is QUICK)
            results["tidings"] = Result(got.metrics, got.notes, got.error)
        return results
    if name in CLUSTER:
        if any(s.name == "tidings" for s in specs):
            results["tidings"] = await cluster.run_cluster(p, log_dir, CLUSTER[name])
        return results
    if name == FANOUT:
        spec = next((s for s in specs if s.name == "tidings"), None)
        if spec is None:
            return {}
        try:
            results["tidings"] = await run_inbox_fanout(spec, log_dir)
        except (BenchError, RuntimeError, OSError, TimeoutError) as e:
            results["tidings"] = Result(error=f"{type(e).__name__}: {e}")
        await asyncio.sleep(0.5)
        return results
    if name in INBOX:
        spec = next((s for s in specs if s.name == "tidings"), None)
        if spec is None:
            return {}
        try:
            kind, per_request = INBOX[name]
            results["tidings"] = await run_inbox(spec, kind, p, log_dir, name, per_request)
        except BenchError as e:
            results["tidings"] = Result(error=str(e))
        except (RuntimeError, OSError, TimeoutError, asyncpg.PostgresError) as e:
            results["tidings"] = Result(error=f"{type(e).__name__}: {e}")
        await asyncio.sleep(0.5)
        return results
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
    """Target verdict for one metric: (text, met?); met is None if unknown (a
    figure is missing, e.g. the reference did not run). Several targets: all must
    be met."""
    texts: list[str] = []
    verdict: bool | None = True
    t = vals.get("tidings")
    for target in m.targets():
        kind, limit = target[0], target[1]
        ref = target[2] if len(target) > 2 else None  # type: ignore[misc]
        r = vals.get(ref) if ref is not None else None
        ok: bool | None
        if kind in ("ratio", "ratio_min"):
            if t is None or r is None or r == 0:
                ok = None
            else:
                ok = t / r <= limit if kind == "ratio" else t / r >= limit
            desc = f"{'<=' if kind == 'ratio' else '>='} {limit:g}x {ref}"
        elif kind == "min":
            ok = None if t is None else t >= limit
            desc = f">= {m.fmt.format(limit)}"
        else:
            ok = None if t is None else t <= limit
            desc = f"<= {m.fmt.format(limit)}"
        texts.append(f"{desc} {'met' if ok else ('MISSED' if ok is False else '?')}")
        if ok is False:
            verdict = False
        elif ok is None and verdict is True:
            verdict = None
    return ", ".join(texts), verdict


def print_table(results: dict[str, dict[str, Result]], servers: list[str]) -> bool:
    """Print the comparison table (one column per server, then tidings' ratio to
    each other server, then the targets); return True if every target is met."""
    all_ok = True
    # A server none of the chosen scenarios ran on (the references, for inbox-*
    # only) gets no column.
    servers = [s for s in servers if any(s in per for per in results.values())] or servers
    refs = [s for s in servers if s != "tidings"] if "tidings" in servers else []
    header = ["scenario", "metric", *servers, *(f"t/{r}" for r in refs)]
    with_target = "tidings" in servers  # targets are about tidings
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
            for ref in refs:
                row.append(fmt_ratio(vals["tidings"], vals[ref]))
            if with_target:
                verdict, ok = judge(m, vals)
                all_ok = all_ok and ok is not False
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
    all_specs = {
        "tidings": tidings_spec(SECRET, API_KEY),
        "aiohttp": ref_spec("aiohttp", SECRET, API_KEY),
        "picows": ref_spec("picows", SECRET, API_KEY),
        "node": node_spec(SECRET),
        "socketio": tidings_spec(SECRET, API_KEY, transport="socketio"),
        "tidings-aiohttp": tidings_spec(SECRET, API_KEY, engine="aiohttp"),
        "tidings-lean": tidings_spec(SECRET, API_KEY, engine="lean"),
        "tidings-nofront": tidings_spec(SECRET, API_KEY, front=False),
    }
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


SCENARIO_METRICS.update(dict.fromkeys(CLUSTER, cluster.METRICS))
SCENARIO_METRICS[ROOMS] = [Metric(*m) for m in rooms_bench.METRICS]


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
        default=SERVERS,
        help=f"comma-separated subset of {','.join(SERVERS + OPTIONAL_SERVERS)} "
        f"(default {','.join(SERVERS)})",
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
        if srv not in SERVERS + OPTIONAL_SERVERS:
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
