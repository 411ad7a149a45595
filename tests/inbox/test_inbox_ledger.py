"""The inbox ledger: thousands of notifications, clients coming and going, nothing lost."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import websockets

from ..conftest import TIMEOUT, Harness, ServerFactory, recv, token

USERS = [f"user{i:02d}" for i in range(50)]
TOTAL = 5000
PUBLISHERS = 16


class Ledger:
    """What the backend got accepted and what each user's clients saw."""

    def __init__(self, users: list[str] = USERS) -> None:
        self.owner: dict[str, str] = {}  # notification id -> user it was for
        self.accepted_keys: set[str] = set()
        self.received: dict[str, set[str]] = {u: set() for u in users}
        self.last_seq: dict[str, int] = dict.fromkeys(users, 0)
        self.wrong_user = 0
        self.order_violations = 0
        self.connections = 0
        self.retries = 0
        self.replays = 0


Pick = Callable[[], Harness]
"""Which server a client or a request goes to next (one server, or a live instance)."""


async def publish_all(
    pick: Pick,
    ledger: Ledger,
    rng: random.Random,
    *,
    total: int = TOTAL,
    users: list[str] = USERS,
    publishers: int = PUBLISHERS,
    before: Callable[[int], None] | None = None,
) -> None:
    """Create ``total`` notifications, each retried with its key until accepted; ``before``
    is called with each index first (the cluster test kills an instance there)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            if before is not None:
                before(i)
            user = users[rng.randrange(len(users))]
            key = f"ledger-{i}"
            body = {"userId": user, "type": "ledger", "title": f"#{i}", "data": {"i": i}}
            for _ in range(40):  # retried on any non-2xx or transport error, same key
                h = pick()
                try:
                    status, answer = await h.api(
                        "POST", "/api/notifications", body, headers={"Idempotency-Key": key}
                    )
                except (TimeoutError, OSError, aiohttp.ClientError):  # e.g. its server killed
                    status, answer = 0, None
                if status in (200, 201):
                    [n] = answer["notifications"]
                    assert ledger.owner.setdefault(n["id"], user) == user
                    ledger.accepted_keys.add(key)
                    if rng.random() < 0.05:
                        # As if the response had been lost: the retry must not create again.
                        try:
                            status, again = await pick().api(
                                "POST", "/api/notifications", body, headers={"Idempotency-Key": key}
                            )
                        except (TimeoutError, OSError, aiohttp.ClientError):
                            break  # that server is gone; the create itself was accepted
                        # A refusal that did nothing (an instance draining, its store or
                        # broker briefly unavailable) is allowed; anything else must replay.
                        assert status in (200, 429, 503), (status, again)
                        if status == 200:
                            assert again["replayed"], again
                            assert again["notifications"] == [n]
                            ledger.replays += 1
                    break
                ledger.retries += 1
            else:
                raise AssertionError(f"create {i} never accepted")

    await asyncio.gather(*(worker() for _ in range(publishers)))


def _note(ledger: Ledger, user: str, msg: dict[str, Any], seen: dict[str, int]) -> None:
    if msg["type"] != "notification":
        return
    nid, seq = msg["id"], msg["data"]["seq"]
    if nid in seen:
        return  # a redelivery or an overlap: dedup by id
    if seen and seq <= max(seen.values()):
        ledger.order_violations += 1
    seen[nid] = seq
    ledger.received[user].add(nid)
    ledger.last_seq[user] = max(ledger.last_seq[user], seq)


async def churn(
    pick: Pick, ledger: Ledger, user: str, stop: asyncio.Event, rng: random.Random
) -> None:
    """Connect, read a random number of messages (or for a random while), drop, repeat;
    a connection that breaks (its server killed) is simply made again elsewhere."""
    while not stop.is_set():
        url = f"{pick().ws_url}?token={token(user)}&lastSeq={ledger.last_seq[user]}"
        try:
            async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
                ledger.connections += 1
                seen: dict[str, int] = {}
                for _ in range(rng.randint(1, 60)):
                    try:
                        # Client behaviour, not synchronisation: a random attention span.
                        raw = await asyncio.wait_for(ws.recv(), rng.uniform(0.01, 0.3))
                    except TimeoutError:
                        break
                    _note(ledger, user, json.loads(raw), seen)
        except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake):
            continue


async def collect_rest(pick: Pick, ledger: Ledger, user: str, expected: set[str]) -> None:
    """One last connection per user reads until everything accepted for them has arrived."""
    url = f"{pick().ws_url}?token={token(user)}&lastSeq={ledger.last_seq[user]}"
    async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
        seen: dict[str, int] = {}
        async with asyncio.timeout(TIMEOUT * 4):
            while not expected <= ledger.received[user]:
                _note(ledger, user, await recv(ws), seen)


async def test_ledger_nothing_lost_nothing_misrouted(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """5,000 notifications to 50 churning users: all arrive, to the right user, in seq order."""
    db = tmp_path / "ledger.db"
    h = await make_server(store_url=str(db), max_connections_per_user=10, rate_limit_enabled=False)
    ledger = Ledger()
    rng = random.Random(20261122)
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(churn(lambda: h, ledger, u, stop, random.Random(rng.random())))
        for u in USERS
    ]
    await publish_all(lambda: h, ledger, rng)
    stop.set()
    await asyncio.gather(*clients)

    expected: dict[str, set[str]] = {u: set() for u in USERS}
    for nid, user in ledger.owner.items():
        expected[user].add(nid)
    await asyncio.gather(*(collect_rest(lambda: h, ledger, u, expected[u]) for u in USERS))
    await h.server.stop()

    for user in USERS:
        for nid in ledger.received[user]:
            if ledger.owner.get(nid) != user:
                ledger.wrong_user += 1
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT COUNT(*) FROM notifications").fetchone()[0]
        keys = conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0]
    delivered = sum(len(ledger.received[u] & expected[u]) for u in USERS)
    print(
        f"\nledger: accepted={len(ledger.owner)} keys={len(ledger.accepted_keys)} rows={rows} "
        f"idempotency_records={keys} delivered={delivered} wrong_user={ledger.wrong_user} "
        f"order_violations={ledger.order_violations} connections={ledger.connections} "
        f"retries={ledger.retries} replays={ledger.replays}"
    )
    assert len(ledger.accepted_keys) == TOTAL
    assert len(ledger.owner) == rows == keys == TOTAL
    assert delivered == TOTAL
    assert ledger.wrong_user == 0
    assert ledger.order_violations == 0
    assert ledger.connections > len(USERS)
    assert ledger.replays > 0
