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
from ..broker import BrokerError, HistoryResult, StreamPosition
from ..channels import Access
from ..config import Settings
from ..events import ClusterEventsPage, ConnectionEvents
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
    @property
    def instance_id(self) -> str: ...
    @property
    def access(self) -> Access: ...
    @property
    def events(self) -> ConnectionEvents: ...

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult: ...

    async def cluster_events(self, after: dict[str, int], limit: int) -> ClusterEventsPage: ...

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


# Set when a member's route was called with a server API key (an operator reading).
OPERATOR_KEY: Final = web.RequestKey("operator", bool)


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
    return decode_body(await read_raw_body(request, s.max_api_body_bytes, s.body_timeout), cls)


def decode_body(raw: bytes, cls: type[T]) -> T:
    """A whole body decoded as ``cls``: the one decoder of the aiohttp routes and of the
    HTTP front's fast path (``tidings.front``), so both take and refuse the same bodies.

    Raises:
        ApiError: 400 malformed or nested too deep, 422 the wrong shape.
    """
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


class ApiKeys:
    """The server API keys and their rate limit (``api_rate_limit_per_second``), shared
    by the API's middleware and the HTTP front's fast path, so a key's bucket is one
    bucket whichever of the two serves its request.

    Args:
        settings: ``api_keys`` and ``api_rate_limit_per_second``.
        monotonic: the buckets' clock.
    """

    def __init__(self, settings: Settings, monotonic: Callable[[], float]) -> None:
        self.keys: list[bytes] = [k.encode() for k in settings.api_keys]
        self.rate: float = settings.api_rate_limit_per_second
        self.monotonic = monotonic
        self.buckets: dict[bytes, TokenBucket] = {}

    def match(self, authorization: str) -> bytes | None:
        """The server key an ``Authorization`` header presents (``Bearer <key>``), if it
        presents one; nothing is counted."""
        scheme, _, value = authorization.partition(" ")
        presented = value.strip().encode()
        if scheme.lower() != "bearer" or not presented:
            return None
        for key in self.keys:
            if hmac.compare_digest(presented, key):
                return key
        return None

    def take(self, key: bytes) -> bool:
        """Count one request on ``key``: False when its rate limit refuses it (nothing
        is spent then, so a caller may hand the request on to be refused again)."""
        if self.rate <= 0:
            return True
        bucket = self.buckets.get(key)
        if bucket is None:
            rate = self.rate
            bucket = self.buckets[key] = TokenBucket(rate, max(1.0, rate * 2), self.monotonic)
        return bucket.take()


# The API's keys and their buckets, for the HTTP front (``tidings.front``) to share.
API_KEYS_KEY: Final = web.AppKey("api_keys", ApiKeys)


def failure(exc: Exception, method: str, path: str) -> tuple[int, str, dict[str, str] | None]:
    """The JSON error (status, message, headers) for what a route raised, logged as the
    middleware logs it: the one mapping of the aiohttp routes and the HTTP front."""
    if isinstance(exc, ApiError):
        return exc.status, exc.message, {"Retry-After": "1"} if exc.status in (429, 503) else None
    if isinstance(exc, BrokerError):
        # Never report as delivered what the cluster did not take.
        log.warning("%s %s: broker unavailable: %s", method, path, exc)
        return (
            503,
            "the cluster's broker is unreachable; nothing was sent",
            {"Retry-After": "1"},
        )
    status = failure_status(exc)
    if status is None:
        log.error("error serving %s %s", method, path, exc_info=exc)
        return 500, "internal server error", None
    # The store failed, not the request: say so, and when to try again.
    log.warning("%s %s: store unavailable: %s", method, path, exc)
    message = (
        "the notification store's disk is full; nothing was stored"
        if status == 507
        else "the notification store is unavailable; try again"
    )
    return status, message, {"Retry-After": "1"}


def make_middleware(node: Host, api_keys: ApiKeys) -> Middleware:
    """JSON errors everywhere, and API-key checks (plus an optional rate limit) on /api."""
    origins = node.settings.allowed_origins

    def is_key(request: web.Request) -> bool:
        return api_keys.match(request.headers.get("Authorization", "")) is not None

    def check_key(request: web.Request) -> None:
        authorization = request.headers.get("Authorization", "")
        scheme, _, value = authorization.partition(" ")
        presented = value.strip()
        if scheme.lower() != "bearer" or not presented:
            raise ApiError(401, "missing API key (Authorization: Bearer <key>)")
        key = api_keys.match(authorization)
        if key is not None:
            if not api_keys.take(key):
                raise ApiError(429, "API rate limit exceeded")
            return
        try:
            node.verifier.verify(presented)
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
            # A server API key's answer is never readable by a page on another origin,
            # whatever the route (docs/security.md).
            if browser and not request.get(OPERATOR_KEY, False):
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
            # Room routes a member calls carry ``user_token`` (api.rooms.member_route);
            # those an operator may read too, ``operator_too`` (a key, not a token).
            route = request.match_info.handler
            if getattr(route, "operator_too", False) and is_key(request):
                check_key(request)
                request[OPERATOR_KEY] = True
            elif request.path.startswith("/api/me/") or getattr(route, "user_token", False):
                await check_user(request)
            elif request.path.startswith("/api/") and request.path != "/api/openapi.json":
                check_key(request)
            return await handler(request)
        except BodyError as exc:
            response = error_response(exc.status, exc.message)
            # Whatever is left of the body is not worth reading: end the connection.
            response.force_close()
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            allow = exc.headers.get("Allow")
            return error_response(exc.status, exc.reason, {"Allow": allow} if allow else None)
        except Exception as exc:
            return error_response(*failure(exc, request.method, request.path))

    return middleware


def node_of(request: web.Request) -> Host:
    return request.app[NODE_KEY]
