"""The Redis broker's pub/sub link: one raw connection speaking RESP, parsed by hiredis.

redis-py's ``PubSub`` costs tens of microseconds per message (a task switch, a dict
built per message, its own health checks); on a cluster fanning out to few subscribers
per publication that was most of an instance's work. This link is an asyncio
``Protocol``: every message that arrives in one read is parsed at once and handed over
as one batch, in order, with no await in between.

It only sends what a subscriber sends (``AUTH`` and ``CLIENT SETNAME`` once, then
``SUBSCRIBE``, ``UNSUBSCRIBE``, ``PING``), and it reports, rather than repairs, a lost
connection: reconnecting and resubscribing is the broker's (``RedisBroker._run``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

import hiredis

MESSAGE = b"message"
SUBSCRIBE = b"subscribe"

Batch = list[tuple[bytes, bytes]]
"""``(channel, data)`` of each message of one read, in the order Redis sent them."""


class LinkError(Exception):
    """The link is lost, or Redis answered it with an error."""


def command(*args: bytes | str | int) -> bytes:
    """One command in RESP."""
    # hiredis's stub types the argument as a one-element tuple; any length is packed.
    packed: bytes = hiredis.pack_command(cast(Any, args))
    return packed


class Link(asyncio.Protocol):
    """One pub/sub connection to Redis.

    Args:
        on_messages: Called with each read's messages (never an empty batch).
        on_subscribed: Called with a channel when Redis confirms its subscription, after
            every message that came before the confirmation was handed over.
        clock: The loop's monotonic clock, for ``heard``.
    """

    def __init__(
        self,
        on_messages: Callable[[Batch], None],
        on_subscribed: Callable[[bytes], None],
        clock: Callable[[], float],
    ) -> None:
        self._on_messages = on_messages
        self._on_subscribed = on_subscribed
        self._clock = clock
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self.heard = clock()  # when Redis last said anything on this link
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def open(self) -> bool:
        """Connected and not closing: what is sent now reaches Redis, if Redis is there."""
        return self._transport is not None and not self._transport.is_closing()

    def send(self, data: bytes, replies: int = 0) -> None:
        """Write commands (dropped once the link is closing: the broker sends them again on
        the next link). ``replies`` is for ``connect``: a subscriber's replies are read by
        kind, not counted."""
        if self.open:
            assert self._transport is not None
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._fail(LinkError("closed"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are ones.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(LinkError(f"connection lost: {exc}" if exc else "connection closed by Redis"))

    def _fail(self, exc: Exception) -> None:
        if not self.lost.done():
            self.lost.set_exception(exc)
            self.lost.exception()  # retrieved: a closed link's reason needs no reader

    def data_received(self, data: bytes) -> None:
        self.heard = self._clock()
        reader = self._reader
        reader.feed(data)
        batch: Batch = []
        try:
            while (reply := reader.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise LinkError(f"Redis answered: {reply}")
                kind = reply[0]
                if kind == MESSAGE:
                    batch.append((reply[1], reply[2]))
                elif kind == SUBSCRIBE:
                    if batch:
                        self._on_messages(batch)
                        batch = []
                    self._on_subscribed(reply[1])
                # unsubscribe confirmations and pongs: nothing to do but to have heard
        except (LinkError, hiredis.ProtocolError) as exc:
            if self._transport is not None:
                self._transport.close()
            self._fail(exc if isinstance(exc, LinkError) else LinkError(str(exc)))
            return
        if batch:
            self._on_messages(batch)


class Pipe(asyncio.Protocol):
    """A connection for pipelined commands: replies are matched to requests in order.

    Publications go through here rather than redis-py: one write per batch and one
    future per batch, where redis-py spends a task and a pool checkout per command.
    Once lost (or closed after a missed deadline) it stays lost: callers open another.
    """

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()  # kept: on 3.11 each lookup is a getpid()
        # Per request: replies still expected, replies so far, and who waits (None: a
        # set-up command whose error fails the connection).
        self._pending: deque[tuple[int, list[Any], asyncio.Future[list[Any]] | None]] = deque()
        # When each request with a timeout must be answered by, in request order (the
        # timeouts of one connection are all the same, so the first is the earliest), and
        # the one timer that watches the first: a timer made and cancelled per request
        # cost more than the rest of a publication's bookkeeping.
        self._deadlines: deque[tuple[float, asyncio.Future[list[Any]], float]] = deque()
        self._watch: asyncio.TimerHandle | None = None
        self._lost: Exception | None = None

    @property
    def open(self) -> bool:
        return self._lost is None and self._transport is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(LinkError(f"connection lost: {exc}" if exc else "connection closed by Redis"))

    def send(self, data: bytes, replies: int = 0) -> None:
        """Write set-up commands whose ``replies`` only matter if one is an error."""
        if self.open and replies:
            assert self._transport is not None
            self._pending.append((replies, [], None))
            self._transport.write(data)

    def request(
        self, data: bytes, replies: int, timeout: float | None = None
    ) -> asyncio.Future[list[Any]]:
        """Write ``data`` (``replies`` commands); the future gets their replies, an error
        reply as a ``hiredis.ReplyError`` value. With a ``timeout`` (seconds), a request
        not answered in time closes the connection, failing it and every later one with
        ``LinkError("no answer within ...")``: replies come in order, so none can come.

        Raises:
            LinkError: the connection is lost.
        """
        if not self.open:
            raise LinkError(f"connection lost: {self._lost}")
        assert self._transport is not None
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        self._pending.append((replies, [], future))
        if timeout is not None:
            deadline = self._loop.time() + timeout
            self._deadlines.append((deadline, future, timeout))
            if self._watch is None:
                self._watch = self._loop.call_at(deadline, self._check_deadlines)
        self._transport.write(data)
        return future

    def _check_deadlines(self) -> None:
        self._watch = None
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()  # answered (or failed) in time
        if not deadlines:
            return
        deadline, _, timeout = deadlines[0]
        if deadline <= self._loop.time():
            self.close(f"no answer within {timeout:g} s")
        else:
            self._watch = self._loop.call_at(deadline, self._check_deadlines)

    def close(self, reason: str = "closed") -> None:
        if self._transport is not None:
            self._transport.close()
        self._fail(LinkError(reason))

    def _fail(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        for _, _, future in self._pending:
            if future is not None and not future.done():
                future.set_exception(exc)
        self._pending.clear()
        self._deadlines.clear()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        try:
            while (reply := reader.gets()) is not False:
                if not pending:
                    raise LinkError("a reply nobody asked for")
                expected, got, future = pending[0]
                got.append(reply)
                if len(got) < expected:
                    continue
                pending.popleft()
                deadlines = self._deadlines
                if deadlines and deadlines[0][1] is future:
                    deadlines.popleft()
                if future is None:
                    errors = [r for r in got if isinstance(r, hiredis.ReplyError)]
                    if errors:
                        raise LinkError(f"Redis answered: {errors[0]}")
                elif not future.done():
                    future.set_result(got)
        except (LinkError, hiredis.ProtocolError) as exc:
            self.close(str(exc))


Connectable = TypeVar("Connectable", Link, Pipe)


async def connect(
    url: str,
    link_factory: Callable[[], Connectable],
    *,
    name: str,
    connect_timeout: float,
) -> Connectable:
    """Open a link to the Redis ``url`` names (``redis://``, ``rediss://``, ``unix://``)
    authenticate it when the URL carries credentials, and name it (``CLIENT LIST`` shows
    ``name``).

    Raises:
        OSError, TimeoutError: Redis cannot be reached.
        LinkError: Redis refused the credentials.
    """
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(connect_timeout):
        link: Connectable
        if parts.scheme == "unix":
            _, link = await loop.create_unix_connection(link_factory, parts.path)
        else:
            context: Any = ssl.create_default_context() if parts.scheme == "rediss" else None
            _, link = await loop.create_connection(
                link_factory, parts.hostname or "127.0.0.1", parts.port or 6379, ssl=context
            )
        if parts.password is not None:
            # Before anything else: Redis answers it before the SUBSCRIBE sent next, and
            # an error reply (wrong password) fails the link.
            user = unquote(parts.username) if parts.username else None
            secret = unquote(parts.password)
            link.send(command("AUTH", user, secret) if user else command("AUTH", secret), 1)
        link.send(command("CLIENT", "SETNAME", name), 1)
    return link
