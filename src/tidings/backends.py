"""Build the backends the settings' URLs name: the one place that maps a URL to an
adapter, so the interface packages (``broker``, ``registry``, ``store``) import none of
their implementations, and the adapters' libraries (redis, asyncpg) are imported only
when their URL is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .broker import Broker
from .registry import Registry
from .store import Store


def open_broker(
    url: str,
    *,
    prefix: str = "tidings:",
    clock: Callable[[], float] | None = None,
    encode: Callable[[Any], bytes] | None = None,
    decode: Callable[[bytes], Any] | None = None,
    command_timeout: float = 1.0,
    ping_interval: float = 5.0,
) -> Broker:
    """The broker ``url`` names: ``memory`` (one node, in this process) or ``redis://``.

    Args:
        url: ``broker_url``.
        prefix: Redis key and channel prefix (nodes sharing it form one cluster).
        clock: Monotonic seconds for the memory broker's history TTLs.
        encode, decode: The codec a networked broker serializes messages with.
        command_timeout: Seconds a Redis command may wait for its answer.
        ping_interval: Seconds of pub/sub silence before Redis is pinged (lost after two).
    """
    if url == "memory":
        from .broker.memory import MemoryBroker, MemoryExchange

        exchange = MemoryExchange() if clock is None else MemoryExchange(clock=clock)
        return MemoryBroker(exchange, alone=True)
    from .broker.redis import RedisBroker

    return RedisBroker(
        url,
        prefix=prefix,
        encode=encode,
        decode=decode,
        command_timeout=command_timeout,
        ping_interval=ping_interval,
    )


def open_registry(
    url: str, instance_id: str, *, prefix: str, ttl: float, command_timeout: float = 1.0
) -> Registry | None:
    """The registry of the cluster ``url`` names (None for ``memory``, a single instance)."""
    if url == "memory":
        return None
    from .registry.redis import RedisRegistry

    return RedisRegistry.from_url(
        url, instance_id, prefix=prefix, ttl=ttl, command_timeout=command_timeout
    )


def open_store(url: str, *, timeout: float = 5.0) -> Store:
    """The store a URL names: ``sqlite:///path``, a bare path, ``:memory:``, or
    ``postgresql://…``; each of its operations fails after ``timeout`` seconds."""
    if url.startswith(("postgresql://", "postgres://")):
        from .store.postgres import PostgresStore

        return PostgresStore(url, timeout=timeout)
    from .store.sqlite import SQLiteStore

    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SQLiteStore(path, timeout=timeout)
