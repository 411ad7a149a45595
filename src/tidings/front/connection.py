"""``FrontConnection``: the asyncio protocol of one plain-HTTP connection while the front
holds it (see ``tidings.front``)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol, cast

from ..api.http import ApiKeys, failure
from ..gateway.lean import LeanLink
from .request import Head, read_head
from .response import Dates, error_answer, json_answer
from .routes import Act, Route, plain
from .upgrade import Upgrade, Upgrades


class Front(Protocol):
    """What a connection uses of what the front's connections share (``tidings.front.Front``,
    declared here so the two modules do not import each other)."""

    keys: ApiKeys
    upgrades: Upgrades | None
    routes: dict[tuple[bytes, bytes], Route]
    max_body: int
    max_buffer: int
    dates: Dates
    timeout: float
    draining: bool
    served: dict[str, int]
    connections: set[FrontConnection]

    def aiohttp(self) -> asyncio.Protocol: ...

    def count(self, route: Route, status: int) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...

    def forget(self, connection: FrontConnection) -> None: ...


class FrontConnection(asyncio.Protocol):
    """Serves the requests the front takes, one at a time in arrival order (pipelined
    ones wait in ``buffer``), until one it does not take: that request, and the rest of
    the connection's life, go to a new aiohttp request handler with the bytes read.

    Bounded as aiohttp bounds a connection: ``handshake_timeout`` from the connection or
    the last answer to the next whole request (a silent or slowloris client is closed; one
    whose head arrived but not yet its body is handed to aiohttp and its body timeout),
    and reading pauses while a request is served with more than a body's worth waiting,
    or while the client does not read its answers.
    """

    __slots__ = (
        "blocked",
        "buffer",
        "busy",
        "deadline",
        "front",
        "head",
        "loop",
        "paused",
        "task",
        "timer",
        "transport",
    )

    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        # The head of a request whose body is still arriving (not parsed again).
        self.head: Head | None = None
        self.busy = False  # a request is being served
        self.blocked = False  # the client is not reading its answers (pause_writing)
        self.paused = False  # reading is paused (the buffer is full)
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        # When the connection times out (loop time), None while a request is served.
        self.deadline: float | None = None
        self.loop: asyncio.AbstractEventLoop

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Answers are small and whole: no Nagle delay. Both event loops (asyncio's and
        # uvloop's) set TCP_NODELAY on every TCP transport they make, so the setsockopt
        # aiohttp repeats here (3 µs on uvloop) is not (a test checks the socket's flag).
        self.transport = cast(asyncio.Transport, transport)
        # Kept: on Python < 3.12 every get_running_loop() is a getpid() system call, and
        # each request would take two (its task and its keep-alive timer).
        self.loop = asyncio.get_running_loop()
        self.front.connections.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.busy or self.blocked:
            if not self.paused and len(self.buffer) > self.front.max_buffer:
                self.paused = True
                self._transport().pause_reading()
            return
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.buffer.clear()
        self.front.forget(self)

    def pause_writing(self) -> None:
        self.blocked = True

    def resume_writing(self) -> None:
        self.blocked = False
        if not self.busy:
            self._next()

    # --- serving ---------------------------------------------------------------------

    def _transport(self) -> asyncio.Transport:
        assert self.transport is not None
        return self.transport

    def _next(self) -> None:
        """Serve the request at the start of the buffer if it is whole and the front's;
        hand the connection over if it is not the front's."""
        buffer = self.buffer
        if not buffer or self.blocked:
            return
        head = self.head or read_head(buffer)
        if head is None:
            self._hand_over()
            return
        if not isinstance(head, Head):
            return  # the head is not complete yet
        front = self.front
        if head.upgrade:
            upgrades = front.upgrades
            upgrade = upgrades.take(head, self._remote()) if upgrades is not None else None
            if upgrade is None:
                self._hand_over()
            else:
                self._upgrade(head, upgrade)
            return
        route = front.routes.get((head.method, head.target))
        length = head.content_length()
        if route is None or length is None or length > front.max_body or not plain(head):
            self._hand_over()
            return
        end = head.size + length
        if len(buffer) < end:
            self.head = head
            return  # the body is on its way
        self.head = None
        act = route.take(head, bytes(buffer[head.size : end]))
        authorization = head.headers.get(b"authorization", b"")
        key = front.keys.match(authorization.decode()) if authorization.isascii() else None
        # Decided without a side effect so far; counting the key's request is the first.
        if act is None or key is None or not front.keys.take(key):
            self._hand_over()
            return
        del buffer[:end]
        self.busy = True
        self.deadline = None  # the timer stays: see _arm
        self.task = self.loop.create_task(self._serve(route, act))

    async def _serve(self, route: Route, act: Act) -> None:
        front = self.front
        try:
            status, data = await act()
            answer = json_answer(status, data, front.dates)
        except Exception as exc:
            # After the key was counted the request is the front's to answer, as the
            # API's middleware would (same status, message, headers and log line).
            status, message, headers = failure(exc, "POST", route.template)
            answer = error_answer(status, message, front.dates, headers)
        front.count(route, status)
        self._answered(answer)

    def _answered(self, answer: bytes) -> None:
        self.busy = False
        self.task = None
        t = self._transport()
        if t.is_closing():
            return
        t.write(answer)
        if self.front.draining:
            t.close()
            return
        if self.paused:
            self.paused = False
            t.resume_reading()
        self._arm()
        self._next()

    def _remote(self) -> str | None:
        peer = self._transport().get_extra_info("peername")
        return peer[0] if isinstance(peer, tuple) else None  # as aiohttp's request.remote

    def _upgrade(self, head: Head, upgrade: Upgrade) -> None:
        """Admission control, then the 101 and the socket to a ``LeanLink``; or the
        refusal, answered here (admission has counted it)."""
        front = self.front
        upgrades = front.upgrades
        assert upgrades is not None
        endpoint = upgrades.endpoint
        refused = endpoint.admit(upgrade.peer, upgrade.token is not None)
        if refused is not None:
            del self.buffer[: head.size]
            self._answered(json_answer(refused.status, refused.body, front.dates, refused.headers))
            return
        self._disarm()
        front.forget(self)
        tail = bytes(self.buffer[head.size :])
        self.buffer.clear()
        t = self._transport()
        t.pause_reading()  # until the connection is authenticated (LeanLink.start)
        link = LeanLink(upgrades.engine, upgrade.ws, t)
        t.set_protocol(link)
        t.write(upgrade.answer)
        front.served["upgrade"] += 1
        front.spawn(endpoint.open_lean(link, tail, upgrade.peer, upgrade.token, upgrade.options))

    def _hand_over(self) -> None:
        """Give the connection, with the bytes read of its current request, to a new
        aiohttp request handler; the front forgets it."""
        self._disarm()
        self.front.forget(self)
        t = self._transport()
        handler = self.front.aiohttp()
        t.set_protocol(handler)
        handler.connection_made(t)
        data = bytes(self.buffer)
        self.buffer.clear()
        if data:
            handler.data_received(data)
        if self.paused:
            self.paused = False
            t.resume_reading()

    def drain(self) -> None:
        """The server is stopping: close now if idle, else after the current answer."""
        if not self.busy and self.transport is not None:
            self.transport.close()

    # --- the keep-alive / handshake timer ----------------------------------------------

    def _arm(self) -> None:
        """Start the wait for the next request. A keep-alive connection arms after every
        answer: a timer made and cancelled per request (libuv's start, stop and close)
        cost more than the rest of the bookkeeping, so the timer is kept and moved only
        when it fires early (``_expired``)."""
        self.deadline = self.loop.time() + self.front.timeout
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._expired)

    def _disarm(self) -> None:
        """The connection leaves the front (handed over, upgraded, closed)."""
        self.deadline = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        deadline = self.deadline
        if deadline is None:
            return  # serving a request (busy): its answer arms again
        if deadline > self.loop.time():
            self.timer = self.loop.call_at(deadline, self._expired)  # re-armed since
            return
        if self.head is not None:
            # The head is whole, the body is late: aiohttp's body timeout answers 408.
            self._hand_over()
        else:
            self._transport().close()  # silent, or a head trickling in: as aiohttp
