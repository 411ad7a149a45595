"""An asyncio client for a tidings server.

``Client`` keeps one WebSocket to a tidings server open for an application: it
reconnects with exponential backoff and full jitter (but never after a close code that
``tidings.protocol.should_reconnect`` calls terminal), subscribes again to every channel
after a reconnection (from the last position seen, for channels with history), resumes
the notification inbox with ``?lastSeq=``, drops what it already delivered, queues what
the application sends while offline, and acknowledges notifications in ack mode.

    async with Client("ws://127.0.0.1:8000/ws", token=get_token) as client:
        await client.subscribe("news")
        async for msg in client:
            if msg["type"] == "notification":
                print(msg["data"]["title"])

The package: ``client`` (the connection and its requests), ``events`` (callbacks and the
async iterator), ``handshake`` (opening one connection), ``recovery`` (resume points and
duplicate detection, no I/O), ``backoff`` (the reconnection delay) and ``errors``.
See ``docs/client.md``.
"""

from __future__ import annotations

from .backoff import backoff_delay
from .client import Client
from .errors import ClientClosed, ClientError, QueueFull
from .events import Callback, Message
from .handshake import TokenSource
from .recovery import Position, Recovery

__all__ = [
    "Callback",
    "Client",
    "ClientClosed",
    "ClientError",
    "Message",
    "Position",
    "QueueFull",
    "Recovery",
    "TokenSource",
    "backoff_delay",
]
