"""Assemble a node, its WebSocket endpoint and its HTTP API into a running server.

``Server`` is an async context manager, so tests and embedding code can run several in
one process; ``run`` is what ``tidings serve`` calls: it adds signal handling and the
graceful shutdown (stop accepting, close WebSockets with 1001, finish in-flight API
calls, exit 0).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from . import api
from .backends import open_store
from .config import ConfigError, Settings
from .delivery import setup as delivery_setup
from .delivery.escalation import Escalation
from .front import Front
from .front.upgrade import Upgrades
from .gateway import socketio, sse
from .gateway.connection import Gateway
from .gateway.websocket import WebSocketEndpoint
from .httpserver import Runner, ServerLog
from .inbox import Inbox
from .node import Node
from .rooms import Rooms
from .store import StoreError
from .web import add_routes as add_web_routes

log = logging.getLogger("tidings.server")


def build_app(node: Node, endpoint: WebSocketEndpoint) -> web.Application:
    """The aiohttp application serving the WebSocket paths and the HTTP API."""
    s = node.settings
    # Requests are built by the main application, so the body limit is set here.
    app = web.Application(client_max_size=s.max_api_body_bytes)
    app[api.NODE_KEY] = node

    def pubsub() -> dict[str, Any]:
        up = node.broker.healthy
        return {
            "isHealthy": up,
            "broker": "redis" if node.clustered else "memory",
            "instance": node.instance_id,
            "publisherConnected": up,
            "subscriberConnected": up,
            "subscribedChannels": len(node.hub.channel_counts()),
            "instances": node.broker.members,
        }

    def health() -> dict[str, Any]:
        hub = node.hub
        conns, users = hub.connection_count(), hub.user_count()
        return {
            "status": "ok" if endpoint.accepting else "draining",
            "data": {
                "websocket": {
                    "totalConnections": conns,
                    "uniqueUsers": users,
                    "averageConnectionsPerUser": round(conns / users, 2) if users else 0,
                    "isHealthy": endpoint.accepting,
                },
                "pubsub": pubsub(),
                "timestamp": node.now_iso(),
            },
        }

    app[api.HEALTH_KEY] = health
    app[api.READY_KEY] = lambda: endpoint.accepting
    for path in s.ws_paths:
        app.router.add_get(path, endpoint.handle)
    # The fallback for clients without WebSocket; a POST another instance took is handed
    # to its stream here by the control plane.
    node.sse_post_local = sse.add_routes(app, endpoint.gateway, node).post_local
    socketio.add_routes(app, endpoint.gateway)  # existing Socket.IO clients (guide 003)
    if s.metrics != "off":
        app.router.add_get("/metrics", api.metrics_handler(node))
    api.add_routes(app)
    add_web_routes(app, node)  # the console at / and /tidings.js
    # The API lives in a sub-application so its middleware (keys, JSON errors) wraps API
    # calls only: a WebSocket holds its handler's frames for its whole life, and every
    # middleware frame kept per connection is memory times ten thousand.
    api_app = api.build_api_app(node)
    app[api.API_APP_KEY] = api_app
    app.add_subapp("/api/", api_app)

    async def on_shutdown(_: web.Application) -> None:
        await endpoint.shutdown()

    app.on_shutdown.append(on_shutdown)
    return app


class Server:
    """One tidings instance listening on a TCP port.

    Args:
        settings: effective settings (``port`` 0 picks a free port; see ``port``).
        clock, monotonic: injected time sources.
        listen: False builds everything but the listening socket: connections then come
            from the host application through ``protocol()`` (``tidings.asgi``), so a
            mounted server can never compete for a port.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        listen: bool = True,
    ) -> None:
        self.settings = settings
        self.listen = listen
        self.node = Node(settings, clock=clock, monotonic=monotonic)
        self.gateway = Gateway(self.node)
        self.endpoint = WebSocketEndpoint(self.gateway)
        self.node.disconnect_local = self.gateway.disconnect
        self.app = build_app(self.node, self.endpoint)
        self.templates = delivery_setup.templates(settings)
        self.escalation = Escalation(
            settings.escalation,
            clock=lambda: self.node.clock(),
            max_attempts=settings.delivery_max_attempts,
            retry_base=settings.delivery_retry_base,
            interval=settings.delivery_interval,
            app_url=settings.app_url,
            outcomes=self.node.metrics.deliveries,
            templates=self.templates,
            digest_times=settings.digest_times,
        )
        self.app[api.API_APP_KEY][api.ESCALATION_KEY] = self.escalation
        self._runner: web.AppRunner | None = None
        # With http_fast_path (and no TLS): the listening socket and its HTTP front.
        self._listener: asyncio.Server | None = None
        self.front: Front | None = None
        self.inbox: Inbox | None = None
        self.rooms: Rooms | None = None
        self.port: int = 0
        self.host: str = settings.host

    async def start(self) -> None:
        s = self.settings
        tls = self._tls_context()  # first: a bad certificate must not leave a store open
        store = open_store(s.store_url, timeout=s.store_timeout)
        try:
            await store.open()
        except StoreError:
            raise
        except Exception as exc:  # a refused connection, an unwritable file, bad URL
            raise StoreError(f"cannot open the store: {exc.__class__.__name__}: {exc}") from None
        self.inbox = self.node.inbox = Inbox(
            self.node, store, plan=self.escalation.plan, templates=self.templates
        )
        self.inbox.start()
        self.escalation.start(store, delivery_setup.senders(s, store))
        try:
            await self.node.start()
            self.rooms = self.node.rooms = Rooms.from_settings(self.node, store)
            await self.rooms.start()
        except BaseException:
            await self.node.stop()
            await self.escalation.stop()
            await self.inbox.drain()
            await store.close()
            self.inbox = self.node.inbox = None
            raise
        runner = Runner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=s.shutdown_timeout,
            # The only timeout aiohttp applies before a request arrives: it bounds how
            # long an idle new connection may hold a socket without sending a handshake.
            keepalive_timeout=s.handshake_timeout,
            logger=ServerLog(logging.getLogger("tidings.http"), None),
        )
        await runner.setup()
        if not self.listen:
            self._runner = runner
            return
        try:
            sockets = await self._listen(runner, tls)
        except BaseException:
            # Could not listen (port taken): release what start() opened.
            await runner.cleanup()
            await self._stop_rooms()
            await self.node.stop()
            await self.escalation.stop()
            await self.inbox.drain()
            await store.close()
            self.inbox = self.node.inbox = None
            raise
        self._runner = runner
        self.port = sockets[0].getsockname()[1] if sockets else s.port

    async def _listen(self, runner: web.AppRunner, tls: ssl.SSLContext | None) -> list[Any]:
        """Listen: on the HTTP front (``http_fast_path``, plain HTTP), which hands what it
        does not serve to aiohttp, or on aiohttp's own site. Returns the bound sockets."""
        s = self.settings
        server = runner.server
        if s.http_fast_path and tls is None and server is not None:
            keys = self.app[api.API_APP_KEY][api.API_KEYS_KEY]
            lean = self.endpoint.lean
            upgrades = Upgrades(self.endpoint, lean) if lean is not None else None
            self.front = Front(
                self.node, keys, server, timeout=s.handshake_timeout, upgrades=upgrades
            )
            loop = asyncio.get_running_loop()
            self._listener = await loop.create_server(self.front, s.host, s.port, backlog=2048)
            return list(self._listener.sockets)
        site = web.TCPSite(runner, s.host, s.port, backlog=2048, ssl_context=tls)
        await site.start()
        # aiohttp keeps the bound sockets there
        return list(getattr(site._server, "sockets", None) or [])

    def protocol(self) -> asyncio.Protocol:
        """A new HTTP connection's protocol (aiohttp's), for a transport the caller
        drives: how ``tidings.asgi`` hands it requests without a socket.

        Raises:
            RuntimeError: the server is not started.
        """
        runner = self._runner
        if runner is None or runner.server is None:
            raise RuntimeError("the tidings server is not started")
        return runner.server()

    def _tls_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if not s.certfile:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(s.certfile, s.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"settings 'certfile'/'keyfile': {exc}") from None
        return context

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, close WebSockets (1001), finish API calls."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.gateway.accepting = False
        if self.rooms is not None:
            self.rooms.draining = True  # presence entries expire with this instance
        await self._step("closing connections and API calls", self._close_http(runner))
        await self._step("stopping rooms", self._stop_rooms())
        await self._step("leaving the cluster", self.node.stop())
        inbox, self.inbox = self.inbox, None
        if inbox is not None:
            self.node.inbox = None
            await self._step("stopping escalation", self.escalation.stop())
            await self._step("finishing inbox work", inbox.drain())
            await self._step("closing the store", inbox.store.close())

    async def _close_http(self, runner: web.AppRunner) -> None:
        """Stop listening, then finish the API calls in flight on the front and on
        aiohttp (which also closes the WebSockets, 1001) together."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        front = self.front
        if front is None:
            await runner.cleanup()
            return
        front.close()
        await asyncio.gather(runner.cleanup(), front.wait_closed(self.settings.shutdown_timeout))

    async def _step(self, what: str, step: Coroutine[Any, Any, None]) -> None:
        """One shutdown step, bounded: a step that hangs (a peer that never answers) is
        named in the log and abandoned, so SIGTERM always ends the process."""
        limit = self.settings.shutdown_timeout + 5
        log.info("shutdown: %s", what)
        try:
            await asyncio.wait_for(step, limit)
        except TimeoutError:
            log.error("shutdown: %s did not finish in %.0f s; going on without it", what, limit)

    async def _stop_rooms(self) -> None:
        rooms, self.rooms = self.rooms, None
        if rooms is not None:
            await rooms.stop()
            self.node.rooms = None

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def configure_logging(settings: Settings) -> None:
    """Text logs by default, JSON lines with ``log_format = "json"``."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        from .logs import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("tidings")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False
    # aiohttp's own loggers go through the same handler, so every line obeys log_format.
    aiohttp_log = logging.getLogger("aiohttp")
    aiohttp_log.handlers[:] = [handler]
    aiohttp_log.setLevel(logging.WARNING)
    aiohttp_log.propagate = False


# The cyclic collector's thresholds for `tidings serve` (CPython's defaults: 700, 10, 10).
GC_THRESHOLDS: tuple[int, int, int] = (10_000, 20, 20)


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-running server.

    Called once the server is up. Everything allocated so far (imported modules, the
    app, settings) lives as long as the process: ``gc.freeze`` moves it out of every
    later collection. A larger first threshold collects young objects less often; most
    of what a request or a frame allocates is freed by reference counting anyway. With
    thousands of connections alive, every full collection walks all their objects, so
    under a connect storm the defaults spent about a fifth of the server's CPU in the
    collector (5,000 connects: 1,016-1,036 µs of CPU per connect, 758-878 tuned).

    With these thresholds the bench's storm of 9,900 connects runs 39 young and 1 middle
    collection and no full one: 0.1 s, about 10 µs per connect (``gc.callbacks``). No
    ``gc.freeze`` after bursts: it would not spare those two walks (each object that
    survives is walked once as young, once as middle-aged), only later full ones, and a
    frozen object is never collected, so a cycle among a closed connection's objects
    frozen with it would stay in memory for good.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = Server(settings)
    await server.start()
    tune_gc()
    # One line on stdout, for scripts (and the benchmark) that start us on port 0.
    print(f"tidings listening on {server.url}", flush=True)
    log.info(
        "WebSocket at %s on %s; HTTP API at %s/api",
        ", ".join(settings.ws_paths),
        server.url,
        server.url,
    )
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    log.info("stopped")
