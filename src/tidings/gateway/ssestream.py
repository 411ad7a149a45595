"""One SSE session's wire: its numbered events, the response writing them, and its
resume timer (a ``connection.Transport``). It outlives a dropped response for
``sse_resume_seconds``, so a reconnect with ``Last-Event-ID`` takes it up again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from aiohttp import web

from ..hub import Outbound
from ..session import Close, Session
from .connection import Connection
from .eventstream import EventOutbox


class Stream:
    """One SSE session's wire (a ``connection.Transport``): its numbered events, the
    response writing them (if any) and its resume timer. It outlives a dropped response
    for ``sse_resume_seconds``."""

    __slots__ = (
        "conn",
        "events",
        "final",
        "limit",
        "on_close",
        "on_slow",
        "response",
        "resume_timer",
        "transport",
        "wake",
    )

    name: Final = "sse"

    def __init__(
        self,
        limit: int,
        on_slow: Callable[[Stream], None],
        on_close: Callable[[Stream, Close], bool],
    ) -> None:
        self.limit = limit
        self.on_slow = on_slow
        self.on_close = on_close
        self.wake = asyncio.Event()
        self.response: web.StreamResponse | None = None
        self.transport: asyncio.Transport | None = None
        # Set once the session has ended: its close, whose event is the stream's last.
        self.final: Close | None = None
        self.conn: Connection | None = None
        self.events = EventOutbox("", limit)
        self.resume_timer: asyncio.TimerHandle | None = None

    def attach(self, conn: Connection) -> None:
        self.conn = conn
        # The replay buffer holds as much as the outbox may: a resume never needs more.
        self.events = EventOutbox(conn.session.client_id, self.limit)

    @property
    def session(self) -> Session | None:
        return None if self.conn is None else self.conn.session

    @property
    def client_id(self) -> str:
        return "" if self.conn is None else self.conn.session.client_id

    def close(self, close: Close) -> bool:
        return self.on_close(self, close)

    def push(self, message: Outbound) -> bool:
        if self.final is not None:
            return False
        self.append(message.payload)
        if self.backlog() > self.limit:
            self.on_slow(self)
        return True

    def append(self, payload: bytes) -> None:
        self.events.append(payload)
        self.wake.set()

    def ended(self) -> bool:
        return self.final is not None

    def backlog(self) -> int:
        """Bytes queued for the client and not yet taken by its socket."""
        t = self.transport
        return self.events.unsent + (0 if t is None else t.get_write_buffer_size())
