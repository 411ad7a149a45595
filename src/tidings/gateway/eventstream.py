"""The Server-Sent Events wire format of one session, without the socket.

``EventOutbox`` numbers a session's events (``id: <clientId>.<n>``), queues them for the
stream that writes them, and keeps the latest ones so a client that reconnects with
``Last-Event-ID`` gets exactly what it missed. ``last_event_id`` and ``client_frames``
read what a client sends. ``gateway/sse.py`` drives these over aiohttp.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import msgspec

from ..protocol import json_depth_exceeded

# The largest event number accepted in a Last-Event-ID (more digits are not ours).
_MAX_DIGITS: Final = 18
_raw_list: Final = msgspec.json.Decoder(list[msgspec.Raw])


class EventOutbox:
    """The numbered events of one session.

    Args:
        client_id: the session's id, the first part of every event id.
        keep: bytes of recent events kept for a resume (at least the latest event is).

    ``pending`` is what the current stream has not written yet, ``unsent`` its size in
    bytes; ``recent`` holds the latest events whether written or not.
    """

    __slots__ = ("count", "keep", "kept", "pending", "prefix", "recent", "unsent")

    def __init__(self, client_id: str, keep: int) -> None:
        self.prefix = f"id: {client_id}.".encode()
        self.keep = keep
        self.count = 0
        self.recent: deque[tuple[int, bytes]] = deque()
        self.kept = 0
        self.pending: list[bytes] = []
        self.unsent = 0

    def append(self, payload: bytes) -> None:
        """Number one message (one line of JSON) and queue it as an event."""
        self.count += 1
        event = b"%s%d\ndata: %s\n\n" % (self.prefix, self.count, payload)
        self.pending.append(event)
        self.unsent += len(event)
        self.recent.append((self.count, event))
        self.kept += len(event)
        while self.kept > self.keep and len(self.recent) > 1:
            _, old = self.recent.popleft()
            self.kept -= len(old)

    def take(self) -> bytes:
        """Everything not yet written, as one chunk; it counts as written."""
        chunk = b"".join(self.pending)
        self.pending.clear()
        self.unsent = 0
        return chunk

    def replay_from(self, seen: int) -> bool:
        """Queue every event after number ``seen`` again (for a new stream).

        Returns False, changing nothing, when some of them are no longer kept or ``seen``
        is beyond the last event.
        """
        if seen > self.count:
            return False
        missed = [event for n, event in self.recent if n > seen]
        if len(missed) != self.count - seen:
            return False
        self.pending = missed
        self.unsent = sum(map(len, missed))
        return True


def last_event_id(raw: str) -> tuple[str, int] | None:
    """``(clientId, n)`` from a ``Last-Event-ID`` value, or None if it is not one of ours."""
    client_id, dot, n = raw.strip().rpartition(".")
    if not dot or not client_id or not n.isdigit() or len(n) > _MAX_DIGITS:
        return None
    return client_id, int(n)


def client_frames(body: bytes) -> list[bytes]:
    """The client messages in a POST body: one object, or each item of a JSON array.

    Anything else is passed on whole, so the session answers it with the same
    ``INVALID_MESSAGE`` error a WebSocket frame would get.
    """
    if body.lstrip()[:1] == b"[" and not json_depth_exceeded(body):
        try:
            return [bytes(item) for item in _raw_list.decode(body)]
        except (msgspec.DecodeError, RecursionError):
            pass
    return [body]
