"""What every bench scenario shares: parameters, results and their targets, tokens,
opening many subscribers, pacing publications, and the CPU window.

bench/run.py (the scenarios and the table) and bench/cluster.py both build on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import jwt
from servers import LOADGEN_CORE, SERVER_CORE, RunningServer, core_busy_seconds, self_cpu_seconds
from wsload import Publisher, SioSubscriber, Tally, WsSubscriber, open_subscriber

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
    inbox_warmup_s: float
    inbox_seconds: float
    inbox_max: int  # create requests per phase, at most
    raw_seconds: float  # per raw-insert phase (1 row/txn, batched)


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
    steady_rate=20.0,
    steady_warmup_s=1.0,
    steady_seconds=10.0,
    idle_conns=10000,
    idle_broadcasts=3,
    inbox_warmup_s=1.5,
    inbox_seconds=6.0,
    inbox_max=100_000,
    raw_seconds=2.0,
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
    steady_rate=20.0,
    steady_warmup_s=0.5,
    steady_seconds=3.0,
    idle_conns=3000,
    idle_broadcasts=2,
    inbox_warmup_s=0.5,
    inbox_seconds=2.0,
    inbox_max=40_000,
    raw_seconds=1.0,
)


# ---------------------------------------------------------------------------
# Results


@dataclass
class Result:
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


# A target on tidings' figure: ("max", v) at most v; ("min", v) at least v;
# ("ratio", v, ref) at most v times server `ref`'s figure in the same run;
# ("ratio_min", v, ref) at least v times it.
Target = tuple[str, float] | tuple[str, float, str]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    fmt: str
    # One target, several (all must be met), or none.
    target: Target | tuple[Target, ...] | None = None

    def targets(self) -> tuple[Target, ...]:
        t = self.target
        if t is None:
            return ()
        if isinstance(t[0], str):
            return (t,)  # type: ignore[return-value]
        return t  # type: ignore[return-value]


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
    channel_of: Callable[[int], str | None],
) -> list[WsSubscriber]:
    """Open, authenticate and subscribe (unless channel_of gives None) one
    connection per index, at most
    CONNECT_CONCURRENCY handshakes in flight (a burst of 10k SYNs would
    overflow the accept backlog and measure TCP retransmits instead)."""
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    out: list[WsSubscriber] = []
    errors: list[str] = []

    async def one(i: int) -> None:
        uid, tok = TOKENS.get(i)
        path = f"/ws?token={tok}"
        kind: type[WsSubscriber] = WsSubscriber
        if server.spec.transport == "socketio":
            path = f"/socket.io/?EIO=4&transport=websocket&token={tok}"
            kind = SioSubscriber
        if server.spec.wants_user_id_param:
            path += f"&userId={uid}"
        async with sem:
            if errors and len(errors) >= 20:
                return  # clearly broken: stop hammering
            try:
                async with asyncio.timeout(SETUP_TIMEOUT):
                    sub = await open_subscriber(tally, HOST, server.port, path, channel_of(i), kind)
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
        self.sys0 = server.sys_seconds()
        self.self0 = self_cpu_seconds()
        self.core0 = core_busy_seconds(SERVER_CORE)
        self.lg0 = core_busy_seconds(LOADGEN_CORE)

    def close(self, res: Result, shared_cpu_s: float = 0.0) -> dict[str, float]:
        """End the window; return its figures and add a note to `res` if
        either core was disturbed. `shared_cpu_s` is CPU time of unpinned
        processes working for the server (the PostgreSQL backends), which may
        run on either core: it is not counted as disturbance."""
        wall = time.perf_counter() - self.t0
        server_cpu = self.server.cpu_seconds() - self.cpu0
        server_sys = self.server.sys_seconds() - self.sys0
        own_cpu = self_cpu_seconds() - self.self0
        core0, lg = core_busy_seconds(SERVER_CORE), core_busy_seconds(LOADGEN_CORE)
        out = {
            "wall_s": wall,
            "server_cpu_s": server_cpu,
            "server_util": server_cpu / wall,
            # The kernel's share of the server's CPU time.
            "server_sys_share": server_sys / server_cpu if server_cpu else 0.0,
            "loadgen_util": own_cpu / wall,
            # Busy time on each core not spent in the process pinned there.
            "core0_foreign": max(0.0, core0[0] - self.core0[0] - server_cpu) / wall,
            "core1_foreign": max(0.0, lg[0] - self.lg0[0] - own_cpu) / wall,
            "steal": (core0[1] - self.core0[1] + lg[1] - self.lg0[1]) / wall,
        }
        if shared_cpu_s:
            both = out["core0_foreign"] + out["core1_foreign"] - shared_cpu_s / wall
            disturbed = both > 0.1 or out["steal"] > 0.05
        else:
            disturbed = (
                out["core0_foreign"] > 0.1 or out["core1_foreign"] > 0.1 or out["steal"] > 0.05
            )
        if disturbed:
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
