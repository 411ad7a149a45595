"""The inbox ledger across three instances, one killed while it runs: nothing lost."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import asyncpg
import websockets

from .cluster import Instance, cluster, pg_schema
from .conftest import TIMEOUT, recv, token
from .test_inbox_ledger import Ledger, _note

USERS = [f"user{i:02d}" for i in range(30)]
TOTAL = 1500
PUBLISHERS = 12
KILL_AFTER = TOTAL // 3


class Fleet:
    """The instances still alive; clients and publishers pick among them."""

    def __init__(self, nodes: list[Instance]) -> None:
        self.nodes = nodes
        self.dead: set[int] = set()

    def pick(self, rng: random.Random) -> Instance:
        alive = [n for i, n in enumerate(self.nodes) if i not in self.dead]
        return alive[rng.randrange(len(alive))]


async def publish_all(fleet: Fleet, ledger: Ledger, rng: random.Random) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(TOTAL):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            if i == KILL_AFTER and not fleet.dead:
                fleet.nodes[0].kill()
                fleet.dead.add(0)
            user = USERS[rng.randrange(len(USERS))]
            key = f"ledger-{i}"
            body = {"userId": user, "type": "ledger", "title": f"#{i}", "data": {"i": i}}
            for _ in range(40):  # any failure: the same key again, through any instance
                try:
                    status, answer = await fleet.pick(rng).api(
                        "POST", "/api/notifications", body, headers={"Idempotency-Key": key}
                    )
                except (TimeoutError, OSError):
                    status, answer = 0, None
                if status in (200, 201):
                    [n] = answer["notifications"]
                    assert ledger.owner.setdefault(n["id"], user) == user
                    ledger.accepted_keys.add(key)
                    break
                ledger.retries += 1
            else:
                raise AssertionError(f"create {i} never accepted")

    await asyncio.gather(*(worker() for _ in range(PUBLISHERS)))


async def churn(
    fleet: Fleet, ledger: Ledger, user: str, stop: asyncio.Event, rng: random.Random
) -> None:
    """Connect to a live instance, read a while, drop (or be dropped by a kill), repeat."""
    while not stop.is_set():
        node = fleet.pick(rng)
        url = f"{node.ws_url}?token={token(user)}&lastSeq={ledger.last_seq[user]}"
        try:
            async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
                ledger.connections += 1
                seen: dict[str, int] = {}
                for _ in range(rng.randint(1, 60)):
                    try:
                        # A random attention span: client behaviour, not synchronisation.
                        raw = await asyncio.wait_for(ws.recv(), rng.uniform(0.01, 0.3))
                    except TimeoutError:
                        break
                    _note(ledger, user, json.loads(raw), seen)
        except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake):
            continue  # the instance was killed under us: reconnect elsewhere


async def collect_rest(fleet: Fleet, ledger: Ledger, user: str, expected: set[str]) -> None:
    node = fleet.pick(random.Random(user))
    url = f"{node.ws_url}?token={token(user)}&lastSeq={ledger.last_seq[user]}"
    async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
        seen: dict[str, int] = {}
        async with asyncio.timeout(TIMEOUT * 4):
            while not expected <= ledger.received[user]:
                _note(ledger, user, await recv(ws), seen)


async def test_cluster_ledger_with_an_instance_killed(tmp_path: Path) -> None:
    """1,500 notifications to 30 churning users over three instances, one SIGKILLed midway:
    every accepted one arrives, to the right user, in seq order, one row per key."""
    settings = {"TIDINGS_MAX_CONNECTIONS_PER_USER": "10"}
    async with (
        pg_schema() as store,
        cluster(3, tmp_path, store_url=store, settings=settings) as nodes,
    ):
        fleet = Fleet(nodes)
        ledger = Ledger()
        rng = random.Random(20261122)
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(churn(fleet, ledger, u, stop, random.Random(rng.random())))
            for u in USERS
        ]
        await publish_all(fleet, ledger, rng)
        stop.set()
        await asyncio.gather(*clients)
        expected: dict[str, set[str]] = {u: set() for u in USERS}
        for nid, user in ledger.owner.items():
            expected[user].add(nid)
        await asyncio.gather(*(collect_rest(fleet, ledger, u, expected[u]) for u in USERS))
        conn = await asyncpg.connect(store.split("?")[0])
        schema = store.split("search_path=")[1]
        rows = await conn.fetchval(f"SELECT COUNT(*) FROM {schema}.notifications")
        keys = await conn.fetchval(f"SELECT COUNT(*) FROM {schema}.idempotency")
        await conn.close()

    for user in USERS:
        for nid in ledger.received[user]:
            if ledger.owner.get(nid) != user:
                ledger.wrong_user += 1
    delivered = sum(len(ledger.received[u] & expected[u]) for u in USERS)
    print(
        f"\ncluster ledger: accepted={len(ledger.owner)} rows={rows} keys={keys} "
        f"delivered={delivered} wrong_user={ledger.wrong_user} "
        f"order_violations={ledger.order_violations} connections={ledger.connections} "
        f"retries={ledger.retries}"
    )
    assert fleet.dead == {0}
    assert len(ledger.accepted_keys) == TOTAL
    assert len(ledger.owner) == rows == keys == TOTAL
    assert delivered == TOTAL
    assert ledger.wrong_user == 0
    assert ledger.order_violations == 0  # seq order per connection, across instances too
    assert ledger.connections > len(USERS)
