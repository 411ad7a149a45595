"""The RFC 6455 checks aiohttp's frame reader leaves out, made on the bytes before it.

aiohttp parses client frames but accepts an unmasked one (RFC 6455 5.1: the server must
fail the connection, 1002), and assembles a message from any number of continuation
frames (200,000 empty ones tie up a connection's reader at no cost to the client).
``FrameGuard`` reads the same bytes, headers only: it never copies or unmasks a payload,
it skips it, and reports the first violation. It is pure (bytes in, verdict out);
``GuardedProtocol`` puts it in front of the real protocol through the public
``asyncio.Transport.set_protocol``, so aiohttp's reader stays exactly as it is.

Everything else (opcodes, RSV bits, control frame sizes, close frame payloads, sizes,
permessage-deflate) aiohttp checks itself; the message-level checks (UTF-8, close codes)
are in ``gateway.websocket``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

CONTINUATION: Final = 0x0
PROTOCOL_ERROR: Final = 1002
MESSAGE_TOO_BIG: Final = 1009


@dataclass(frozen=True, slots=True)
class Violation:
    """Why the connection must be failed, as the close code and reason to send."""

    code: int
    reason: str


class FrameGuard:
    """Follows a client's frame stream header by header.

    Args:
        max_fragments: frames one message may be split into; more is a violation (1009).
    """

    __slots__ = ("_buffer", "_fragments", "_skip", "max_fragments", "violation")

    def __init__(self, max_fragments: int) -> None:
        self.max_fragments = max_fragments
        self._buffer = b""  # an incomplete frame header
        self._skip = 0  # payload bytes of the current frame still to pass
        self._fragments = 0  # frames of the message being assembled so far
        self.violation: Violation | None = None

    def feed(self, data: bytes) -> Violation | None:
        """Take the next bytes from the client; the first violation, once there is one."""
        if self.violation is not None:
            return self.violation
        pos = 0
        end = len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            if self._buffer:
                data = self._buffer + data[pos:]
                self._buffer = b""
                pos, end = 0, len(data)
            header = _header_length(data, pos)
            if header is None or pos + header > end:
                self._buffer = data[pos:]
                return None
            self.violation = self._frame(data, pos)
            if self.violation is not None:
                return self.violation
            pos += header
        return None

    def _frame(self, data: bytes, pos: int) -> Violation | None:
        first, second = data[pos], data[pos + 1]
        if not second & 0x80:
            return Violation(PROTOCOL_ERROR, "client frames must be masked")
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        elif length == 127:
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
        self._skip = length
        opcode = first & 0x0F
        if opcode & 0x8:  # control frames may come between fragments
            return None
        fin = first & 0x80
        if opcode != CONTINUATION:
            self._fragments = 0
        self._fragments += 1
        if not fin and self._fragments >= self.max_fragments:
            return Violation(MESSAGE_TOO_BIG, "message split into too many frames")
        return None


def _header_length(data: bytes, pos: int) -> int | None:
    """The length of the frame header at ``pos`` (mask key included), or None if the
    bytes so far do not say yet."""
    if len(data) - pos < 2:
        return None
    second = data[pos + 1]
    size = 2 + (4 if second & 0x80 else 0)
    length = second & 0x7F
    if length == 126:
        size += 2
    elif length == 127:
        size += 8
    return size


class GuardedProtocol(asyncio.Protocol):
    """Passes everything to ``inner`` (aiohttp's protocol), after ``guard`` has seen the
    bytes; on a violation ``on_violation`` is called once and nothing more is passed."""

    def __init__(
        self,
        inner: asyncio.Protocol,
        guard: FrameGuard,
        on_violation: Callable[[Violation], None],
    ) -> None:
        self.inner = inner
        self.guard = guard
        self.on_violation = on_violation

    def data_received(self, data: bytes) -> None:
        violation = self.guard.violation
        if violation is not None:
            return
        violation = self.guard.feed(data)
        if violation is not None:
            self.on_violation(violation)
            return
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
