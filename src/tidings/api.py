"""The server HTTP API: what a backend calls to publish, send and read stats.

Every route under ``/api`` but the OpenAPI document needs a server API key
(``Authorization: Bearer <key>``). Errors are JSON ``{"error": {"code", "message"}}``
with the matching status; ``docs/http-api.md`` and ``openapi.py`` describe the same.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .auth import AuthError
from .broker import BrokerError
from .inbox import CreateRequest, Inbox, InboxError
from .metrics import Collector
from .node import Node, PublishError, Sent
from .openapi import openapi_document
from .ratelimit import TokenBucket
from .store import IdempotencyConflict
from .transport import WebSocketEndpoint

log = logging.getLogger("tidings.api")

NODE_KEY: Final = web.AppKey("node", Node)
HEALTH_KEY: Final[web.AppKey[Callable[[], dict[str, Any]]]] = web.AppKey("health")
READY_KEY: Final[web.AppKey[Callable[[], bool]]] = web.AppKey("ready")

USER_KEY: Final = web.RequestKey("user_id", str)
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PublishRequest(msgspec.Struct, forbid_unknown_fields=True):
    channel: str
    type: str = "message"
    data: Any = None


class SendRequest(msgspec.Struct, forbid_unknown_fields=True):
    type: str = "message"
    data: Any = None


class BroadcastRequest(msgspec.Struct, forbid_unknown_fields=True):
    type: str = "message"
    data: Any = None
    excludeUserId: str | None = None


STATUS_CODES: Final = {
    400: "BAD_REQUEST",
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


async def _body(request: web.Request, cls: type[T]) -> T:
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=cls)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message.startswith("Object contains unknown field"):
            # Name what the route does take: a first guess ({"title": ...} on a send
            # route) should say how to fix it, not only what is wrong.
            fields = ", ".join(getattr(cls, "__struct_fields__", ()))
            message += f"; this route takes: {fields}"
        raise _HTTPError(422, message) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _HTTPError(400, f"malformed JSON: {exc}") from None


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def make_middleware(node: Node) -> Middleware:
    """JSON errors everywhere, and API-key checks (plus an optional rate limit) on /api."""
    keys = [k.encode() for k in node.settings.api_keys]
    rate = node.settings.api_rate_limit_per_second
    buckets: dict[bytes, TokenBucket] = {}

    def check_key(request: web.Request) -> None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        presented = value.strip().encode()
        if scheme.lower() != "bearer" or not presented:
            raise _HTTPError(401, "missing API key (Authorization: Bearer <key>)")
        for key in keys:
            if hmac.compare_digest(presented, key):
                if rate > 0:
                    bucket = buckets.get(key)
                    if bucket is None:
                        bucket = buckets[key] = TokenBucket(
                            rate, max(1.0, rate * 2), node.monotonic
                        )
                    if not bucket.take():
                        raise _HTTPError(429, "API rate limit exceeded")
                return
        try:
            node.verifier.verify(presented.decode(errors="replace"))
        except AuthError:
            raise _HTTPError(401, "invalid API key") from None
        raise _HTTPError(403, "this endpoint needs a server API key, not a user token")

    def check_user(request: web.Request) -> None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _HTTPError(401, "missing token (Authorization: Bearer <jwt>)")
        try:
            request[USER_KEY] = node.verifier.verify(value.strip()).user_id
        except AuthError:
            raise _HTTPError(401, "invalid or expired token") from None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await respond(request, handler)
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
            # Room routes a member calls carry ``user_token`` (rooms_api.member_route).
            if request.path.startswith("/api/me/") or getattr(
                request.match_info.handler, "user_token", False
            ):
                check_user(request)
            elif request.path.startswith("/api/") and request.path != "/api/openapi.json":
                check_key(request)
            return await handler(request)
        except _HTTPError as exc:
            headers = {"Retry-After": "1"} if exc.status == 429 else None
            return error_response(exc.status, exc.message, headers)
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
        except Exception:
            log.exception("error serving %s %s", request.method, request.path)
            return error_response(500, "internal server error")

    return middleware


def _node(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def _sent(sent: Sent, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"id": sent.id, **extra, "delivered": sent.delivered}
    if sent.position is not None:
        body["offset"], body["epoch"] = sent.position
    return json_response(body)


async def publish(request: web.Request) -> web.Response:
    body = await _body(request, PublishRequest)
    try:
        sent = await _node(request).publish(body.channel, body.type, body.data)
    except PublishError as exc:
        raise _HTTPError(422, str(exc)) from None
    return _sent(sent, channel=body.channel)


async def send_to_user(request: web.Request) -> web.Response:
    body = await _body(request, SendRequest)
    try:
        sent = await _node(request).send_to_user(
            request.match_info["user_id"], body.type, body.data
        )
    except PublishError as exc:
        raise _HTTPError(422, str(exc)) from None
    return _sent(sent)


async def send_to_role(request: web.Request) -> web.Response:
    body = await _body(request, SendRequest)
    try:
        sent = await _node(request).send_to_role(request.match_info["role"], body.type, body.data)
    except PublishError as exc:
        raise _HTTPError(422, str(exc)) from None
    return _sent(sent)


async def broadcast(request: web.Request) -> web.Response:
    body = await _body(request, BroadcastRequest)
    try:
        sent = await _node(request).broadcast(body.type, body.data, exclude_user=body.excludeUserId)
    except PublishError as exc:
        raise _HTTPError(422, str(exc)) from None
    return _sent(sent)


# --- notifications ------------------------------------------------------------------------


class IdsBody(msgspec.Struct, forbid_unknown_fields=True):
    """Notification ids: ``ids`` is the canonical name; the WebSocket's ``notificationIds``
    and ``notificationId`` (the guides' names) are accepted too, and merged."""

    ids: list[str] | None = None
    notificationIds: list[str] | None = None
    notificationId: str | None = None

    def id_list(self) -> list[str] | None:
        """Every id given once, in order; None when no name was given at all."""
        if self.ids is None and self.notificationIds is None and self.notificationId is None:
            return None
        merged = [self.notificationId] if self.notificationId is not None else []
        merged += (self.ids or []) + (self.notificationIds or [])
        ids = list(dict.fromkeys(merged))
        if len(ids) > 1000:
            raise _HTTPError(422, "at most 1000 ids")
        return ids


class ReadRequest(IdsBody, forbid_unknown_fields=True):
    all: bool = False


def _inbox(request: web.Request) -> Inbox:
    inbox = _node(request).inbox
    if inbox is None:
        raise _HTTPError(503, "the notification store is not available")
    return inbox


async def create_notification(request: web.Request) -> web.Response:
    body = await _body(request, CreateRequest)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 255:
        raise _HTTPError(400, "Idempotency-Key must be 1 to 255 characters")
    try:
        created = await _inbox(request).create(body, idempotency_key=key)
    except InboxError as exc:
        raise _HTTPError(422, str(exc)) from None
    except IdempotencyConflict:
        raise _HTTPError(409, "Idempotency-Key was already used for a different request") from None
    items = [{"id": n.id, "userId": n.user_id, "seq": n.seq} for n in created.notifications]
    skipped = list(created.skipped)
    return json_response(
        {"notifications": items, "replayed": created.replayed, "skipped": skipped},
        status=200 if created.replayed else 201,
    )


def _owner(request: web.Request) -> str:
    user = request.get(USER_KEY)
    return user if user is not None else request.match_info["user_id"]


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise _HTTPError(400, f"{name} must be true or false")
    return value in ("true", "1")


async def list_notifications(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        raise _HTTPError(400, "limit must be a whole number") from None
    try:
        page = await _inbox(request).list(
            _owner(request),
            unread_only=_flag(request, "unreadOnly"),
            limit=limit,
            cursor=request.query.get("cursor"),
        )
    except InboxError as exc:
        raise _HTTPError(400, str(exc)) from None
    return json_response(page)


async def get_notification(request: web.Request) -> web.Response:
    item = await _inbox(request).get(_owner(request), request.match_info["notification_id"])
    if item is None:
        # The same answer for another user's notification as for a missing one.
        raise _HTTPError(404, "no such notification")
    return json_response(item)


async def read_notifications(request: web.Request) -> web.Response:
    body = await _body(request, ReadRequest)
    ids = body.id_list()
    if body.all == (ids is not None):
        raise _HTTPError(422, "give either ids or all: true")
    changed, unread = await _inbox(request).mark_read(_owner(request), None if body.all else ids)
    return json_response({"ids": changed, "unreadCount": unread})


class PreferencesBody(msgspec.Struct, forbid_unknown_fields=True):
    inApp: dict[str, bool]


async def get_preferences(request: web.Request) -> web.Response:
    prefs = await _inbox(request).store.preferences(_owner(request))
    return json_response({"inApp": prefs})


async def put_preferences(request: web.Request) -> web.Response:
    body = await _body(request, PreferencesBody)
    if len(body.inApp) > 100 or any(not 0 < len(c) <= 64 for c in body.inApp):
        raise _HTTPError(422, "at most 100 categories, each 1 to 64 characters")
    await _inbox(request).store.set_preferences(_owner(request), body.inApp)
    return json_response({"inApp": body.inApp})


async def archive_notifications(request: web.Request) -> web.Response:
    ids = (await _body(request, IdsBody)).id_list()
    if ids is None:
        raise _HTTPError(422, "give ids")
    changed, unread = await _inbox(request).remove(_owner(request), ids, delete=False)
    return json_response({"ids": changed, "unreadCount": unread})


async def delete_notification(request: web.Request) -> web.Response:
    nid = request.match_info["notification_id"]
    changed, unread = await _inbox(request).remove(_owner(request), [nid], delete=True)
    if not changed:
        raise _HTTPError(404, "no such notification")
    return json_response({"ids": changed, "unreadCount": unread})


async def stats(request: web.Request) -> web.Response:
    scope = request.query.get("scope", "instance")
    if scope == "cluster":
        return json_response(await _node(request).cluster_stats())
    if scope != "instance":
        raise _HTTPError(400, "scope must be instance or cluster")
    return json_response(_node(request).stats())


async def health(request: web.Request) -> web.Response:
    ready = request.app[READY_KEY]()
    body = request.app[HEALTH_KEY]()
    body["success"] = ready
    return json_response(body, status=200 if ready else 503)


async def live(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


API_APP_KEY: Final = web.AppKey("api_app", web.Application)
ENDPOINT_KEY: Final = web.AppKey("endpoint", WebSocketEndpoint)


class DisconnectBody(msgspec.Struct, forbid_unknown_fields=True):
    code: int = 4010
    reason: str = "disconnected by the server"
    clientId: str | None = None


class UnsubscribeBody(msgspec.Struct, forbid_unknown_fields=True):
    channel: str


async def list_connections(request: web.Request) -> web.Response:
    user = request.match_info["user_id"]
    answers = await _node(request).control({"op": "list", "user": user})
    items = [conn for answer in answers for conn in answer]
    items.sort(key=lambda c: c["connectedAt"] or "")
    return json_response({"connections": items})


async def disconnect_user(request: web.Request) -> web.Response:
    body = await _body(request, DisconnectBody)
    if not (4000 <= body.code <= 4999 or body.code in (1000, 1001)):
        raise _HTTPError(422, "code must be 1000, 1001 or 4000-4999")
    if len(body.reason.encode()) > 120:
        raise _HTTPError(422, "reason must be at most 120 bytes")
    op = {
        "op": "disconnect",
        "user": request.match_info["user_id"],
        "client": body.clientId,
        "code": body.code,
        "reason": body.reason,
    }
    answers = await _node(request).control(op)
    return json_response({"disconnected": sum(answers)})


async def unsubscribe_user(request: web.Request) -> web.Response:
    body = await _body(request, UnsubscribeBody)
    op = {"op": "unsubscribe", "user": request.match_info["user_id"], "channel": body.channel}
    answers = await _node(request).control(op)
    return json_response({"unsubscribed": sum(answers)})


def build_api_app(node: Node, endpoint: WebSocketEndpoint) -> web.Application:
    """The /api sub-application: API-key checks and JSON errors on every route."""
    app = web.Application(middlewares=[make_middleware(node)])
    app[NODE_KEY] = node
    app[ENDPOINT_KEY] = endpoint
    app.router.add_post("/publish", publish)
    app.router.add_post("/users/{user_id}/send", send_to_user)
    app.router.add_post("/roles/{role}/send", send_to_role)
    app.router.add_post("/broadcast", broadcast)
    app.router.add_get("/stats", stats)
    app.router.add_get("/users/{user_id}/connections", list_connections)
    app.router.add_post("/users/{user_id}/disconnect", disconnect_user)
    app.router.add_post("/users/{user_id}/unsubscribe", unsubscribe_user)
    app.router.add_post("/notifications", create_notification)
    for base in ("/users/{user_id}/notifications", "/me/notifications"):
        app.router.add_get(base, list_notifications)
        app.router.add_post(base + "/read", read_notifications)
        app.router.add_get(base + "/{notification_id}", get_notification)
        app.router.add_delete(base + "/{notification_id}", delete_notification)
        app.router.add_post(base + "/archive", archive_notifications)
    for base in ("/users/{user_id}/preferences", "/me/preferences"):
        app.router.add_get(base, get_preferences)
        app.router.add_put(base, put_preferences)
    app.router.add_get("/openapi.json", openapi)
    from .rooms_api import add_room_routes  # here: rooms_api builds on this module

    add_room_routes(app)
    return app


def metrics_handler(node: Node) -> Handler:
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


# The backlog counts scan the notifications table: at most once per this many seconds.
BACKLOG_EVERY: Final = 15.0


async def _refresh_backlog(node: Node) -> None:
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


def add_routes(app: web.Application) -> None:
    """Routes of the main application outside /api (no key needed)."""
    app.router.add_get("/health", health)
    app.router.add_get("/health/live", live)
