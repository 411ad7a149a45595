"""Shared fixtures: settings, real servers on ephemeral ports, real WebSocket clients."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tidings.auth import mint
from tidings.config import Settings, load
from tidings.server import Server

# One timeout unit, scaled for slow machines (TIDINGS_TEST_TIMEOUT_SCALE=3 on a busy CI).
TIMEOUT = 10.0 * float(os.environ.get("TIDINGS_TEST_TIMEOUT_SCALE", "1"))
SECRET = "test-secret-0123456789-abcdefghijklmnop"
API_KEY = "test-api-key-0123456789"


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: a known secret and API key, nothing read from the environment."""
    namespaces = overrides.pop("namespaces", None)
    flags = {
        "jwt_secret": SECRET,
        "api_keys": [API_KEY],
        "port": 0,
        "host": "127.0.0.1",
        "store_url": ":memory:",
    }
    # TIDINGS_TEST_WS_ENGINE=lean (or aiohttp) runs every server on that WebSocket engine.
    engine = os.environ.get("TIDINGS_TEST_WS_ENGINE")
    if engine:
        flags["ws_engine"] = engine
    # TIDINGS_TEST_HTTP_FAST_PATH=false runs every server without its HTTP front.
    fast_path = os.environ.get("TIDINGS_TEST_HTTP_FAST_PATH")
    if fast_path:
        flags["http_fast_path"] = fast_path
    flags.update(overrides)
    settings = load(env={}, flags=flags)
    if namespaces:
        settings.namespaces.update(namespaces)
    return settings


def token(
    user: str = "alice", roles: tuple[str, ...] = (), ttl: float | None = 3600, **extra: Any
) -> str:
    return mint(SECRET, user, roles=roles, ttl=ttl, now=time.time(), extra=extra or None)


class Harness:
    """A running server plus helpers to talk to it as clients and as a backend."""

    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/ws"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def connect(self, query: str = "", **kwargs: Any) -> Any:
        """A websockets client connection (use with ``async with``)."""
        kwargs.setdefault("open_timeout", TIMEOUT)
        kwargs.setdefault("max_size", 2**24)
        return websockets.connect(self.ws_url + query, **kwargs)

    @asynccontextmanager
    async def client(
        self, user: str = "alice", roles: tuple[str, ...] = (), **kwargs: Any
    ) -> AsyncIterator[ClientConnection]:
        """Connected and welcomed as ``user``."""
        async with self.connect(f"?token={token(user, roles)}", **kwargs) as ws:
            welcome = await recv(ws)
            assert welcome["type"] == "welcome", welcome
            yield ws

    async def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = API_KEY,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        data: Any = raw if raw is not None else (None if body is None else json.dumps(body))
        if isinstance(data, bytes) and len(data) > 1_000_000:
            data = io.BytesIO(data)  # aiohttp warns on large raw bodies
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.url + path, data=data, headers=hdrs) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next message, parsed."""
    async with asyncio.timeout(timeout):
        raw = await ws.recv()
    msg = json.loads(raw)
    assert isinstance(msg, dict)
    return msg


async def recv_type(ws: ClientConnection, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Skip messages until one of type ``kind`` arrives."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await recv(ws, timeout)
            if msg["type"] == kind:
                return msg


async def request(ws: ClientConnection, msg: dict[str, Any]) -> dict[str, Any]:
    """Send a message with an id and return the reply that names it."""
    msg = dict(msg)
    msg.setdefault("id", f"r{id(msg)}")
    await ws.send(json.dumps(msg))
    async with asyncio.timeout(TIMEOUT):
        while True:
            reply = await recv(ws)
            if reply.get("replyTo") == msg["id"]:
                return reply


async def closed_with(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Read until the server closes; return its close code and reason."""
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None, f"no close frame received ({exc})"
            return exc.rcvd.code, exc.rcvd.reason


async def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll a cheap in-process condition on the event loop until it holds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)  # yield to the loop; the server runs in this loop


ServerFactory = Callable[..., Awaitable[Harness]]


async def flood_until_dropped(h: Harness, reader: ClientConnection, channel: str) -> int:
    """Publish 32 KiB messages to ``channel`` (two subscribers: ``reader`` and one that does
    not read) until the hub drops the non-reader; ``reader`` must get every one. Returns
    how many were published."""
    hub = h.server.node.hub
    payload = "x" * 32 * 1024
    sent = 0
    # Bounded: far more than kernel buffers plus the outbox can hold.
    while hub.channel_counts().get(channel, 0) == 2 and sent < 2000:
        status, _ = await h.api(
            "POST",
            "/api/publish",
            {"channel": channel, "type": "tick", "data": {"n": sent, "p": payload}},
        )
        assert status == 200
        assert (await recv(reader))["data"]["n"] == sent
        sent += 1
    assert hub.channel_counts() == {channel: 1}, "the slow consumer was never dropped"
    return sent


def serve_env(**extra: str) -> dict[str, str]:
    """The environment of a `tidings serve` subprocess: test secrets, in-memory store."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "TIDINGS_JWT_SECRET": SECRET,
        "TIDINGS_API_KEYS": API_KEY,
        "TIDINGS_STORE_URL": ":memory:",
    }
    env.update(extra)
    return env


@asynccontextmanager
async def serve_process(
    *args: str,
    env: dict[str, str] | None = None,
    port: int = 0,
    cwd: Path | None = None,
    stop: int = signal.SIGTERM,
    log: Path | None = None,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """`python -m tidings serve` in a subprocess; yields it and the port it reports.

    At exit a process still running gets ``stop`` (SIGTERM: a graceful shutdown) and must
    exit in time. Its log (stderr) goes to ``log`` when given, for a failure's post-mortem.
    """
    stderr = log.open("ab") if log is not None else asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings",
        "serve",
        "--port",
        str(port),
        *args,
        env=serve_env() if env is None else env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    if not isinstance(stderr, int):
        stderr.close()  # the child has its own copy
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(TIMEOUT * 3):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("tidings listening on http://"), line
        yield proc, int(line.rsplit(":", 1)[1])
    finally:
        if proc.returncode is None:
            proc.send_signal(stop)
            try:
                async with asyncio.timeout(TIMEOUT * 3):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise AssertionError(f"tidings did not exit after signal {stop}") from None


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Start real servers on 127.0.0.1:0; all are stopped at teardown."""
    started: list[Server] = []
    http = aiohttp.ClientSession()

    async def factory(**overrides: Any) -> Harness:
        server = Server(make_settings(**overrides))
        await server.start()
        started.append(server)
        return Harness(server, http)

    yield factory
    for server in started:
        await server.stop()
    await http.close()


@pytest.fixture
async def harness(make_server: ServerFactory) -> Harness:
    """One server on default test settings."""
    return await make_server()


@pytest.fixture(autouse=True)
def _no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Any:
    """An ERROR log from tidings.* fails the test."""
    caplog.set_level(logging.INFO, logger="tidings")
    yield
    errors = [
        r for r in caplog.records if r.name.startswith("tidings") and r.levelno >= logging.ERROR
    ]
    assert not errors, [r.getMessage() for r in errors]
