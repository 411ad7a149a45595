"""The inbox ledger across three instances, one killed while it runs: nothing lost."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import asyncpg
import pytest

from ..conftest import TIMEOUT
from ..inbox.test_inbox_ledger import Ledger, churn, collect_rest, publish_all
from ..processes import Instance, cluster, pg_schema

USERS = [f"user{i:02d}" for i in range(30)]
TOTAL = 1500
PUBLISHERS = 12
KILL_AFTER = TOTAL // 3


class Fleet:
    """The instances still alive; clients and publishers pick among them."""

    def __init__(self, nodes: list[Instance], rng: random.Random) -> None:
        self.nodes = nodes
        self.dead: set[int] = set()
        self.rng = rng

    def pick(self) -> Instance:
        alive = [n for i, n in enumerate(self.nodes) if i not in self.dead]
        return alive[self.rng.randrange(len(alive))]

    def kill_first_at(self, i: int) -> None:
        if i == KILL_AFTER and not self.dead:
            self.nodes[0].kill()
            self.dead.add(0)


# Three processes, 1,500 notifications and churning clients: alone about 30 s, on a busy
# 2-core machine (seen at a load average of 15) over 120 s; the bound scales with TIMEOUT.
@pytest.mark.timeout(TIMEOUT * 30)
async def test_cluster_ledger_with_an_instance_killed(tmp_path: Path) -> None:
    """1,500 notifications to 30 churning users over three instances, one SIGKILLed midway:
    every accepted one arrives, to the right user, in seq order, one row per key."""
    settings = {"TIDINGS_MAX_CONNECTIONS_PER_USER": "10"}
    async with (
        pg_schema() as store,
        cluster(3, tmp_path, store_url=store, settings=settings) as nodes,
    ):
        rng = random.Random(20261122)
        fleet = Fleet(nodes, random.Random(rng.random()))
        ledger = Ledger(USERS)
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(churn(fleet.pick, ledger, u, stop, random.Random(rng.random())))
            for u in USERS
        ]
        await publish_all(
            fleet.pick,
            ledger,
            rng,
            total=TOTAL,
            users=USERS,
            publishers=PUBLISHERS,
            before=fleet.kill_first_at,
        )
        stop.set()
        await asyncio.gather(*clients)
        expected: dict[str, set[str]] = {u: set() for u in USERS}
        for nid, user in ledger.owner.items():
            expected[user].add(nid)
        await asyncio.gather(*(collect_rest(fleet.pick, ledger, u, expected[u]) for u in USERS))
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
