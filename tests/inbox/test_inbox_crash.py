"""SIGKILL in the middle of a stream of creates: every 2xx survives, the database is intact."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp

from ..conftest import API_KEY, serve_env, serve_process


async def test_sigkill_loses_no_acknowledged_create(tmp_path: Path) -> None:
    """Creates answered 2xx before a SIGKILL are all there after a restart."""
    db = tmp_path / "crash.db"
    env = serve_env(TIDINGS_STORE_URL=str(db), TIDINGS_LOG_LEVEL="WARNING")
    accepted: dict[str, str] = {}  # id -> user
    headers = {"Authorization": f"Bearer {API_KEY}"}
    killed = asyncio.Event()

    async with (
        serve_process(env=env) as (proc, port),
        aiohttp.ClientSession(headers=headers) as http,
    ):
        url = f"http://127.0.0.1:{port}"

        async def writer(w: int) -> None:
            i = 0
            while not killed.is_set():
                user = f"u{(w + i) % 7}"
                try:
                    async with http.post(
                        f"{url}/api/notifications", json={"userId": user, "title": f"{w}-{i}"}
                    ) as r:
                        if r.status == 201:
                            [n] = (await r.json())["notifications"]
                            accepted[n["id"]] = user
                except (aiohttp.ClientError, OSError):
                    return  # the server is gone
                i += 1
                if len(accepted) >= 300 and not killed.is_set():
                    proc.send_signal(signal.SIGKILL)  # mid-stream: others are in flight
                    killed.set()

        await asyncio.gather(*(writer(w) for w in range(8)))
        await proc.wait()
        assert proc.returncode == -signal.SIGKILL

    async with serve_process(env=env) as (_, port):
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(headers=headers) as http:
            found: dict[str, str] = {}
            for user in {f"u{k}" for k in range(7)}:
                cursor = None
                while True:
                    q = f"?limit=100{'&cursor=' + cursor if cursor else ''}"
                    async with http.get(f"{url}/api/users/{user}/notifications{q}") as r:
                        page = await r.json()
                    found.update({n["id"]: user for n in page["items"]})
                    cursor = page["nextCursor"]
                    if cursor is None:
                        break
    missing = set(accepted) - set(found)
    print(
        f"\ncrash: accepted={len(accepted)} found_after_restart={len(found)} missing={len(missing)}"
    )
    assert not missing
    assert all(found[i] == u for i, u in accepted.items())
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
