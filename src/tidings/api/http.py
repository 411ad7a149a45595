"""What every API route shares: the application keys, JSON bodies and errors, and the
middleware that checks API keys (or a member's token) and turns every error into JSON."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from .. import cluster
from ..auth import AuthError, Verifier
from ..broker import BrokerError
from ..config import Settings
from ..inbox import Inbox
from ..metrics import Metrics
from ..protocol import MAX_JSON_DEPTH, json_depth_exceeded
from ..publication import Sent
from ..ratelimit import TokenBucket
from ..rooms import Rooms
from ..store import failure_status
from . import cors

log = logging.getLogger("tidings.api")


class Host(Protocol):
    """What the API's routes use of their node (``node.Node`` is one): the publish path
    of the embedding API, connection control, stats, and the inbox."""

    @property
    def settings(self) -> Settings: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def verifier(self) -> Verifier: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def monotonic(self) -> Callable[[], float]: ...
    @property
    def inbox(self) -> Inbox | None: ...
    @property
    def rooms(self) -> Rooms | None: ...

    async def publish(self, channel: str, kind: str, data: Any) -> Sent: ...

    async def send_to_user(self, user_id: str, kind: str, data: Any) -> Sent: ...

    async def send_to_role(self, role: str, kind: str, data: Any) -> Sent: ...

    async def broadcast(self, kind: str, data: Any, *, exclude_user: str | None = None) -> Sent: ...

    async def control(self, op: cluster.Operation, *, wait: float = 2.0) -> list[Any]: ...

    def stats(self) -> dict[str, Any]: ...

    async def cluster_stats(self) -> dict[str, Any]: ...


NODE_KEY: Final[web.AppKey[Host]] = web.AppKey("node")


HEALTH_KEY: Final[web.AppKey[Callable[[], dict[str, Any]]]] = web.AppKey("health")


READY_KEY: Final[web.AppKey[Callable[[], bool]]] = web.AppKey("ready")


API_APP_KEY: Final = web.AppKey("api_app", web.Application)


USER_KEY: Final = web.RequestKey("user_id", str)


T = TypeVar("T")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


STATUS_CODES: Final = {
    400: "BAD_REQUEST",
    408: "REQUEST_TIMEOUT",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT",
    500: "SERVER_ERROR",
    503: "UNAVAILABLE",
    507: "INSUFFICIENT_STORAGE",
}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON error with the documented shape."""
    body = {"error": {"code": STATUS_CODES.get(status, "ERROR"), "message": message}}
    return web.Response(
        body=msgspec.json.encode(body),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


class BodyError(Exception):
    """A request body that could not be read whole: ``status`` says why (400, 408, 413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_raw_body(request: web.Request, limit: int, seconds: float) -> bytes:
    """The whole request body: at most ``limit`` bytes, in at most ``seconds``.

    The deadline covers the whole body, so a client that trickles a chunked body a byte
    at a time cannot hold a handler (and its connection) open for ever.

    Raises:
        BodyError: 413 past ``limit``, 408 past the deadline, 400 when the client broke
            off or sent a malformed chunked body (its own doing: logged at INFO).
    """
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, f"a request body is at most {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(seconds):
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > limit:
                    raise BodyError(413, f"a request body is at most {limit} bytes")
    except TimeoutError:
        log.info("%s %s from %s: body not received in %.0f s", *_who(request), seconds)
        raise BodyError(408, f"the request body did not arrive within {seconds:g} s") from None
    except (ConnectionError, HttpProcessingError) as exc:
        log.info("%s %s from %s: body broken off: %s", *_who(request), exc.__class__.__name__)
        raise BodyError(400, "the request body was incomplete") from None
    return bytes(body)


def _who(request: web.Request) -> tuple[str, str, str | None]:
    return request.method, request.path, request.remote


async def read_body(request: web.Request, cls: type[T]) -> T:
    """The request body decoded as ``cls`` (400 malformed, 422 the wrong shape)."""
    s = node_of(request).settings
    raw = await read_raw_body(request, s.max_api_body_bytes, s.body_timeout)
    if json_depth_exceeded(raw):
        raise ApiError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return msgspec.json.decode(raw, type=cls)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message.startswith("Object contains unknown field"):
            # Name what the route does take: a first guess ({"title": ...} on a send
            # route) should say how to fix it, not only what is wrong.
            fields = ", ".join(getattr(cls, "__struct_fields__", ()))
            message += f"; this route takes: {fields}"
        raise ApiError(422, message) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def make_middleware(node: Host) -> Middleware:
    """JSON errors everywhere, and API-key checks (plus an optional rate limit) on /api."""
    keys = [k.encode() for k in node.settings.api_keys]
    rate = node.settings.api_rate_limit_per_second
    origins = node.settings.allowed_origins
    buckets: dict[bytes, TokenBucket] = {}

    def check_key(request: web.Request) -> None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        presented = value.strip().encode()
        if scheme.lower() != "bearer" or not presented:
            raise ApiError(401, "missing API key (Authorization: Bearer <key>)")
        for key in keys:
            if hmac.compare_digest(presented, key):
                if rate > 0:
                    bucket = buckets.get(key)
                    if bucket is None:
                        bucket = buckets[key] = TokenBucket(
                            rate, max(1.0, rate * 2), node.monotonic
                        )
                    if not bucket.take():
                        raise ApiError(429, "API rate limit exceeded")
                return
        try:
            node.verifier.verify(presented.decode(errors="replace"))
        except AuthError:
            raise ApiError(401, "invalid API key") from None
        raise ApiError(403, "this endpoint needs a server API key, not a user token")

    async def check_user(request: web.Request) -> None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "missing token (Authorization: Bearer <jwt>)")
        await node.verifier.ready(value.strip())  # a new kid: fetch the JWKS first
        try:
            request[USER_KEY] = node.verifier.verify(value.strip()).user_id
        except AuthError as exc:
            if exc.unavailable:
                raise ApiError(503, "token keys unavailable, try again later") from None
            raise ApiError(401, "invalid or expired token") from None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        browser = cors.is_browser_route(request)
        if browser and request.method == "OPTIONS":
            response: web.StreamResponse = cors.preflight(request, origins)
        else:
            response = await respond(request, handler)
            if browser:
                cors.allow(request, response, origins)
        # The route template, never the path: user ids and notification ids stay out.
        info = request.match_info
        route = info.route.resource.canonical if info.route.resource else "unmatched"
        node.metrics.api_requests[(request.method, route, str(response.status))] += 1
        return response

    async def respond(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.match_info.http_exception is not None:
                # No such route (404) or method (405): say so whatever the prefix, before
                # any credential check, so a wrong path never reads as an auth problem.
                return await handler(request)
            # Room routes a member calls carry ``user_token`` (api.rooms.member_route).
            if request.path.startswith("/api/me/") or getattr(
                request.match_info.handler, "user_token", False
            ):
                await check_user(request)
            elif request.path.startswith("/api/") and request.path != "/api/openapi.json":
                check_key(request)
            return await handler(request)
        except ApiError as exc:
            headers = {"Retry-After": "1"} if exc.status in (429, 503) else None
            return error_response(exc.status, exc.message, headers)
        except BodyError as exc:
            response = error_response(exc.status, exc.message)
            # Whatever is left of the body is not worth reading: end the connection.
            response.force_close()
            return response
        except BrokerError as exc:
            # Never report as delivered what the cluster did not take.
            log.warning("%s %s: broker unavailable: %s", request.method, request.path, exc)
            return error_response(
                503, "the cluster's broker is unreachable; nothing was sent", {"Retry-After": "1"}
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            allow = exc.headers.get("Allow")
            return error_response(exc.status, exc.reason, {"Allow": allow} if allow else None)
        except Exception as exc:
            status = failure_status(exc)
            if status is None:
                log.exception("error serving %s %s", request.method, request.path)
                return error_response(500, "internal server error")
            # The store failed, not the request: say so, and when to try again.
            log.warning("%s %s: store unavailable: %s", request.method, request.path, exc)
            message = (
                "the notification store's disk is full; nothing was stored"
                if status == 507
                else "the notification store is unavailable; try again"
            )
            return error_response(status, message, {"Retry-After": "1"})

    return middleware


def node_of(request: web.Request) -> Host:
    return request.app[NODE_KEY]
