"""CPU per delivery of tidings mounted in an ASGI app (uvicorn) beside `tidings serve`.

Each server runs in its own process on 127.0.0.1; 100 WebSocket clients subscribe to one
channel, 300 publications go through the HTTP API, and the server process's CPU time
(from /proc) is divided by the deliveries. Run: ``.venv/bin/python bench/asgi.py``.
The figures are in docs/asgi.md ("Cost").
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import websockets

from tidings.auth import mint

SECRET = "bench-secret-0123456789-abcdefghijklmnop"
KEY = "bench-api-key-0123456789"
CLIENTS, PUBLICATIONS, ROUNDS = 100, 300, 2
APP = """
from fastapi import FastAPI
from tidings.asgi import TidingsASGI
from tidings.config import load
tidings = TidingsASGI(load())
app = FastAPI(lifespan=tidings.lifespan)
app.mount("/realtime", tidings)
"""
# uvicorn on a socket bound here, so the port (0: any free one) can be read back.
LAUNCH = """
import socket, sys, uvicorn
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(1024)
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config("app:app", log_level="warning", ws=sys.argv[1])).run(sockets=[sock])
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def start(kind: str, folder: str) -> tuple[asyncio.subprocess.Process, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "PYTHONPATH": folder,
        "TIDINGS_JWT_SECRET": SECRET,
        "TIDINGS_API_KEYS": KEY,
        "TIDINGS_STORE_URL": ":memory:",
        "TIDINGS_LOG_LEVEL": "warning",
    }
    pipe = asyncio.subprocess.PIPE
    if kind == "standalone":
        args = ["-m", "tidings", "serve", "--port", "0"]
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, env=env, stdout=pipe)
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode()
        return proc, f"127.0.0.1:{line.rsplit(':', 1)[1].strip()}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCH, kind, env=env, cwd=folder, stdout=pipe
    )
    assert proc.stdout is not None
    return proc, f"127.0.0.1:{int(await proc.stdout.readline())}/realtime"


async def ready(base: str) -> None:
    async with asyncio.timeout(30), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://{base}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # polling a starting process


async def measure(kind: str, folder: str) -> tuple[float, float]:
    """(µs of server CPU per delivery, seconds) for one server kind."""
    proc, base = await start(kind, folder)
    try:
        await ready(base)
        sockets = []
        for i in range(CLIENTS):
            jwt = mint(SECRET, f"u{i}", now=time.time())
            ws = await websockets.connect(f"ws://{base}/ws?token={jwt}", max_size=None)
            await ws.recv()
            await ws.send(json.dumps({"type": "subscribe", "channel": "news", "id": "s"}))
            await ws.recv()
            sockets.append(ws)
        total = CLIENTS * PUBLICATIONS
        done = asyncio.Event()
        got = [0]

        async def read(ws: websockets.ClientConnection) -> None:
            for _ in range(PUBLICATIONS):
                await ws.recv()
                got[0] += 1
            if got[0] == total:
                done.set()

        readers = [asyncio.create_task(read(ws)) for ws in sockets]
        before, started = cpu_seconds(proc.pid), time.perf_counter()
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for n in range(PUBLICATIONS):
                body = {"channel": "news", "data": {"n": n, "pad": "x" * 100}}
                async with http.post(f"http://{base}/api/publish", json=body) as r:
                    assert r.status == 200, await r.text()
        await asyncio.wait_for(done.wait(), 120)
        cpu, wall = cpu_seconds(proc.pid) - before, time.perf_counter() - started
        await asyncio.gather(*readers)
        for ws in sockets:
            await ws.close()
        return cpu / total * 1e6, wall
    finally:
        proc.terminate()
        await proc.wait()


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        await asyncio.to_thread(Path(folder, "app.py").write_text, APP)
        for n in range(ROUNDS):
            for kind in ("standalone", "websockets-sansio", "websockets"):
                us, wall = await measure(kind, folder)
                print(f"round {n} {kind:18s} {us:6.1f} µs CPU per delivery ({wall:.1f} s)")


if __name__ == "__main__":
    asyncio.run(main())
