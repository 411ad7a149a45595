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
import hashlib
import logging
import random
import secrets
from collections.abc import Callable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from . import (
    BrokerError,
    Handler,
    HistoryResult,
    StreamPosition,
    check_history,
    history_result,
)
from .link import Batch, Link, LinkError, Pipe, command, connect

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

# A queued publication: the script's SHA1 (None: a PUBLISH), keys, args, who waits, and
# whether it is guarded (the members' link channels are added to args when it is sent:
# a publication sent again after the members were re-read checks the new ones).
_Queued = tuple[str | None, list[str], list[Any], asyncio.Future[Any], bool]

_PUBLISH_SHA = hashlib.sha1(_PUBLISH.encode()).hexdigest()
_GUARDED_SHA = hashlib.sha1(_GUARDED_PUBLISH.encode()).hexdigest()

# For how many ping intervals after Redis is found to have lost the membership
# (restarted, flushed) the members known before count without beating: a live one
# beats again within one.
_REGATHER_INTERVALS = 3

_PLAIN = b"\x00"
# The most publications sent in one pipeline.
_BATCH = 256
_POSITIONED = b"\x01"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


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
        # No supported errors either: redis-py's failure handler reconnects even when no
        # retry is left.
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
        self._link: Link | None = None  # the pub/sub link while connected
        self._channel_prefix = f"{prefix}pub:".encode()
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
        # Publications waiting for the sender: (the script's SHA1, or None for a PUBLISH;
        # keys; args; future).
        self._outbox: list[_Queued] = []
        self._pipe: Pipe | None = None  # the publications' own connection
        self._command_timeout = command_timeout
        self._sender: asyncio.Task[None] | None = None
        self._history_script = self._redis.register_script(_HISTORY)
        self._members_script = self._redis.register_script(_MEMBERS)
        # The cluster's members as this node last saw them.
        self._members: set[str] = set()
        # Until when (loop time) members unlisted since Redis lost the membership count.
        self._regather_until = 0.0
        self._links: list[bytes] = []  # the members' link channels, for the guard
        self._beats: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
        or cut off from Redis for two intervals) and is dropped, unless this node's
        own entry was gone too: then Redis lost the membership (restarted, flushed) and
        the members it knew get three intervals to come back before they stop counting.
        """
        # Two intervals, one less than the registry's three: a killed node has stopped
        # counting here by the time the survivors act on its death (rooms' presence
        # sweep publishes then), so what they publish is not refused for it.
        ttl = _ms(2 * self._ping_interval)
        kept, live = await self._members_script(args=[self.prefix, self.node_id, ttl])
        members = {raw.decode() for raw in live}
        now = asyncio.get_running_loop().time()
        # (A node's first beat finds no entry of its own either: nothing to regather.)
        if not kept and self._members and now >= self._regather_until:
            self._regather_until = now + _REGATHER_INTERVALS * self._ping_interval
        if now < self._regather_until:
            members |= self._members
        if members != self._members:
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
        # Kept for the publish path: on Python 3.11 each get_running_loop() is a getpid().
        self._loop = asyncio.get_running_loop()
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
            # counts until its entry expires, two intervals).
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self._redis.delete(f"{self.prefix}member:{self.node_id}")
                await self._redis.srem(f"{self.prefix}members", self.node_id)
        self._release_waiters()
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        for _, _, _, future, _ in self._outbox:
            if not future.done():
                future.set_exception(LinkError("broker closed"))
        self._outbox.clear()
        self._drop_pipe("broker closed")
        await self._redis.aclose()

    async def subscribe(self, topic: str) -> None:
        channel = self._channel(topic)
        async with self._lock:
            waiter = self._waiting.get(channel)
            if waiter is None and topic not in self._topics:
                self._topics.add(topic)
                link = self._link
                # No link, or one closing: _run subscribes every recorded topic when it
                # connects.
                if link is not None and link.open:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiting[channel] = waiter
                    link.send(command(b"SUBSCRIBE", channel))
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
            link = self._link
            if link is not None:
                # If the link is gone _run will not subscribe the topic again.
                link.send(command(b"UNSUBSCRIBE", self._channel(topic)))

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
        # None: a plain PUBLISH; else the script to run with keys and args.
        script: str | None = None
        keys: list[str] = []
        if check_history(history_size, history_ttl):
            args: list[Any] = [
                self._channel(topic),
                payload,
                history_size,
                _ms(history_ttl),
                _ms(max(self._meta_ttl, history_ttl)),
                secrets.token_hex(8),
            ]
            script, keys = _PUBLISH_SHA, self._keys(topic)
        else:
            args = [self._channel(topic), _PLAIN + payload]
            if guarded:
                script = _GUARDED_SHA
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._outbox.append((script, keys, args, future, guarded))
        if self._sender is None:
            self._sender = loop.create_task(self._send())
        try:
            result = await future
        except (RedisError, LinkError) as exc:
            raise BrokerError(f"publish to {topic} failed: {exc}") from exc
        if script is not _PUBLISH_SHA:
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
                links = self._links
                parts = [
                    command(b"PUBLISH", *args)
                    if sha is None
                    else command(
                        b"EVALSHA", sha, len(keys), *keys, *args, *(links if guarded else ())
                    )
                    for sha, keys, args, _, guarded in batch
                ]
                try:
                    pipe = self._pipe
                    if pipe is None or not pipe.open:
                        async with asyncio.timeout(self._command_timeout):
                            pipe = await self._connected_pipe()
                    # The pipe fails the request (and closes) if it is not answered in
                    # time: one timer for the connection, not one per batch.
                    timeout = self._command_timeout
                    results = await pipe.request(b"".join(parts), len(parts), timeout)
                except asyncio.CancelledError:  # closing: nobody may wait forever
                    for _, _, _, future, _ in batch:
                        if not future.done():
                            future.set_exception(LinkError("broker closed"))
                    raise
                except (LinkError, OSError, TimeoutError) as exc:
                    # Whether they were sent is unknown: never sent again (a retried
                    # publish could be delivered twice); the connection is replaced.
                    if isinstance(exc, TimeoutError):
                        reason = f"no answer within {self._command_timeout:g} s"
                    else:
                        reason = str(exc)
                    self._drop_pipe(reason)
                    for _, _, _, future, _ in batch:
                        if not future.done():
                            future.set_exception(LinkError(f"Redis unreachable: {reason}"))
                    continue
                retry: list[_Queued] = []
                if any(isinstance(result, hiredis.ReplyError) for result in results):
                    retry = await self._refused_by_the_dead(batch, results)
                for item, result in zip(batch, results, strict=True):
                    future = item[3]
                    if future.done():
                        continue
                    if retry and item in retry:
                        continue
                    if isinstance(result, hiredis.ReplyError):
                        if str(result).startswith("NOSCRIPT"):
                            self._drop_pipe("scripts flushed")  # loaded again on the next
                        future.set_exception(LinkError(str(result)))
                    else:
                        future.set_result(result)
                # Sent again before anything queued after them: nothing was published.
                self._outbox[:0] = retry
        finally:
            self._sender = None

    async def _refused_by_the_dead(self, batch: list[_Queued], results: list[Any]) -> list[_Queued]:
        """The guarded publications refused for a member that is gone, to send again.

        The local view of the members lags their entries by up to one beat: a member
        whose entry just expired (killed) still makes guarded publications refused. On
        such a refusal the view is refreshed at once; a refused publication is sent again
        if the member it waited for is gone, unless a later one to the same channel in
        the batch was taken (sending it again would reorder them).
        """
        refused = [
            i
            for i, result in enumerate(results)
            if isinstance(result, hiredis.ReplyError) and str(result).startswith("NOLINK")
        ]
        if not refused:
            return []
        try:
            await self._beat()
        except (RedisError, OSError):
            return []
        links = {link.decode() for link in self._links}
        retry: list[_Queued] = []
        for i in refused:
            if str(results[i]).split()[1] in links:
                continue  # still a member: its link is really down
            channel = batch[i][2][0]
            if any(
                batch[j][2][0] == channel and not isinstance(results[j], hiredis.ReplyError)
                for j in range(i + 1, len(batch))
            ):
                continue
            retry.append(batch[i])
        return retry

    async def _connected_pipe(self) -> Pipe:
        """The publications' connection, opened (with the scripts loaded) if needed."""
        pipe = self._pipe
        if pipe is None or not pipe.open:
            pipe = await connect(
                self._url, Pipe, name=f"tidings-publish-{self.node_id}", connect_timeout=5.0
            )
            self._pipe = pipe
            # Loaded on every new connection, before any EVALSHA on it: a restarted Redis
            # has no scripts.
            loads = command(b"SCRIPT", b"LOAD", _PUBLISH) + command(
                b"SCRIPT", b"LOAD", _GUARDED_PUBLISH
            )
            for reply in await pipe.request(loads, 2):
                if isinstance(reply, hiredis.ReplyError):
                    raise LinkError(f"cannot load the publish scripts: {reply}")
        return pipe

    def _drop_pipe(self, reason: object) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close(str(reason))

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
        loop = asyncio.get_running_loop()
        while True:
            link: Link | None = None
            try:
                link = await connect(
                    self._url,
                    lambda: Link(self._deliver_batch, self._subscribed, loop.time),
                    name=f"tidings-broker-{self.node_id}",
                    connect_timeout=5.0,
                )
                async with self._lock:
                    self._link = link
                    channels = [self._channel(t) for t in self._topics]
                    # One command: once Redis lists the link channel, every topic is on.
                    link.send(
                        command(b"SUBSCRIBE", *channels, self._link_of(self.node_id), self._control)
                    )
                self.connects += 1
                delay = self._backoff[0]
                await self._watch(link)
            except (LinkError, OSError, TimeoutError) as exc:
                was_healthy = self._healthy
                self._set_healthy(False)
                self._link = None
                self._release_waiters()
                wait = random.uniform(delay / 2, delay)
                log = logger.warning if was_healthy or self.connects == 0 else logger.debug
                log("broker: Redis link lost (%s); reconnecting in %.2fs", exc, wait)
                delay = min(delay * 2, self._backoff[1])
                await asyncio.sleep(wait)
            finally:
                if link is not None:
                    link.close()

    async def _watch(self, link: Link) -> None:
        """Return never; raise ``LinkError`` when the link is lost or silent too long.

        A Redis that hangs (SIGSTOP, a frozen VM) keeps the socket open and says
        nothing: after ``ping_interval`` of silence it is asked, and after two the link
        is given up.
        """
        loop = asyncio.get_running_loop()
        interval = self._ping_interval
        pinged = 0.0
        while True:
            now = loop.time()
            silent = now - link.heard
            if silent >= 2 * interval:
                raise LinkError(f"no answer from Redis in {2 * interval:g} s")
            if silent >= interval:
                if pinged < link.heard:
                    pinged = now
                    link.send(command(b"PING"))
                wake = link.heard + 2 * interval
            else:
                wake = link.heard + interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, wake - now)):
                    await asyncio.shield(link.lost)  # raises its LinkError when lost

    def _subscribed(self, channel: bytes) -> None:
        """Redis confirmed a subscription on the current link."""
        if channel == self._control and not self._healthy:
            # The control channel is the last of a (re)subscription: all are on.
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

    def _deliver_batch(self, batch: Batch) -> None:
        """Every message of one read, in order, with no await in between."""
        handler = self._handler
        if handler is None:
            return
        skip = len(self._channel_prefix)
        topics, decode = self._topics, self._decode
        for channel, data in batch:
            topic = channel[skip:].decode()
            # A message already in flight when its topic was unsubscribed is dropped.
            if topic not in topics:
                continue
            payload, position = _unframe(data)
            try:
                handler(topic, decode(payload), position)
            except Exception:
                logger.exception("broker handler failed on topic %s", topic)

    def _release_waiters(self) -> None:
        """Let subscribers waiting on a lost link return; the topics are resubscribed."""
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_result(None)
        self._waiting.clear()
