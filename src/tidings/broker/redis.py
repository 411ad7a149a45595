"""The Redis broker: many tidings processes on one Redis act as one server.

Delivery is Redis pub/sub, one ``PUBLISH`` per publication. History lives in Redis:
per topic a hash ``<prefix>meta:<topic>`` (``e``: epoch, ``o``: last offset) and a
stream ``<prefix>stream:<topic>`` whose entry ids are ``<offset>-0``. A Lua script
bumps the offset, appends, trims, sets the TTLs and publishes in one atomic step, so
no node can see a publication out of offset order or miss it in history.

Every key and pub/sub channel starts with the broker's ``prefix``: brokers with the
same prefix form one cluster, and tests isolate themselves with a prefix each.

**Every link subscribed.** Each node's pub/sub link subscribes ``<prefix>link:<node>``
in the same ``SUBSCRIBE`` command as every topic it listens on, so Redis's own
``PUBSUB NUMSUB`` of that channel tells whether the node's topics are all subscribed right
now. Each node also beats ``<prefix>member:<node>`` (with the set ``<prefix>members``)
every ``ping_interval`` through its command pool, whatever its link's state, and keeps a
local view of the members. A *guarded* publication is made by a Lua script that first
checks every member's link channel and refuses (``BrokerError``: nothing sent) when one
is missing: after Redis comes back, an instance still reconnecting makes the others
refuse rather than answer for a publication it would miss.

On the wire a pub/sub message is ``\\x00`` + payload, or ``\\x01<offset>:<epoch>\\n`` +
payload when it carries a stream position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript as Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from . import (
    BrokerError,
    Handler,
    HistoryResult,
    StreamPosition,
    check_history,
    history_result,
)

logger = logging.getLogger("tidings.broker")

DEFAULT_META_TTL = 30 * 24 * 3600.0


# Prepended to a publish script: ARGV[first..] are the link channels of every member; a
# missing one refuses the whole publication before anything is written.
def _guard(first: int) -> str:
    return f"""
if #ARGV >= {first} then
  local counts = redis.call('pubsub', 'numsub', unpack(ARGV, {first}))
  for i = 2, #counts, 2 do
    if counts[i] == 0 then
      return redis.error_reply('NOLINK ' .. counts[i - 1] .. ' is not subscribed')
    end
  end
end
"""


# KEYS: meta, stream. ARGV: channel, payload, size, ttl ms, meta ttl ms, fresh epoch, then
# (guarded) the members' link channels.
_PUBLISH = (
    _guard(7)
    + """
if redis.call('hsetnx', KEYS[1], 'e', ARGV[6]) == 1 then
  redis.call('del', KEYS[2])
end
local epoch = redis.call('hget', KEYS[1], 'e')
local offset = redis.call('hincrby', KEYS[1], 'o', 1)
redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[3], offset .. '-0', 'd', ARGV[2])
redis.call('pexpire', KEYS[2], ARGV[4])
redis.call('pexpire', KEYS[1], ARGV[5])
redis.call('publish', ARGV[1], '\\1' .. offset .. ':' .. epoch .. '\\n' .. ARGV[2])
return {offset, epoch}
"""
)

# KEYS: meta, stream. ARGV: first offset wanted ('-': the oldest), count, fresh epoch,
# meta ttl ms. Creating the epoch on read keeps a position read before the first
# publication valid.
_HISTORY = """
if redis.call('hsetnx', KEYS[1], 'e', ARGV[3]) == 1 then
  redis.call('del', KEYS[2])
  redis.call('pexpire', KEYS[1], ARGV[4])
end
local epoch = redis.call('hget', KEYS[1], 'e')
local offset = tonumber(redis.call('hget', KEYS[1], 'o') or '0')
local entries = {}
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('xrange', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
end
return {offset, epoch, entries}
"""

# ARGV: channel, payload, then the members' link channels.
_GUARDED_PUBLISH = _guard(3) + "return redis.call('publish', ARGV[1], ARGV[2])\n"

# ARGV: prefix, this node, ttl ms. Returns whether this node's entry was still there
# (Redis kept the membership) and the live members, pruning the set of dead ones.
_MEMBERS = """
local key = ARGV[1] .. 'member:' .. ARGV[2]
local kept = redis.call('exists', key)
redis.call('set', key, '1', 'px', ARGV[3])
redis.call('sadd', ARGV[1] .. 'members', ARGV[2])
local live = {}
for _, id in ipairs(redis.call('smembers', ARGV[1] .. 'members')) do
  if redis.call('exists', ARGV[1] .. 'member:' .. id) == 1 then
    table.insert(live, id)
  else
    redis.call('srem', ARGV[1] .. 'members', id)
  end
end
return {kept, live}
"""

# How many membership beats in a row a member may miss after Redis lost the membership
# (restarted, flushed) before it counts as gone: a live one beats again within one.
_REGATHER_BEATS = 3

_PLAIN = b"\x00"
# The most publications sent in one pipeline.
_BATCH = 256
_POSITIONED = b"\x01"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


async def _close(pubsub: PubSub) -> None:
    # PubSub.aclose gained annotations in redis-py 8.2; going through a typed name keeps
    # mypy strict content on every release the bounds allow, with no ignore to go stale.
    aclose: Callable[[], Awaitable[None]] = pubsub.aclose
    await aclose()


def _same(message: Any) -> Any:
    return message


def _unframe(data: bytes) -> tuple[bytes, StreamPosition | None]:
    if data[:1] == _POSITIONED:
        header, _, payload = data[1:].partition(b"\n")
        offset, _, epoch = header.partition(b":")
        return payload, StreamPosition(int(offset), epoch.decode())
    return data[1:], None


class RedisBroker:
    """A node's link to the cluster through Redis.

    Args:
        url: ``redis://host:port/db``.
        prefix: Starts every key and channel; nodes sharing it form one cluster.
        meta_ttl: Seconds a stream's epoch and offset outlive its last publication.
        backoff: Shortest and longest wait between reconnection attempts (seconds);
            each failed attempt doubles the wait, with jitter.
        confirm_timeout: Seconds ``subscribe`` waits for Redis to confirm.
        encode, decode: How messages become bytes on the wire and back (bytes pass
            through when none is given).
        command_timeout: Seconds a command (publish, history) may wait for Redis's answer
            before it fails with ``BrokerError``: a Redis that hangs with its socket open
            must not hang the callers.
        ping_interval: Seconds of silence on the pub/sub link before it is pinged; with
            no answer within two intervals the link counts as lost (unhealthy) and is
            replaced, so a hung Redis shows in ``healthy`` within two intervals.

    Two connections are used: a pool for commands (publish, history) and one pub/sub
    connection read by a background task, which reconnects with backoff when it is
    lost and subscribes every topic again before reporting healthy.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "tidings:",
        meta_ttl: float = DEFAULT_META_TTL,
        backoff: tuple[float, float] = (0.05, 5.0),
        confirm_timeout: float = 5.0,
        encode: Callable[[Any], bytes] | None = None,
        decode: Callable[[bytes], Any] | None = None,
        command_timeout: float = 1.0,
        ping_interval: float = 5.0,
    ) -> None:
        self.prefix = prefix
        self._encode: Callable[[Any], bytes] = encode if encode is not None else _same
        self._decode: Callable[[bytes], Any] = decode if decode is not None else _same
        self.node_id = secrets.token_hex(6)
        self._url = url
        self._meta_ttl = meta_ttl
        self._backoff = backoff
        self._confirm_timeout = confirm_timeout
        self._ping_interval = ping_interval
        self._handler: Handler | None = None
        self._topics: set[str] = set()
        # A command that fails must fail the call, not be sent again behind our back:
        # a retried publish could be delivered twice. The asyncio Retry class: redis-py
        # 8.2 warns about (and will refuse) the synchronous one on an asyncio client.
        # No supported errors either: redis-py's failure handler reconnects (and a PubSub
        # resubscribes) even when no retry is left, from whichever task met the error,
        # racing the reader; every reconnection is the reader's own (_run).
        no_retry = Retry(NoBackoff(), 0, supported_errors=())
        # A pool that makes a burst of publishes wait for a connection rather than fail
        # ("Too many connections"): a 503 must mean Redis is unreachable, not busy.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=confirm_timeout,
            socket_connect_timeout=5,
            socket_timeout=command_timeout,
            retry=no_retry,
        )
        self._redis = aioredis.Redis.from_pool(pool)  # closes the pool when closed
        self._sub_client = aioredis.Redis.from_url(
            url,
            retry=no_retry,
            socket_connect_timeout=5,
            client_name=f"tidings-broker-{self.node_id}",
            health_check_interval=10,
            socket_keepalive=True,
        )
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()  # orders (un)subscribe commands with _topics changes
        self._waiting: dict[bytes, asyncio.Future[None]] = {}
        self._healthy = False
        self._up: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connects = 0  # times the pub/sub link came up, for tests and metrics
        # Called when the link comes back after a loss: publications were missed.
        self.on_restored: Callable[[], None] | None = None
        # Replaced (and the old one set) at every change of the link's state, so a waiter
        # that read the state before waiting cannot miss the change.
        self._changed = asyncio.Event()
        self._publish_script = self._redis.register_script(_PUBLISH)
        # Publications waiting for the sender: (script or None for a PUBLISH, keys, args,
        # future).
        self._outbox: list[tuple[Script | None, list[str], list[Any], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._history_script = self._redis.register_script(_HISTORY)
        self._guarded_script = self._redis.register_script(_GUARDED_PUBLISH)
        self._members_script = self._redis.register_script(_MEMBERS)
        # The cluster's members as this node last saw them: id -> membership beats in a
        # row that did not list it (after Redis lost the membership).
        self._members: dict[str, int] = {}
        self._links: list[bytes] = []  # the members' link channels, for the guard
        self._beats: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _set_healthy(self, healthy: bool) -> None:
        self._healthy = healthy
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, re-checking at every link state change
        (health, reconnects): for health checks and tests, instead of polling."""
        while True:
            changed = self._changed
            if condition():
                return
            await changed.wait()

    def _channel(self, topic: str) -> bytes:
        return f"{self.prefix}pub:{topic}".encode()

    def _keys(self, topic: str) -> list[str]:
        return [f"{self.prefix}meta:{topic}", f"{self.prefix}stream:{topic}"]

    def _link_of(self, node_id: str) -> bytes:
        return f"{self.prefix}link:{node_id}".encode()

    @property
    def members(self) -> int:
        return len(self._members)

    async def _beat(self) -> None:
        """Renew this node's membership and refresh the local view of the others.

        A member missing from the listing has stopped beating (its entry expired: dead
        or cut off from Redis for three intervals) and is dropped, unless this node's
        own entry was gone too: then Redis lost the membership (restarted, flushed) and
        the members it knew get a few beats to come back before they stop counting.
        """
        ttl = _ms(3 * self._ping_interval)
        kept, live = await self._members_script(args=[self.prefix, self.node_id, ttl])
        listed = {raw.decode() for raw in live}
        members = {node: 0 for node in listed}
        if not kept:
            for node, missed in self._members.items():
                if node not in listed and missed + 1 < _REGATHER_BEATS:
                    members[node] = missed + 1
        if members.keys() != self._members.keys():
            self._links = [self._link_of(node) for node in sorted(members)]
        self._members = members

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            try:
                await self._beat()
            except (RedisError, OSError) as exc:
                logger.debug("broker: membership beat failed: %s", exc)

    @property
    def _control(self) -> bytes:
        # Always subscribed, so the link exists (and is watched) with no topics, and
        # its confirmation, sent last, tells that a resubscription is complete.
        return f"{self.prefix}control".encode()

    async def start(self, handler: Handler) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise BrokerError(f"cannot reach Redis at {self._url}: {exc}") from exc
        self._handler = handler
        self._up = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"tidings-broker-{self.node_id}")
        try:
            async with asyncio.timeout(self._confirm_timeout):
                await self._up.wait()
        except TimeoutError:
            logger.warning("broker: pub/sub not confirmed yet; continuing to retry")
        # A member once its link is up (or late), so the others need not wait for it.
        try:
            await self._beat()
        except RedisError as exc:
            logger.warning("broker: membership not recorded yet (%s); retrying", exc)
        self._beats = asyncio.create_task(self._beat_forever(), name="tidings-broker-members")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handler = None
        self._set_healthy(False)
        for task in (self._task, self._beats):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._beats is not None:
            # Leave at once, so the others stop waiting for this link (a killed node
            # counts until its entry expires, three intervals).
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self._redis.delete(f"{self.prefix}member:{self.node_id}")
                await self._redis.srem(f"{self.prefix}members", self.node_id)
        self._release_waiters()
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        for *_, future in self._outbox:
            if not future.done():
                future.set_exception(RedisError("broker closed"))
        self._outbox.clear()
        await self._redis.aclose()
        await self._sub_client.aclose()

    async def subscribe(self, topic: str) -> None:
        channel = self._channel(topic)
        async with self._lock:
            waiter = self._waiting.get(channel)
            if waiter is None and topic not in self._topics:
                self._topics.add(topic)
                pubsub = self._pubsub
                # No link, or one known broken: the reader subscribes every recorded
                # topic when it connects. (Sending on a disconnected PubSub would make
                # redis-py reconnect from this task, racing the reader's read.)
                # getattr: redis-py declares PubSub.connection as always None.
                connection: Connection | None = getattr(pubsub, "connection", None)
                if pubsub is not None and connection is not None and connection.is_connected:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiting[channel] = waiter
                    try:
                        await pubsub.subscribe(channel)
                    except RedisError:
                        # The reader sees the broken link too and subscribes again.
                        self._waiting.pop(channel, None)
                        waiter = None
        if waiter is not None:
            try:
                async with asyncio.timeout(self._confirm_timeout):
                    await asyncio.shield(waiter)
            except TimeoutError:
                logger.warning("broker: subscription to %s not confirmed in time", topic)

    async def unsubscribe(self, topic: str) -> None:
        async with self._lock:
            if topic not in self._topics:
                return
            self._topics.discard(topic)
            pubsub = self._pubsub
            if pubsub is not None:
                # If the link is gone the reader will not subscribe the topic again.
                with contextlib.suppress(RedisError):
                    await pubsub.unsubscribe(self._channel(topic))

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        history_size: int = 0,
        history_ttl: float = 0.0,
        guarded: bool = False,
    ) -> StreamPosition | None:
        payload = self._encode(message)
        links = self._links if guarded else []
        # None: a plain PUBLISH; else the script to run with keys and args.
        script: Script | None = None
        keys: list[str] = []
        if check_history(history_size, history_ttl):
            args: list[Any] = [
                self._channel(topic),
                payload,
                history_size,
                _ms(history_ttl),
                _ms(max(self._meta_ttl, history_ttl)),
                secrets.token_hex(8),
                *links,
            ]
            script, keys = self._publish_script, self._keys(topic)
        else:
            args = [self._channel(topic), _PLAIN + payload, *links]
            if links:
                script = self._guarded_script
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._outbox.append((script, keys, args, future))
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send())
        try:
            result = await future
        except RedisError as exc:
            raise BrokerError(f"publish to {topic} failed: {exc}") from exc
        if script is not self._publish_script:
            return None
        offset, epoch = result
        return StreamPosition(int(offset), epoch.decode())

    async def _send(self) -> None:
        """Send queued publications, in order, as pipelines: everything queued while the
        previous batch was on the wire goes in one write and one round trip. One sender
        means one order, so a node's publications reach Redis in the order made."""
        try:
            while self._outbox:
                batch = self._outbox[:_BATCH]
                del self._outbox[:_BATCH]
                pipe = self._redis.pipeline(transaction=False)
                for script, keys, args, _ in batch:
                    if script is None:
                        pipe.publish(*args)
                    else:  # on a pipeline this only queues the EVALSHA
                        await script(keys=keys, args=args, client=pipe)
                try:
                    try:
                        results = await pipe.execute(raise_on_error=False)
                    finally:
                        # A failed script check (SCRIPT EXISTS, for the EVALSHAs) leaves
                        # its connection on the pipeline: give it back.
                        reset: Callable[[], Awaitable[None]] = pipe.reset  # untyped in redis-py
                        await reset()
                except asyncio.CancelledError:  # closing: nobody may wait forever
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(RedisError("broker closed"))
                    raise
                except (RedisError, OSError) as exc:
                    error = exc if isinstance(exc, RedisError) else RedisError(str(exc))
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (*_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._sender = None

    async def history(
        self, topic: str, since: StreamPosition | None = None, limit: int = 100
    ) -> HistoryResult:
        first = "-" if since is None else f"{since.offset + 1}-0"
        # One entry even for limit=0: it shows whether the gap is still covered.
        count = limit if since is None else max(limit, 1)
        try:
            offset, epoch, entries = await self._history_script(
                keys=self._keys(topic),
                args=[first, count, secrets.token_hex(8), _ms(self._meta_ttl)],
            )
        except RedisError as exc:
            raise BrokerError(f"history of {topic} failed: {exc}") from exc
        kept = [(int(eid.split(b"-", 1)[0]), self._decode(fields[1])) for eid, fields in entries]
        position = StreamPosition(int(offset), epoch.decode())
        return history_result(since, position, kept, limit)

    async def _run(self) -> None:
        """Keep one pub/sub link up and deliver from it, reconnecting with backoff."""
        delay = self._backoff[0]
        while True:
            pubsub = self._sub_client.pubsub()
            try:
                async with self._lock:
                    self._pubsub = pubsub
                    channels = [self._channel(t) for t in self._topics]
                    # One command: once Redis lists the link channel, every topic is on.
                    await pubsub.subscribe(*channels, self._link_of(self.node_id), self._control)
                self.connects += 1
                delay = self._backoff[0]
                await self._read(pubsub)
            except (RedisError, OSError) as exc:
                was_healthy = self._healthy
                self._set_healthy(False)
                self._pubsub = None
                self._release_waiters()
                wait = random.uniform(delay / 2, delay)
                log = logger.warning if was_healthy or self.connects == 0 else logger.debug
                log("broker: Redis link lost (%s); reconnecting in %.2fs", exc, wait)
                delay = min(delay * 2, self._backoff[1])
                await asyncio.sleep(wait)
            finally:
                await _close(pubsub)

    async def _read(self, pubsub: PubSub) -> None:
        confirmed = False
        loop = asyncio.get_running_loop()
        interval = self._ping_interval
        heard = loop.time()  # the last time anything came from Redis on this link
        pinged = False
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(timeout=min(1.0, interval))
            now = loop.time()
            if message is None:
                # A Redis that hangs (SIGSTOP, a frozen VM) keeps the socket open and
                # says nothing: ask, and give up on the link after two intervals.
                if now - heard >= 2 * interval:
                    raise RedisConnectionError(f"no answer from Redis in {2 * interval:g} s")
                if now - heard >= interval and not pinged:
                    pinged = True
                    await pubsub.ping()
                continue
            heard, pinged = now, False
            kind = message["type"]
            channel: bytes = message["channel"]
            if kind == "message":
                self._deliver(channel, message["data"])
            elif kind == "subscribe":
                if channel == self._control and confirmed:
                    # redis-py (8.2 at least) reconnects a PubSub by itself when a command
                    # or a read meets a dropped connection, then resubscribes its channels:
                    # the control channel confirmed twice on one link. Publications sent in
                    # between were missed, so take the full path (unhealthy, a new link,
                    # every topic again, on_restored) rather than carry on as if nothing
                    # had happened.
                    raise RedisConnectionError("pub/sub link reconnected underneath")
                if channel == self._control:
                    confirmed = True
                if channel == self._control and not self._healthy:
                    self._set_healthy(True)
                    if self._up is not None:
                        self._up.set()
                    if self.connects > 1:
                        logger.info("broker: Redis link restored, %d topics", len(self._topics))
                        if self.on_restored is not None:
                            self.on_restored()
                waiter = self._waiting.pop(channel, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def _deliver(self, channel: bytes, data: bytes) -> None:
        topic = channel.decode()[len(self.prefix) + len("pub:") :]
        handler = self._handler
        # A message already in flight when its topic was unsubscribed is dropped.
        if handler is None or topic not in self._topics:
            return
        payload, position = _unframe(data)
        try:
            handler(topic, self._decode(payload), position)
        except Exception:
            logger.exception("broker handler failed on topic %s", topic)

    def _release_waiters(self) -> None:
        """Let subscribers waiting on a lost link return; the topics are resubscribed."""
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_result(None)
        self._waiting.clear()
