"""The chaos ledger at full size (issue 13 item 5): three instances on a private Redis and
PostgreSQL take notifications and channel publications while everything breaks in turn.

Faults, each started when the notifications reach a share of the total: an instance
SIGKILLed, Redis SIGSTOPped for 10 s, Redis restarted (it keeps nothing: streams and
registry are lost), the notifications table locked for 3 s, every client socket reset.
Backends retry every create (same Idempotency-Key) and every publication on any non-2xx.
The test prints one line; all but ``accepted`` must be 0:

- ``lost``: accepted notifications that never reached their user;
- ``duplicate_rows``: rows (or idempotency records) beyond the accepted notifications;
- ``order_violations``: notifications a connection got out of ``seq`` order;
- ``undetected``: publications missing from what a subscriber saw of a channel with no
  sign it could act on (a gap in offsets within one epoch, without a ``subscribed`` that
  says ``recovered: false``).

``TIDINGS_CHAOS_NOTIFICATIONS`` sets the size: 20,000 by default, the full size of issue
13 (64 to 106 s on this shared 2-core machine, at load averages of 3 to 7); a CI machine
that cannot fit it in its budget sets a lower figure (10,000 took 43 to 57 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import websockets

from ..conftest import TIMEOUT, recv, token
from ..inbox.test_inbox_ledger import Ledger, _note, collect_rest
from ..processes import PG_URL, Instance, PrivateRedis, cluster, pg_schema
from .test_cluster_ledger import Fleet

NOTIFICATIONS = int(os.environ.get("TIDINGS_CHAOS_NOTIFICATIONS", "20000"))
USERS = [f"chaos{i:02d}" for i in range(40)]
CHANNELS = [f"news:chaos{i}" for i in range(4)]
WATCHERS = 8  # channel subscribers, each on every channel
CREATORS = 24  # notification creates in flight
# When each fault starts, as a share of the notifications accepted.
FAULTS_AT = (0.05, 0.15, 0.4, 0.55, 0.7)


class Progress:
    """Accepted notifications, and events for the shares the faults wait for."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.accepted = 0
        self._marks = {share: asyncio.Event() for share in FAULTS_AT}

    def add(self) -> None:
        self.accepted += 1
        for share, event in self._marks.items():
            if self.accepted >= share * self.total:
                event.set()

    async def reach(self, share: float) -> None:
        await self._marks[share].wait()


async def _api(fleet: Fleet, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    try:
        return await fleet.pick().api("POST", path, body, headers=headers)
    except (TimeoutError, OSError, aiohttp.ClientError, json.JSONDecodeError):
        return 0, None  # its server killed, or Redis/the store stalled past the client


async def create_all(
    fleet: Fleet,
    ledger: Ledger,
    progress: Progress,
    rng: random.Random,
    made: dict[str, tuple[int, float]],
) -> None:
    """Every notification created once, retried with its key on any non-2xx."""
    queue = list(range(progress.total))
    queue.reverse()

    async def worker() -> None:
        while queue:
            i = queue.pop()
            user = USERS[rng.randrange(len(USERS))]
            key = f"chaos-{i}"
            body = {"userId": user, "type": "ledger", "title": f"#{i}", "data": {"i": i}}
            while True:
                status, answer = await _api(
                    fleet, "/api/notifications", body, {"Idempotency-Key": key}
                )
                if status in (200, 201):
                    [n] = answer["notifications"]
                    assert ledger.owner.setdefault(n["id"], user) == user
                    made[n["id"]] = (n["seq"], time.monotonic())
                    if key not in ledger.accepted_keys:
                        ledger.accepted_keys.add(key)
                        progress.add()
                    break
                ledger.retries += 1
                if status in (429, 503):
                    # Retry-After is 1 s; a backend retrying sooner is allowed and
                    # keeps the test short. Client behaviour, not synchronisation.
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(worker() for _ in range(CREATORS)))


@dataclass
class Channels:
    """What the publishers had accepted and what the watchers saw."""

    accepted: int = 0
    retries: int = 0
    last: dict[str, tuple[int, str]] = field(default_factory=dict)  # channel -> top
    # (channel, epoch, offset) -> what the publisher's 200 said is there
    content: dict[tuple[str, str, int], int] = field(default_factory=dict)
    undetected: int = 0  # lost, and the client was told (or shown) nothing it could act on
    gaps: int = 0  # offsets skipped: the client resubscribes from its position
    resets: int = 0  # `recovered: false` or a new epoch: a loss the client knows of
    seen: int = 0


async def publish_channels(fleet: Fleet, chans: Channels, stop: asyncio.Event) -> None:
    """One publisher per channel, each publication retried until accepted."""

    async def one(channel: str) -> None:
        k = 0
        while not stop.is_set():
            body = {"channel": channel, "type": "tick", "data": {"k": k}}
            status, answer = await _api(fleet, "/api/publish", body, {})
            if status == 200:
                chans.accepted += 1
                chans.last[channel] = (answer["offset"], answer["epoch"])
                chans.content[channel, answer["epoch"], answer["offset"]] = k
                k += 1
                await asyncio.sleep(0.02)  # a publisher's pace (about 200/s in all)
            else:
                chans.retries += 1
                if status in (429, 503):
                    await asyncio.sleep(0.05)  # as above: a backend's retry pace

    await asyncio.gather(*(one(c) for c in CHANNELS))


class Gap(Exception):
    """A watcher saw offsets skipped: it resubscribes from its last position."""


class Watcher:
    """A subscriber to every channel that resumes from its positions, as the clients do:
    on a reconnect, and when it sees an offset skipped."""

    def __init__(self, name: str, chans: Channels) -> None:
        self.name = name
        self.chans = chans
        self.pos: dict[str, tuple[int, str]] = {}
        # The server said it recovered this channel; until the next in-order publication
        # a skip means that was not true.
        self.claimed: dict[str, bool] = {}

    def _subscribe(self, channel: str) -> str:
        cmd: dict[str, Any] = {"type": "subscribe", "channel": channel, "id": channel}
        if channel in self.pos:
            offset, epoch = self.pos[channel]
            cmd["since"] = {"offset": offset, "epoch": epoch}
        return json.dumps(cmd)

    def on(self, msg: dict[str, Any]) -> None:
        """Take one message.

        Raises:
            Gap: an offset was skipped; resubscribe from ``pos``.
        """
        channel = msg.get("channel")
        if channel not in CHANNELS:
            return
        data = msg.get("data") or {}
        chans = self.chans
        if msg["type"] == "subscribed":
            if channel not in self.pos:
                self.pos[channel] = (data["offset"], data["epoch"])
            elif data.get("recovered") is False:
                chans.resets += 1
                self.pos[channel] = (data["offset"], data["epoch"])
            elif data.get("recovered") is True:
                self.claimed[channel] = True
            return
        if msg["type"] != "tick" or "offset" not in msg:
            return
        offset, epoch = msg["offset"], msg["epoch"]
        chans.seen += 1
        if channel in self.pos:
            last, known = self.pos[channel]
            if epoch == known and offset <= last:
                return  # a repeat (recovery overlap)
            if epoch == known and offset > last + 1:
                if self.claimed.get(channel):
                    chans.undetected += offset - last - 1  # "recovered", yet skipped
                chans.gaps += 1
                self.claimed[channel] = False
                raise Gap(channel)
            if epoch != known:
                chans.resets += 1  # a new stream: the client can tell
        self.claimed[channel] = False
        expected = chans.content.get((channel, epoch, offset))
        if expected is not None and expected != data.get("k"):
            chans.undetected += 1  # a 200 for what is not at that position
        self.pos[channel] = (offset, epoch)

    async def session(self, url: str, span: int, sockets: set[Any]) -> None:
        async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
            sockets.add(ws)
            try:
                for channel in CHANNELS:
                    await ws.send(self._subscribe(channel))
                for _ in range(span):
                    self.on(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))
            finally:
                sockets.discard(ws)

    async def churn(
        self, fleet: Fleet, stop: asyncio.Event, rng: random.Random, sockets: set[Any]
    ) -> None:
        while not stop.is_set():
            url = f"{fleet.pick().ws_url}?token={token(self.name)}"
            try:
                await self.session(url, rng.randint(50, 1000), sockets)
            except (
                Gap,
                OSError,
                TimeoutError,
                websockets.ConnectionClosed,
                websockets.InvalidHandshake,
            ):
                continue

    async def catch_up(self, fleet: Fleet) -> None:
        """Last connections read every channel up to its last accepted publication."""
        async with asyncio.timeout(TIMEOUT * 4):
            while any(self.pos.get(c) != top for c, top in self.chans.last.items()):
                url = f"{fleet.pick().ws_url}?token={token(self.name)}"
                try:
                    async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
                        for channel in CHANNELS:
                            await ws.send(self._subscribe(channel))
                        while any(self.pos.get(c) != top for c, top in self.chans.last.items()):
                            self.on(await recv(ws))
                except Gap:
                    continue


async def churn_inbox(
    fleet: Fleet,
    ledger: Ledger,
    user: str,
    stop: asyncio.Event,
    rng: random.Random,
    sockets: set[Any],
) -> None:
    """A user's tabs coming and going, resuming from the last seq seen."""
    while not stop.is_set():
        url = f"{fleet.pick().ws_url}?token={token(user)}&lastSeq={ledger.last_seq[user]}"
        try:
            async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
                sockets.add(ws)
                ledger.connections += 1
                seen: dict[str, int] = {}
                try:
                    for _ in range(rng.randint(1, 200)):
                        try:
                            # A random attention span: client behaviour.
                            raw = await asyncio.wait_for(ws.recv(), rng.uniform(0.3, 3))
                        except TimeoutError:
                            break
                        _note(ledger, user, json.loads(raw), seen)
                finally:
                    sockets.discard(ws)
        except (OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake):
            continue


async def chaos(
    nodes: list[Instance],
    fleet: Fleet,
    redis: PrivateRedis,
    store: str,
    progress: Progress,
    sockets: set[Any],
    log: Callable[[str], None],
) -> None:
    """Every fault in turn, each when the notifications reach its share."""
    kill_at, stop_at, restart_at, lock_at, reset_at = FAULTS_AT
    await progress.reach(kill_at)
    nodes[0].kill()
    fleet.dead.add(0)
    log("killed instance 0")

    await progress.reach(stop_at)
    assert redis.proc is not None
    redis.proc.send_signal(signal.SIGSTOP)
    log("Redis stopped")
    try:
        await asyncio.sleep(10)  # the fault's length, not a wait for something
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    log("Redis continued")

    await progress.reach(restart_at)
    await redis.stop()
    await redis.start()
    log("Redis restarted")

    await progress.reach(lock_at)
    schema = store.split("search_path=")[1]
    conn = await asyncpg.connect(PG_URL)
    try:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {schema}.notifications IN ACCESS EXCLUSIVE MODE")
            log("notifications locked")
            await asyncio.sleep(3)  # the fault's length
    finally:
        await conn.close()
    log("notifications unlocked")

    await progress.reach(reset_at)
    for ws in list(sockets):
        ws.transport.abort()  # a reset, not a close: no close frame either way
    log(f"reset {len(sockets)} client sockets")


async def _counted(job: Awaitable[None]) -> None:
    with contextlib.suppress(TimeoutError):
        await job


async def _run(tmp_path: Path, log: Callable[[str], None], started: float) -> dict[str, Any]:
    redis = PrivateRedis(tmp_path)
    await redis.start()
    settings = {
        "TIDINGS_MAX_CONNECTIONS_PER_USER": "20",
        "TIDINGS_REDIS_COMMAND_TIMEOUT": "0.5",
        "TIDINGS_LOG_LEVEL": "INFO",
    }
    try:
        async with (
            pg_schema() as store,
            cluster(3, tmp_path, store_url=store, redis_url=redis.url, settings=settings) as nodes,
        ):
            rng = random.Random(20261205)
            fleet = Fleet(nodes, random.Random(rng.random()))
            ledger = Ledger(USERS)
            chans = Channels()
            progress = Progress(NOTIFICATIONS)
            made: dict[str, tuple[int, float]] = {}  # id -> seq, when accepted
            stop = asyncio.Event()
            sockets: set[Any] = set()
            watchers = [Watcher(f"watcher{i}", chans) for i in range(WATCHERS)]
            background = [
                asyncio.create_task(
                    churn_inbox(fleet, ledger, u, stop, random.Random(rng.random()), sockets)
                )
                for u in USERS
            ]
            background += [
                asyncio.create_task(w.churn(fleet, stop, random.Random(rng.random()), sockets))
                for w in watchers
            ]
            background.append(asyncio.create_task(publish_channels(fleet, chans, stop)))
            faults = asyncio.create_task(chaos(nodes, fleet, redis, store, progress, sockets, log))
            try:
                await create_all(fleet, ledger, progress, rng, made)
                log("notifications done")
                await faults
            finally:
                stop.set()
                faults.cancel()
                await asyncio.gather(*background, return_exceptions=True)
            expected: dict[str, set[str]] = {u: set() for u in USERS}
            for nid, user in ledger.owner.items():
                expected[user].add(nid)
            # What has not arrived by the deadline is counted, not raised: the line says.
            await asyncio.gather(
                *(_counted(collect_rest(fleet.pick, ledger, u, expected[u])) for u in USERS),
                *(_counted(w.catch_up(fleet)) for w in watchers),
            )
            log("collected")
            conn = await asyncpg.connect(PG_URL)
            schema = store.split("search_path=")[1]
            rows = await conn.fetchval(f"SELECT COUNT(*) FROM {schema}.notifications")
            keys = await conn.fetchval(f"SELECT COUNT(*) FROM {schema}.idempotency")
            await conn.close()
    finally:
        await redis.stop()
    for user in USERS:
        for nid in ledger.received[user]:
            if ledger.owner.get(nid) != user:
                ledger.wrong_user += 1
    delivered = sum(len(ledger.received[u] & expected[u]) for u in USERS)
    for user in USERS:
        for nid in sorted(expected[user] - ledger.received[user]):
            seq, when = made[nid]
            log(f"lost {nid} seq={seq} of {user} accepted at {when - started:.1f}s")
    accepted = len(ledger.accepted_keys)
    return {
        "accepted": accepted,
        "lost": accepted - delivered,
        "duplicate_rows": max(rows, keys, len(ledger.owner)) - accepted,
        "order_violations": ledger.order_violations,
        "undetected": chans.undetected,
        "wrong_user": ledger.wrong_user,
        "publications": chans.accepted,
        "publications_seen": chans.seen,
        "detected_resets": chans.resets,
        "gaps": chans.gaps,
        "watchers_behind": sum(
            any(w.pos.get(c) != top for c, top in chans.last.items()) for w in watchers
        ),
        "retries": ledger.retries + chans.retries,
        "connections": ledger.connections,
        "dead": sorted(fleet.dead),
    }


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT * 30 * max(1, NOTIFICATIONS // 10000))
async def test_chaos_ledger(tmp_path: Path) -> None:
    """Notifications and history publications through a killed instance, a hung and a
    restarted Redis, a locked table and reset sockets: nothing accepted is lost, doubled,
    reordered, or lost without the subscriber being told."""
    started = time.monotonic()
    events: list[str] = []

    def log(event: str) -> None:
        events.append(f"{time.monotonic() - started:.1f}s {event}")

    r = await _run(tmp_path, log, started)
    print(
        f"\nchaos ledger: accepted={r['accepted']} lost={r['lost']} "
        f"duplicate_rows={r['duplicate_rows']} order_violations={r['order_violations']} "
        f"undetected={r['undetected']} | publications={r['publications']} "
        f"seen={r['publications_seen']} gaps={r['gaps']} detected_resets={r['detected_resets']} "
        f"watchers_behind={r['watchers_behind']} "
        f"retries={r['retries']} connections={r['connections']} "
        f"in {time.monotonic() - started:.0f}s ({'; '.join(events)})"
    )
    assert r["dead"] == [0]
    assert r["accepted"] == NOTIFICATIONS
    assert r["lost"] == 0
    assert r["duplicate_rows"] == 0
    assert r["order_violations"] == 0
    assert r["wrong_user"] == 0
    assert r["undetected"] == 0
    assert r["publications"] > 0
    assert r["publications_seen"] > 0
    assert r["watchers_behind"] == 0
