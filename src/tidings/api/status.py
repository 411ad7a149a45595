"""Stats, health and the Prometheus metrics."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Final, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..config import Settings
from ..inbox import Inbox
from ..metrics import Collector, Source
from .http import HEALTH_KEY, READY_KEY, ApiError, Handler, error_response, json_response, node_of

log = logging.getLogger("tidings.api")


async def stats(request: web.Request) -> web.Response:
    scope = request.query.get("scope", "instance")
    if scope == "cluster":
        return json_response(await node_of(request).cluster_stats())
    if scope != "instance":
        raise ApiError(400, "scope must be instance or cluster")
    return json_response(node_of(request).stats())


async def health(request: web.Request) -> web.Response:
    ready = request.app[READY_KEY]()
    body = request.app[HEALTH_KEY]()
    body["success"] = ready
    return json_response(body, status=200 if ready else 503)


async def live(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


class Host(Source, Protocol):
    """What ``/metrics`` reads of its node (``node.Node`` is one): the collector's
    counters and tables, and the inbox's backlog."""

    @property
    def settings(self) -> Settings: ...
    @property
    def inbox(self) -> Inbox | None: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def monotonic(self) -> Callable[[], float]: ...


def metrics_handler(node: Host) -> Handler:
    """``GET /metrics`` in the Prometheus text format, for one node.

    With ``metrics = "key"`` (the default) the scraper sends a server API key as a bearer
    token, as every other API call does.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(node))
    keys = [k.encode() for k in node.settings.api_keys]

    async def handler(request: web.Request) -> web.StreamResponse:
        if node.settings.metrics == "key":
            _, _, value = request.headers.get("Authorization", "").partition(" ")
            if not any(hmac.compare_digest(value.strip().encode(), k) for k in keys):
                return error_response(401, "metrics need a server API key")
        await _refresh_backlog(node)
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return handler


BACKLOG_EVERY: Final = 15.0


async def _refresh_backlog(node: Host) -> None:
    inbox = node.inbox
    m = node.metrics
    now = node.monotonic()
    if inbox is None or (m.backlog_at is not None and now - m.backlog_at < BACKLOG_EVERY):
        return
    m.backlog_at = now
    try:
        m.backlog = await inbox.store.backlog(now=node.clock())
    except Exception as exc:  # a scrape must not fail because the store is down
        m.store_errors += 1
        log.warning("inbox backlog not counted: %s", exc)
