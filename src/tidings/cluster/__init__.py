"""What crosses the broker between nodes: topics, the payload tags, and the topic set.

Every delivery to connections goes through the broker as one publication, whatever
the number of receiving instances; each node's handler fans it out to its own hub.
A payload's first byte says what it is:

- ``M`` + envelope: a message for the connections listening on the topic.
- ``E`` + user id + NUL + envelope: a broadcast that skips one user.
- ``N`` + notification (JSON): a committed notification for the user's connections.
- ``T`` + header (JSON) + LF + envelope: an inbox change (read, archived, deleted) told
  to the user's connections, except the one that asked.
- ``A`` + header (JSON): notifications acknowledged; no tab redelivers them.
- ``C`` + request (JSON): connection control for one user (list, disconnect,
  unsubscribe); answered with ``R`` + reply (JSON) on the asking node's topic.

Topics: ``ch:<channel>``, ``user:<id>``, ``role:<role>``, ``all``, ``node:<id>``. A node
subscribes to a channel, user or role topic while it has a local connection there
(``Hub`` tells it), so Redis sends each publication only to instances that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ..broker import Broker

log = logging.getLogger("tidings.cluster")

MESSAGE = ord("M")
EXCEPT_USER = ord("E")
NOTIFICATION = ord("N")
TELL = ord("T")
ACKED = ord("A")
CONTROL = ord("C")
REPLY = ord("R")

ALL = "all"


def topic(kind: str, name: str) -> str:
    """The broker topic of a channel (``ch``), user, role or node."""
    return f"{kind}:{name}"


def tagged(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + body


def with_header(tag: int, header: dict[str, Any], envelope: bytes = b"") -> bytes:
    encoded = msgspec.json.encode(header)
    return bytes((tag,)) + encoded + (b"\n" + envelope if envelope else b"")


def split_header(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """Undo ``with_header``: the header and the envelope (empty if none)."""
    head, _, envelope = payload[1:].partition(b"\n")
    header: dict[str, Any] = msgspec.json.decode(head)
    return header, envelope


def with_position(envelope: bytes, offset: int, epoch: str, *, recovered: bool = False) -> bytes:
    """Add a publication's stream position to its serialized envelope (once per node)."""
    extra = b',"offset":%d,"epoch":"%s"' % (offset, epoch.encode())
    if recovered:
        extra += b',"recovered":true'
    return envelope[:-1] + extra + b"}"


class Topics:
    """The broker topics a node listens on, following its hub.

    Subscribe and unsubscribe calls for one topic run one after another in the order
    they were asked (each waits for the one before), so a channel left and joined again
    quickly ends subscribed. ``ready(topic)`` waits until the latest call has been made.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._pending: dict[str, asyncio.Task[None]] = {}

    def change(self, name: str, active: bool) -> None:
        before = self._pending.get(name)
        op = self._broker.subscribe if active else self._broker.unsubscribe
        task = asyncio.get_running_loop().create_task(self._run(before, op, name))
        self._pending[name] = task
        task.add_done_callback(lambda t: self._done(name, t))

    async def _run(
        self,
        before: asyncio.Task[None] | None,
        op: Callable[[str], Awaitable[None]],
        name: str,
    ) -> None:
        if before is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await before
        try:
            await op(name)
        except Exception:
            log.exception("broker (un)subscribe of %s failed", name)

    def _done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._pending.get(name) is task:
            del self._pending[name]

    def pending(self, name: str) -> asyncio.Task[None] | None:
        """The (un)subscription of ``name`` still in progress, if any."""
        return self._pending.get(name)

    async def settle(self) -> None:
        """Wait for every pending (un)subscription (shutdown, tests)."""
        while self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)
