"""Chat-room benchmark (issue 6): one room of 1,000 members, 20 of them posting.

    .venv/bin/python bench/rooms.py [--quick]      # alone
    .venv/bin/python bench/run.py --only rooms     # inside the suite (tidings only)

One tidings server (pinned to SERVER_CORE, SQLite store, memory presence), the load
generator on LOADGEN_CORE, everything on 127.0.0.1. Phases, each bounded by a count and
a time limit:

1. **paced**: the 20 posters post ``POST /api/rooms/bench/messages`` with their own JWT,
   each once a second; every member is subscribed to ``room:bench``. Delivery latency is
   "post written by the client" to "frame in the member's socket" (kernel receive
   timestamp), p50/p99 over every delivery.
2. **burst**: the posters post as fast as the server answers; deliveries/s and server CPU
   per delivery (server CPU seconds over the phase divided by frames delivered).
3. **blocks**: 100 members block one of five posters (20 each: five distinct block lists,
   so five filter groups beside the plain one), then the burst again: the cost of blocking.
4. **churn**: no posts; 100 other members join and leave the room (subscribe and
   unsubscribe ``room:bench``) at 100 operations per second; server CPU share and CPU per
   presence operation, against an idle baseline of the same length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

import wsload
from servers import (
    LOADGEN_CORE,
    RunningServer,
    start_server,
    tidings_spec,
)
from wsload import Publisher, Tally, WsSubscriber, client_frame, open_subscriber

SECRET = "bench-rooms-secret-0123456789abcdef"
API_KEY = "bench-rooms-api-key"
ROOM = "bench"
POSTERS = 20

# (key, label, format, target) as run.py's Metric takes them.
METRICS: list[tuple[str, str, str, tuple[str, float] | None]] = [
    ("paced_p50_ms", "delivery p50 ms (paced)", "{:.2f}", None),
    ("paced_p99_ms", "delivery p99 ms (paced)", "{:.2f}", None),
    ("deliveries_per_s", "deliveries/s (burst)", "{:,.0f}", None),
    ("cpu_us_per_delivery", "server CPU us/delivery (burst)", "{:.2f}", None),
    ("blocks_deliveries_per_s", "deliveries/s with 100 blockers", "{:,.0f}", None),
    ("blocks_cpu_us_per_delivery", "server CPU us/delivery with blockers", "{:.2f}", None),
    ("churn_cpu_pct", "server CPU % at 100 joins+leaves/s", "{:.1f}", None),
    ("idle_cpu_pct", "server CPU % idle (same members)", "{:.1f}", None),
    ("churn_cpu_us_per_op", "server CPU us per join/leave", "{:.0f}", None),
]


class Plan:
    def __init__(self, quick: bool) -> None:
        self.members = 1000
        # Each poster posts once a second: 20 posts/s, 20,000 deliveries/s (well under
        # what the burst phase shows the server can take, so latency is not queueing).
        self.paced_rate = 20.0
        self.paced_seconds = 2.0 if quick else 5.0
        self.burst_posts = 200 if quick else 600
        self.churners = 100
        self.churn_seconds = 2.0 if quick else 5.0
        self.phase_cap = 60.0  # no phase may take longer than this


def token(user: str) -> str:
    exp = int(time.time()) + 3600
    return jwt.encode({"sub": user, "userId": user, "exp": exp}, SECRET, algorithm="HS256")


def member(i: int) -> str:
    return f"m{i}"


async def _api(server: RunningServer, method: str, path: str, body: Any, key: str) -> Any:
    import aiohttp

    url = f"http://127.0.0.1:{server.port}{path}"
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, json=body, headers=headers) as r,
    ):
        text = await r.text()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path} -> {r.status}: {text[:200]}")
        return json.loads(text) if text else None


async def _post_all(posters: list[Publisher], count: int, rate: float | None, cap: float) -> int:
    """``count`` posts spread round-robin over the posters, paced at ``rate`` per second
    (None: as fast as the answers come); returns the posts answered 201."""
    path = f"/api/rooms/{ROOM}/messages"
    done = 0
    started = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal done
        if rate is not None:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        # "benchmsg" is wsload's counting mark; t0 is read back by the regex set below.
        body = json.dumps({"content": f"{wsload.PUB_TYPE} t0={time.time_ns()}"}).encode()
        status, resp, _ = await posters[i % len(posters)].post(path, body)
        if status != 201:
            raise RuntimeError(f"post -> {status}: {resp[:200]!r}")
        done += 1

    async with asyncio.timeout(cap):
        await asyncio.gather(*(one(i) for i in range(count)))
    return done


def _pct(samples: list[int], q: float) -> float:
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] / 1e6


async def run_rooms(log_dir: Path, *, quick: bool = False) -> Any:
    """Run every phase against a fresh server; returns run.py's ``Result``-like object
    (``metrics``, ``notes``, ``error``)."""
    from types import SimpleNamespace

    plan = Plan(quick)
    res = SimpleNamespace(metrics={}, notes=[], error=None)
    spec = tidings_spec(SECRET, API_KEY)
    spec.env["TIDINGS_PRESENCE_GRACE"] = "1"
    spec.env["TIDINGS_MAX_SUBSCRIPTIONS"] = "10"
    if os.environ.get("ROOMS_STORE"):
        spec.env["TIDINGS_STORE_URL"] = os.environ["ROOMS_STORE"]
    server = await start_server(spec, log_dir, "rooms")
    subs: list[WsSubscriber] = []
    posters: list[Publisher] = []
    # The content is a JSON string, so t0 arrives as "t0=<ns>" rather than "t0":<ns>.
    saved_re = wsload._T0_RE
    wsload._T0_RE = re.compile(rb"t0=(\d+)")  # type: ignore[misc]
    try:
        await _api(server, "POST", "/api/rooms", {"id": ROOM}, API_KEY)
        users = [member(i) for i in range(plan.members + plan.churners)]
        await _api(server, "PUT", f"/api/rooms/{ROOM}/members", {"userIds": users[:1000]}, API_KEY)
        await _api(server, "PUT", f"/api/rooms/{ROOM}/members", {"userIds": users[1000:]}, API_KEY)
        tally = Tally()
        async with asyncio.timeout(plan.phase_cap):
            for i in range(plan.members):
                path = f"/ws?token={token(member(i))}"
                subs.append(
                    await open_subscriber(tally, "127.0.0.1", server.port, path, f"room:{ROOM}")
                )
        for i in range(POSTERS):
            pub = Publisher("127.0.0.1", server.port, token(member(i)), 1)
            await pub.start()
            posters.append(pub)

        # 1. paced latency
        tally.latencies_ns, tally.app_latencies_ns = [], []
        count = int(plan.paced_rate * plan.paced_seconds)
        base = tally.delivered
        await _post_all(posters, count, plan.paced_rate, plan.phase_cap)
        async with asyncio.timeout(plan.phase_cap):
            await tally.reach(base + count * plan.members)
        res.metrics["paced_p50_ms"] = _pct(tally.latencies_ns, 0.50)
        res.metrics["paced_p99_ms"] = _pct(tally.latencies_ns, 0.99)
        tally.latencies_ns = tally.app_latencies_ns = None

        async def burst(prefix: str, expected_per_post: float) -> None:
            base = tally.delivered
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            posted = await _post_all(posters, plan.burst_posts, None, plan.phase_cap)
            async with asyncio.timeout(plan.phase_cap):
                await tally.reach(base + int(posted * expected_per_post))
            seconds, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
            delivered = tally.delivered - base
            res.metrics[f"{prefix}deliveries_per_s"] = delivered / seconds
            res.metrics[f"{prefix}cpu_us_per_delivery"] = cpu / delivered * 1e6

        # 2. burst
        await burst("", plan.members)

        # 3. the same burst with 100 members blocking one of five posters
        for j in range(100):
            blocker, blocked = member(100 + j), member(j % 5)
            await _api(server, "PUT", f"/api/me/blocks/{blocked}", None, token(blocker))
        # Posters 0-4 reach 980 members each, the other 15 every member.
        per_post = (5 * (plan.members - 20) + 15 * plan.members) / POSTERS
        await burst("blocks_", per_post)

        # 4. presence churn against an idle baseline
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        await asyncio.sleep(plan.churn_seconds)  # the baseline: measured, not waited on
        idle = (server.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
        churners: list[WsSubscriber] = []
        async with asyncio.timeout(plan.phase_cap):
            for i in range(plan.churners):
                path = f"/ws?token={token(member(plan.members + i))}"
                churners.append(
                    await open_subscriber(Tally(), "127.0.0.1", server.port, path, None)
                )
        sub = json.dumps({"type": "subscribe", "channel": f"room:{ROOM}"}).encode()
        unsub = json.dumps({"type": "unsubscribe", "channel": f"room:{ROOM}"}).encode()
        joined = [False] * len(churners)
        ops = int(100 * plan.churn_seconds)
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        for k in range(ops):
            delay = t0 + k / 100 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            c = k % len(churners)
            churners[c]._send(client_frame(0x1, unsub if joined[c] else sub))
            joined[c] = not joined[c]
        seconds, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
        res.metrics["churn_cpu_pct"] = cpu / seconds * 100
        res.metrics["idle_cpu_pct"] = idle * 100
        res.metrics["churn_cpu_us_per_op"] = max(0.0, cpu - idle * seconds) / ops * 1e6
        for c in churners:
            c.close()
        if tally.unexpected_closes:
            res.notes.append(f"{tally.unexpected_closes} members were disconnected")
        res.notes.append(
            f"rooms: {plan.members} members, {POSTERS} posters, paced {plan.paced_rate:g} posts/s "
            f"for {plan.paced_seconds:g}s, bursts of {plan.burst_posts} posts"
        )
    except (RuntimeError, OSError, TimeoutError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        wsload._T0_RE = saved_re  # type: ignore[misc]
        for s in subs:
            s.close()
        for p in posters:
            p.close()
        await server.stop()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter phases")
    args = ap.parse_args()
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {LOADGEN_CORE})
    log_dir = Path(tempfile.mkdtemp(prefix="tidings-bench-rooms-"))
    print(f"logs in {log_dir}", flush=True)
    res = asyncio.run(run_rooms(log_dir, quick=args.quick))
    for key, label, fmt, _ in METRICS:
        value = res.metrics.get(key)
        print(f"{label:45} {fmt.format(value) if value is not None else '-'}")
    for note in res.notes:
        print("note:", note)
    if res.error:
        print("error:", res.error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
