"""docs/asgi.md's apps under a real uvicorn with two workers (two processes, one port):
with broker_url on the test Redis (a prefix of their own) the workers are one server;
and the Django example, served the same way."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from ..conftest import API_KEY, SECRET, TIMEOUT, recv, recv_type, request, token

DOC = Path(__file__).resolve().parents[2] / "docs" / "asgi.md"
REDIS = "redis://127.0.0.1:6379/0"
# What `uvicorn <app> --workers N` does, on a socket bound here so the test can read its
# ephemeral port back (uvicorn's own --port 0 would not say which port it got).
LAUNCHER = """
import socket, sys, uvicorn
from uvicorn.supervisors import Multiprocess
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(128)
print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(sys.argv[1], workers=int(sys.argv[2]), log_level="warning")
Multiprocess(config, sockets=[sock]).run()
"""


def doc_files() -> dict[str, str]:
    """The page's ``<!-- test: asgi <path> -->`` blocks, by path."""
    pattern = r"<!-- test: asgi (\S+) -->\n```python\n(.*?)```"
    return dict(re.findall(pattern, DOC.read_text(), flags=re.DOTALL))


def write_files(folder: Path, files: dict[str, str]) -> None:
    for name, code in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)


@asynccontextmanager
async def uvicorn_workers(
    app: str, workers: int, cwd: Path, env: dict[str, str]
) -> AsyncIterator[int]:
    """``app`` under uvicorn with ``workers`` processes; yields the port."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAUNCHER,
        app,
        str(workers),
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd), **env},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(TIMEOUT * 3):
            yield int(await proc.stdout.readline())
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(TIMEOUT * 3):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise AssertionError("uvicorn did not exit on SIGTERM") from None


def tidings_env(**extra: str) -> dict[str, str]:
    return {
        "TIDINGS_JWT_SECRET": SECRET,
        "TIDINGS_API_KEYS": API_KEY,
        "TIDINGS_STORE_URL": ":memory:",
        **extra,
    }


async def welcomed(url: str) -> tuple[Any, str]:
    """A connection (retried while the workers start) and its worker's id prefix."""
    async with asyncio.timeout(TIMEOUT * 3):
        while True:
            try:
                ws = await websockets.connect(url)
            except (OSError, websockets.InvalidStatus):
                await asyncio.sleep(0.05)  # a worker still starting: poll its readiness
                continue
            welcome = await recv(ws)
            # client ids are client_<instance prefix>-<n>: the prefix names the worker.
            return ws, welcome["data"]["clientId"].split("_", 1)[1].rsplit("-", 1)[0]


async def one_client_per_worker(port: int, users: list[str]) -> list[Any]:
    """Open connections until each of the two workers holds one (the kernel spreads
    accepts between the workers); extra ones are closed."""
    kept: dict[str, Any] = {}
    async with asyncio.timeout(TIMEOUT * 3):
        while len(kept) < 2:
            user = users[len(kept)]
            ws, worker = await welcomed(f"ws://127.0.0.1:{port}/realtime/ws?token={token(user)}")
            if worker in kept:
                await ws.close()
            else:
                kept[worker] = ws
    return list(kept.values())


@pytest.mark.timeout(TIMEOUT * 12)
async def test_two_workers_on_redis_are_one_server(tmp_path: Path) -> None:
    """A client on each worker gets every publication and user send, whichever worker
    the backend's request lands on."""
    write_files(tmp_path, {"app.py": doc_files()["app.py"]})
    env = tidings_env(
        TIDINGS_BROKER_URL=REDIS, TIDINGS_BROKER_PREFIX=f"test-asgi-{uuid.uuid4().hex}:"
    )
    async with uvicorn_workers("app:app", 2, tmp_path, env) as port:
        alice, bob = await one_client_per_worker(port, ["alice", "bob"])
        try:
            for ws in (alice, bob):
                reply = await request(ws, {"type": "subscribe", "channel": "news"})
                assert reply["type"] == "subscribed"
            headers = {"Authorization": f"Bearer {API_KEY}"}
            base = f"http://127.0.0.1:{port}"
            # A new connection per request: the kernel picks the worker each time.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
                for n in range(6):
                    body = {"channel": "news", "type": "headline", "data": {"n": n}}
                    async with http.post(f"{base}/realtime/api/publish", json=body) as r:
                        assert r.status == 200, await r.text()
                for ws in (alice, bob):
                    got = [(await recv_type(ws, "headline"))["data"]["n"] for _ in range(6)]
                    assert got == list(range(6))
                async with http.post(f"{base}/orders/o-7/ship", params={"user_id": "bob"}) as r:
                    assert r.status == 200
                    assert await r.json() == {"status": "shipped"}
                assert (await recv_type(bob, "order_shipped"))["data"] == {"orderId": "o-7"}
                async with http.get(f"{base}/realtime/api/stats?scope=cluster") as r:
                    assert (await r.json())["totalConnections"] == 2
        finally:
            await alice.close()
            await bob.close()


DJANGO_SETTINGS = """
SECRET_KEY = "test"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = []
DATABASES = {}
"""
DJANGO_URLS = """
from django.http import HttpResponse
from django.urls import path

from mysite import views

urlpatterns = [
    path("orders/<str:order_id>/ship", views.ship),
    path("", lambda request: HttpResponse("django")),
]
"""


@pytest.mark.timeout(TIMEOUT * 12)
async def test_django_example_serves_both(tmp_path: Path) -> None:
    """The docs' Django asgi.py: Django answers its routes, tidings /realtime/, and a
    Django view reaches a WebSocket client through the embedding API."""
    files = {k: v for k, v in doc_files().items() if k.startswith("mysite/")}
    files |= {
        "mysite/__init__.py": "",
        "mysite/settings.py": DJANGO_SETTINGS,
        "mysite/urls.py": DJANGO_URLS,
    }
    write_files(tmp_path, files)
    async with uvicorn_workers("mysite.asgi:application", 1, tmp_path, tidings_env()) as port:
        ws, _ = await welcomed(f"ws://127.0.0.1:{port}/realtime/ws?token={token('carol')}")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/") as r:
                    assert (r.status, await r.text()) == (200, "django")
                url = f"http://127.0.0.1:{port}/orders/o-9/ship?user_id=carol"
                async with http.post(url) as r:
                    assert json.loads(await r.text()) == {"status": "shipped"}
                assert (await recv_type(ws, "order_shipped"))["data"] == {"orderId": "o-9"}
                async with http.get(f"http://127.0.0.1:{port}/realtime/health") as r:
                    assert (await r.json())["data"]["websocket"]["totalConnections"] == 1
        finally:
            await ws.close()
