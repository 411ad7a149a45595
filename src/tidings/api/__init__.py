"""The server HTTP API: what a backend calls to publish, send and read stats.

Every route under ``/api`` but the OpenAPI document needs a server API key
(``Authorization: Bearer <key>``). Errors are JSON ``{"error": {"code", "message"}}``
with the matching status; ``docs/http-api.md`` and ``openapi.py`` describe the same.
"""

from __future__ import annotations

from aiohttp import web

from . import cors
from .channels import channel_history
from .connections import disconnect_user, list_connections, unsubscribe_user
from .delivery import ESCALATION_KEY, add_delivery_routes
from .events import add_event_routes
from .http import (
    API_APP_KEY,
    API_KEYS_KEY,
    HEALTH_KEY,
    NODE_KEY,
    READY_KEY,
    USER_KEY,
    ApiKeys,
    Host,
    error_response,
    json_response,
    make_middleware,
)
from .notifications import (
    archive_notifications,
    create_notification,
    create_notifications,
    delete_notification,
    get_notification,
    get_preferences,
    list_notifications,
    put_preferences,
    read_notifications,
    unarchive_notifications,
)
from .openapi import openapi
from .publish import broadcast, publish, send_to_role, send_to_user
from .rooms import add_room_routes
from .status import health, live, metrics_handler, stats
from .users import add_user_routes

__all__ = [
    "API_APP_KEY",
    "API_KEYS_KEY",
    "ESCALATION_KEY",
    "HEALTH_KEY",
    "NODE_KEY",
    "READY_KEY",
    "USER_KEY",
    "add_routes",
    "build_api_app",
    "error_response",
    "json_response",
    "metrics_handler",
]


def build_api_app(node: Host) -> web.Application:
    """The /api sub-application: API-key checks and JSON errors on every route."""
    keys = ApiKeys(node.settings, node.monotonic)
    app = web.Application(middlewares=[make_middleware(node, keys)])
    app[API_KEYS_KEY] = keys
    app[NODE_KEY] = node
    app.router.add_post("/publish", publish)
    app.router.add_post("/users/{user_id}/send", send_to_user)
    app.router.add_post("/roles/{role}/send", send_to_role)
    app.router.add_post("/broadcast", broadcast)
    app.router.add_get("/stats", stats)
    app.router.add_get("/users/{user_id}/connections", list_connections)
    app.router.add_post("/users/{user_id}/disconnect", disconnect_user)
    app.router.add_post("/users/{user_id}/unsubscribe", unsubscribe_user)
    app.router.add_get("/channels/{channel}/history", channel_history)
    app.router.add_post("/notifications", create_notification)
    app.router.add_post("/notifications/batch", create_notifications)
    for base in ("/users/{user_id}/notifications", "/me/notifications"):
        app.router.add_get(base, list_notifications)
        app.router.add_post(base + "/read", read_notifications)
        app.router.add_get(base + "/{notification_id}", get_notification)
        app.router.add_delete(base + "/{notification_id}", delete_notification)
        app.router.add_post(base + "/archive", archive_notifications)
        app.router.add_post(base + "/unarchive", unarchive_notifications)
    for base in ("/users/{user_id}/preferences", "/me/preferences"):
        app.router.add_get(base, get_preferences)
        app.router.add_put(base, put_preferences)
    app.router.add_get("/openapi.json", openapi)
    add_room_routes(app)
    add_user_routes(app)
    add_delivery_routes(app)
    add_event_routes(app)
    cors.add_preflights(app)
    return app


def add_routes(app: web.Application) -> None:
    """Routes of the main application outside /api (no key needed)."""
    app.router.add_get("/health", health)
    app.router.add_get("/health/live", live)
