"""Helpers for cluster tests: real tidings processes on one Redis and one PostgreSQL.

Each test gets its own Redis key prefix and its own PostgreSQL schema, so tests never
see each other's data, and a private Redis server when it must stop and start one.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from .conftest import TIMEOUT, Harness, serve_env, serve_process

REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

HISTORY_TOML = """
[namespaces.news]
publish = true
history_size = 100
history_ttl = 300
"""


class Instance(Harness):
    """One tidings process of a cluster, driven like an in-process ``Harness``."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        port: int,
        http: Any,
        *,
        redis_url: str,
        prefix: str,
    ) -> None:
        super().__init__(SimpleNamespace(port=port), http)  # type: ignore[arg-type]
        self.proc = proc
        self.port = port
        self.redis_url = redis_url
        self.prefix = prefix  # the cluster's Redis key prefix

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye to Redis."""
        self.proc.send_signal(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: alive (its sockets stay open) but doing nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze``."""
        self.proc.send_signal(signal.SIGCONT)


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """A store URL for a fresh PostgreSQL schema, dropped afterwards."""
    import asyncpg

    schema = "c_" + secrets.token_hex(6)
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield f"{PG_URL}?search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@asynccontextmanager
async def cluster(
    n: int,
    tmp: Path,
    *,
    store_url: str,
    redis_url: str = REDIS_URL,
    settings: dict[str, str] | None = None,
) -> AsyncIterator[list[Instance]]:
    """``n`` tidings processes sharing one Redis (a fresh prefix) and one store."""
    prefix = f"t{secrets.token_hex(4)}:"
    config = tmp / "cluster.toml"
    config.write_text(HISTORY_TOML)
    defaults = {
        "TIDINGS_BROKER_URL": redis_url,
        "TIDINGS_BROKER_PREFIX": prefix,
        "TIDINGS_STORE_URL": store_url,
        "TIDINGS_CLUSTER_HEARTBEAT": "0.5",
        "TIDINGS_RATE_LIMIT_ENABLED": "false",
        "TIDINGS_LOG_LEVEL": "DEBUG",  # into each instance's log file, for a post-mortem
    }
    env = serve_env(**{**defaults, **(settings or {})})
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        procs = await asyncio.gather(
            *(
                stack.enter_async_context(
                    serve_process("--config", str(config), env=env, log=tmp / f"tidings-{i}.log")
                )
                for i in range(n)
            )
        )
        yield [
            Instance(proc, port, http, redis_url=redis_url, prefix=prefix) for proc, port in procs
        ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of the test's own on a free port, to stop and start at will."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            while b"Ready to accept connections" not in await self.proc.stdout.readline():
                pass

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self.proc = None
