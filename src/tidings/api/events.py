"""The connection event log over HTTP: ``GET /api/events`` (a page of recent connects and
disconnects) and ``GET /api/events/stream`` (the same, live, as Server-Sent Events). Both
need a server API key. Each instance keeps its own log (``events.ConnectionEvents``);
``scope=cluster`` gathers every instance's over the cluster's control path
(``cluster.RecentEvents``), and its stream asks again each second while it is open."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final, Protocol

import msgspec
from aiohttp import web

from ..broker import BrokerError
from ..events import ClusterEventsPage, ConnectionEvents, ConnectionEventView
from .http import ApiError, json_response, node_of

# A comment line this often keeps proxies from closing an idle stream.
HEARTBEAT_SECONDS: Final = 15.0
# How often a cluster-wide stream asks the other instances for their new events.
CLUSTER_POLL_SECONDS: Final = 1.0
# Events a new stream starts with (per instance) when it names no position.
BACKLOG: Final = 100
MAX_LIMIT: Final = 1000
_BATCH: Final = 200
# Instances a cluster position may name (more is not a position this server gave).
_MAX_INSTANCES: Final = 256


class Source(Protocol):
    """What these routes use of their node (``node.Node`` is one)."""

    @property
    def instance_id(self) -> str: ...
    @property
    def events(self) -> ConnectionEvents: ...

    async def cluster_events(self, after: dict[str, int], limit: int) -> ClusterEventsPage: ...


_STREAM_HEADERS: Final = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


def _scope(request: web.Request) -> bool:
    """True for ``scope=cluster``."""
    scope = request.query.get("scope", "instance")
    if scope not in ("instance", "cluster"):
        raise ApiError(400, "scope must be instance or cluster")
    return scope == "cluster"


def _seq(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, "after must be an event's seq (a whole number)")
    return int(raw)


def _positions(raw: str | None) -> dict[str, int]:
    """A cluster position, ``<instance>:<seq>,<instance>:<seq>`` (what ``positions``
    and the cluster stream's event ids give)."""
    if not raw:
        return {}
    parts = raw.split(",")
    if len(parts) > _MAX_INSTANCES:
        raise ApiError(400, "after names too many instances")
    out: dict[str, int] = {}
    for part in parts:
        instance, colon, seq = part.partition(":")
        if not colon or not 0 < len(instance) <= 64:
            raise ApiError(400, "after must be <instance>:<seq>, comma separated")
        out[instance] = _seq(seq)
    return out


def _encode_positions(positions: dict[str, int]) -> bytes:
    return ",".join(f"{i}:{n}" for i, n in sorted(positions.items())).encode()


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be 1 to {MAX_LIMIT}")
    return int(raw)


async def list_events(request: web.Request) -> web.Response:
    node = node_of(request)
    cluster_wide, limit = _scope(request), _limit(request)
    raw = request.query.get("after")
    if cluster_wide:
        return json_response(await node.cluster_events(_positions(raw), limit))
    after = None if raw is None else _seq(raw)
    return json_response(node.events.page(after, limit, node.instance_id))


class EventStreams:
    """The open ``/api/events/stream`` responses, ended when the server shuts down."""

    def __init__(self) -> None:
        self._closing = False
        self._wakes: set[asyncio.Event] = set()

    def closing(self) -> bool:
        return self._closing

    def add(self, wake: asyncio.Event) -> None:
        self._wakes.add(wake)

    def discard(self, wake: asyncio.Event) -> None:
        self._wakes.discard(wake)

    async def close(self, _: web.Application) -> None:
        self._closing = True
        for wake in self._wakes:
            wake.set()


STREAMS_KEY: Final = web.AppKey("event_streams", EventStreams)


_ENCODER: Final = msgspec.json.Encoder()


def _frame(view: ConnectionEventView, event_id: bytes) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event_id,
        view.event.encode(),
        _ENCODER.encode(view),
    )


async def stream_events(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    streams = request.app[STREAMS_KEY]
    cluster_wide = _scope(request)
    raw = request.headers.get("Last-Event-ID", request.query.get("after"))
    first: ClusterEventsPage | None = None
    start = 0
    if cluster_wide:
        # Asked before the answer starts: an unreachable cluster is a 503, not a stream.
        first = await node.cluster_events(_positions(raw), BACKLOG)
    elif raw is None:
        start = max(0, node.events.last_seq - BACKLOG)
    else:
        start = _seq(raw)  # beyond the newest (an earlier run's): ``page`` starts over
    response = web.StreamResponse(headers=_STREAM_HEADERS)
    await response.prepare(request)
    wake = asyncio.Event()
    streams.add(wake)
    unfollow = node.events.follow(wake.set)
    try:
        # A comment line tells the client the stream is open before any event comes.
        await response.write(b": connected\n\n")
        if first is not None:
            await _follow_cluster(node, response, streams, wake, _positions(raw), first)
        else:
            await _follow_instance(node, response, streams, wake, start)
    except ConnectionError:  # the operator went away
        return response
    finally:
        unfollow()
        streams.discard(wake)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


async def _idle(wake: asyncio.Event, seconds: float) -> bool:
    """Wait for ``wake`` at most ``seconds``; False on the timeout."""
    try:
        async with asyncio.timeout(seconds):
            await wake.wait()
    except TimeoutError:
        return False
    return True


async def _follow_instance(
    node: Source,
    response: web.StreamResponse,
    streams: EventStreams,
    wake: asyncio.Event,
    seq: int,
) -> None:
    """This instance's events after ``seq``, woken by each new one."""
    me = node.instance_id
    while not streams.closing():
        page = node.events.page(seq, _BATCH, me)
        chunk = bytearray(b"event: gap\ndata: {}\n\n" if page.gap else b"")
        for view in page.events:
            chunk += _frame(view, b"%d" % view.seq)
        seq = page.events[-1].seq if page.events else page.lastSeq
        if chunk:
            await response.write(bytes(chunk))
            continue
        # Nothing new: ``page`` and ``clear`` run without a suspension between them, so
        # no event can slip in unseen.
        wake.clear()
        if not await _idle(wake, HEARTBEAT_SECONDS):
            await response.write(b": keep-alive\n\n")


async def _follow_cluster(
    node: Source,
    response: web.StreamResponse,
    streams: EventStreams,
    wake: asyncio.Event,
    positions: dict[str, int],
    page: ClusterEventsPage,
) -> None:
    """Every instance's events: asked again each second, and at once after a local one.
    Each event's id is the position after it, so ``Last-Event-ID`` resumes exactly."""
    quiet = 0.0
    while not streams.closing():
        chunk = bytearray(b"event: gap\ndata: {}\n\n" if page.gap else b"")
        seen: dict[str, int] = {}
        for view in page.events:
            positions[view.instance] = seen[view.instance] = view.seq
            chunk += _frame(view, _encode_positions(positions))
        for instance, last in page.positions.items():
            # An instance's page may stop short of its newest (limit): go on from there.
            positions[instance] = seen.get(instance, last)
        if chunk:
            await response.write(bytes(chunk))
            quiet = 0.0
        wake.clear()
        if not await _idle(wake, CLUSTER_POLL_SECONDS):
            quiet += CLUSTER_POLL_SECONDS
            if quiet >= HEARTBEAT_SECONDS:
                await response.write(b": keep-alive\n\n")
                quiet = 0.0
        if streams.closing():
            break
        try:
            page = await node.cluster_events(positions, _BATCH)
        except BrokerError:
            await response.write(b": the cluster is unreachable; trying again\n\n")
            page = ClusterEventsPage(events=[], positions={}, gap=False)


def add_event_routes(app: web.Application) -> None:
    """Register the event log routes on the /api sub-application."""
    streams = EventStreams()
    app[STREAMS_KEY] = streams
    app.on_shutdown.append(streams.close)
    app.router.add_get("/events", list_events)
    app.router.add_get("/events/stream", stream_events)
