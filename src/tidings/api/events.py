"""The connection event log over HTTP: ``GET /api/events`` (a page of this instance's
recent connects and disconnects) and ``GET /api/events/stream`` (the same, live, as
Server-Sent Events). Both need a server API key; the log is per instance (each event
names its ``instance``), kept by ``events.ConnectionEvents``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import msgspec
from aiohttp import web

from ..events import ConnectionEvent, ConnectionEvents
from ..publication import iso_timestamp
from .http import ApiError, json_response, node_of

# A comment line this often keeps proxies from closing an idle stream.
HEARTBEAT_SECONDS: Final = 15.0
# Events a new stream starts with when it names no position.
BACKLOG: Final = 100
MAX_LIMIT: Final = 1000
_BATCH: Final = 200


class ConnectionEventView(msgspec.Struct, kw_only=True):
    """One connect or disconnect (``code``: the close code, on a disconnect only)."""

    seq: int
    at: str
    event: str
    userId: str
    clientId: str
    transport: str
    remoteAddress: str | None
    code: int | None
    instance: str


class EventsPage(msgspec.Struct, kw_only=True):
    """Events oldest first; ``gap`` when some after ``after`` were already dropped from
    the instance's ring; ``lastSeq`` is the newest event's number on the instance."""

    instance: str
    lastSeq: int
    gap: bool
    events: list[ConnectionEventView]


_ENCODER: Final = msgspec.json.Encoder()


def view(event: ConnectionEvent, instance: str) -> ConnectionEventView:
    return ConnectionEventView(
        seq=event.seq,
        at=iso_timestamp(event.at),
        event=event.kind,
        userId=event.user_id,
        clientId=event.client_id,
        transport=event.transport,
        remoteAddress=event.remote,
        code=event.code,
        instance=instance,
    )


def _position(raw: str | None, log: ConnectionEvents) -> int | None:
    """A position a caller gave (``after``, ``Last-Event-ID``); one from before this
    instance started (higher than anything it has) reads as 0: everything kept."""
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, "after must be a whole number (an event's seq)")
    seq = int(raw)
    return 0 if seq > log.last_seq else seq


async def list_events(request: web.Request) -> web.Response:
    node = node_of(request)
    log = node.events
    raw_limit = request.query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be 1 to {MAX_LIMIT}")
    limit = int(raw_limit)
    after = _position(request.query.get("after"), log)
    if after is None:  # the newest ones
        after = max(0, log.last_seq - limit)
    events, gap = log.after(after, limit)
    page = EventsPage(
        instance=node.instance_id,
        lastSeq=log.last_seq,
        gap=gap,
        events=[view(e, node.instance_id) for e in events],
    )
    return json_response(page)


class EventStreams:
    """The open ``/api/events/stream`` responses, ended when the server shuts down."""

    def __init__(self) -> None:
        self.closing = False
        self._wakes: set[asyncio.Event] = set()

    def add(self, wake: asyncio.Event) -> None:
        self._wakes.add(wake)

    def discard(self, wake: asyncio.Event) -> None:
        self._wakes.discard(wake)

    async def close(self, _: web.Application) -> None:
        self.closing = True
        for wake in self._wakes:
            wake.set()


STREAMS_KEY: Final = web.AppKey("event_streams", EventStreams)


async def stream_events(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    log = node.events
    streams = request.app[STREAMS_KEY]
    after = _position(request.headers.get("Last-Event-ID", request.query.get("after")), log)
    seq = max(0, log.last_seq - BACKLOG) if after is None else after
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    wake = asyncio.Event()
    streams.add(wake)
    unfollow = log.follow(wake.set)
    try:
        # The comment line tells the client the stream is open before any event comes.
        await response.write(b": connected\n\n")
        while not streams.closing:
            events, gap = log.after(seq, _BATCH)
            chunk = bytearray()
            if gap:
                chunk += b"event: gap\ndata: {}\n\n"
            for event in events:
                data = _ENCODER.encode(view(event, node.instance_id))
                chunk += b"id: %d\nevent: %s\ndata: %s\n\n" % (
                    event.seq,
                    event.kind.encode(),
                    data,
                )
            if events:
                seq = events[-1].seq
            elif gap:
                seq = log.last_seq
            if chunk:
                await response.write(bytes(chunk))
                continue
            # Nothing new: ``after`` and ``clear`` run without a suspension between
            # them, so no event can slip in unseen.
            wake.clear()
            try:
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    await wake.wait()
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
    except ConnectionError:  # the operator went away
        return response
    finally:
        unfollow()
        streams.discard(wake)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


def add_event_routes(app: web.Application) -> None:
    """Register the event log routes on the /api sub-application."""
    streams = EventStreams()
    app[STREAMS_KEY] = streams
    app.on_shutdown.append(streams.close)
    app.router.add_get("/events", list_events)
    app.router.add_get("/events/stream", stream_events)
