"""The OpenAPI 3.1 document served at ``/api/openapi.json``; keep it in step with the
routes of this package."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from .. import protocol
from ..cluster.control import ConnectionInfo
from ..events import ClusterEventsPage, ConnectionEventView, EventsPage
from ..inbox import BatchRequest, CreateRequest
from .channels import ChannelHistory
from .connections import ConnectionList, DisconnectBody, UnsubscribeBody
from .delivery import EndpointBody, SubscriptionBody
from .http import json_response
from .notifications import BatchCreated, IdsBody, PreferencesBody, ReadRequest
from .openapi_delivery import DELIVERY_SCHEMAS, delivery_paths
from .openapi_operator import operator_paths
from .openapi_rooms import ROOMS_SCHEMAS, rooms_paths
from .openapi_users import users_paths, users_schemas
from .publish import BroadcastRequest, PublishRequest, SendRequest
from .rooms import ContentBody, CreateRoomBody, MembersBody, ReadBody
from .users import ImportBody, UserBody

_ERROR = {"$ref": "#/components/responses/Error"}


def _send_op(
    summary: str, body_ref: str, params: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"apiKey": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": body_ref}}},
        },
        "responses": {
            "200": {
                "description": "queued to the connections it names",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Sent"}}},
            },
            "400": _ERROR,
            "401": _ERROR,
            "403": _ERROR,
            "413": _ERROR,
            "422": _ERROR,
            "429": _ERROR,
            "503": {
                "description": "clustered and the broker is unreachable: nothing was sent",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


# Every body a handler decodes, and every answer that is a struct, under the name the
# document gives it: their schemas are generated from these structs (one source; the
# test in tests/api/test_openapi.py checks each route against what its handler decodes).
REQUEST_BODIES: dict[str, type[msgspec.Struct]] = {
    "Publish": PublishRequest,
    "Send": SendRequest,
    "Broadcast": BroadcastRequest,
    "CreateNotification": CreateRequest,
    "CreateNotifications": BatchRequest,
    "Read": ReadRequest,
    "Ids": IdsBody,
    "Preferences": PreferencesBody,
    "Disconnect": DisconnectBody,
    "Unsubscribe": UnsubscribeBody,
    "CreateRoom": CreateRoomBody,
    "Members": MembersBody,
    "Content": ContentBody,
    "ReadMarkerBody": ReadBody,
    "UserBody": UserBody,
    "ImportBody": ImportBody,
    "PushSubscription": SubscriptionBody,
    "Endpoint": EndpointBody,
}
RESPONSE_BODIES: dict[str, type[msgspec.Struct]] = {
    "BatchCreated": BatchCreated,
    "Notification": protocol.Notification,
    "Page": protocol.Notifications,
    "RoomMessage": protocol.RoomMessage,
    "RoomHistory": protocol.RoomHistoryPage,
    "MessageDeleted": protocol.MessageDeleteEvent,
    "ReadMarker": protocol.RoomReadEvent,
    "Connection": ConnectionInfo,
    "ConnectionList": ConnectionList,
    "ChannelHistory": ChannelHistory,
    "ConnectionEvent": ConnectionEventView,
    "EventsPage": EventsPage,
    "ClusterEventsPage": ClusterEventsPage,
}


def struct_schemas() -> dict[str, Any]:
    """The components generated from the structs, each under its document name (the
    structs they refer to, such as ``Action``, under their own)."""
    named = {**REQUEST_BODIES, **RESPONSE_BODIES}
    renames = {
        f"#/components/schemas/{cls.__name__}": f"#/components/schemas/{name}"
        for name, cls in named.items()
    }
    _, components = msgspec.json.schema_components(
        list(named.values()), ref_template="#/components/schemas/{name}"
    )
    out: dict[str, Any] = {}
    for name, cls in named.items():
        out[name] = components[cls.__name__]
    for name, schema in components.items():
        if name not in {cls.__name__ for cls in named.values()}:
            out[name] = schema
    return {name: _renamed(schema, renames) for name, schema in out.items()}


def _renamed(value: Any, renames: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (renames.get(v, v) if k == "$ref" else _renamed(v, renames))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_renamed(v, renames) for v in value]
    return value


def openapi_document() -> dict[str, Any]:
    """The API description (built per call: it is small and rarely fetched)."""
    doc = _gateway_document()
    doc["paths"].update(_control_paths())
    doc["paths"].update(_inbox_paths())
    doc["paths"].update(_sse_paths())
    doc["components"]["schemas"].update(_INBOX_SCHEMAS)
    doc["paths"].update(rooms_paths())
    doc["components"]["schemas"].update(ROOMS_SCHEMAS)
    doc["paths"].update(users_paths())
    doc["components"]["schemas"].update(users_schemas())
    doc["paths"].update(delivery_paths())
    doc["paths"].update(operator_paths())
    doc["components"]["schemas"].update(DELIVERY_SCHEMAS)
    doc["components"]["schemas"].update(struct_schemas())
    doc["components"]["securitySchemes"]["userToken"] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "the user's own JWT (for /api/me routes and a member's room routes)",
    }
    return doc


def _control_paths() -> dict[str, Any]:
    user = [_path_param("userId")]

    def op(summary: str, body: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "summary": summary,
            "security": [{"apiKey": []}],
            "parameters": user,
            "responses": {
                "200": {"description": "done", "content": {"application/json": {"schema": result}}},
                "400": _ERROR,
                "401": _ERROR,
                "403": _ERROR,
                "422": _ERROR,
            },
        }
        if body is not None:
            out["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        return out

    return {
        "/api/users/{userId}/connections": {
            "get": op(
                "The user's live connections on every instance, oldest first: transport "
                "(websocket, sse), address, since, roles, subscriptions",
                None,
                {"$ref": "#/components/schemas/ConnectionList"},
            )
        },
        "/api/users/{userId}/disconnect": {
            "post": op(
                "Close the user's connections (or one, by clientId) with a code and reason",
                {"$ref": "#/components/schemas/Disconnect"},
                {"type": "object", "properties": {"disconnected": {"type": "integer"}}},
            )
        },
        "/api/users/{userId}/unsubscribe": {
            "post": op(
                "Remove a channel from every connection of the user; each gets unsubscribed "
                "with byServer: true",
                {"$ref": "#/components/schemas/Unsubscribe"},
                {"type": "object", "properties": {"unsubscribed": {"type": "integer"}}},
            )
        },
    }


def _sse_paths() -> dict[str, Any]:
    """The SSE fallback (docs/protocol.md, "Fallback: Server-Sent Events")."""
    token = {
        "name": "token",
        "in": "query",
        "schema": {"type": "string"},
        "description": "the user's JWT, when it cannot go in an Authorization header",
    }
    opened = {
        "summary": "Open (or, with Last-Event-ID, resume) a Server-Sent Events stream of "
        "server messages; the first event of a new session is the welcome",
        "security": [{"userToken": []}],
        "parameters": [
            token,
            {"name": "userId", "in": "query", "schema": {"type": "string"}},
            {"name": "lastSeq", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            {"name": "ack", "in": "query", "schema": {"type": "string", "enum": ["1", "true"]}},
            {
                "name": "lastEventId",
                "in": "query",
                "schema": {"type": "string"},
                "description": "<clientId>.<n>: resume, like the Last-Event-ID header",
            },
            {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {
                "description": "the event stream; it ends after a close event",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            "401": _ERROR,
        },
    }
    post = {
        "summary": "Client messages for an SSE session: one JSON message or an array; "
        "replies and errors arrive on the stream",
        "security": [{"userToken": []}],
        "parameters": [_path_param("clientId"), token],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}}
            },
        },
        "responses": {
            "202": {
                "description": "handed to the session",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"accepted": {"type": "integer"}},
                        }
                    }
                },
            },
            "401": _ERROR,
            "403": _ERROR,
            "404": _ERROR,
            "413": _ERROR,
        },
    }
    return {"/sse": {"get": opened}, "/sse/{clientId}": {"post": post}}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _op(
    summary: str,
    security: str,
    params: list[dict[str, Any]],
    ok: str,
    ok_schema: str,
    *,
    body: str | None = None,
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One inbox operation; every one can answer 400, 401, 403, 408, 413, 503 and 507."""
    responses: dict[str, Any] = {"200": {"description": ok, "content": _json(ok_schema)}}
    for status in ("400", "401", "403", "408", "413", "503", "507", *errors):
        responses[status] = _ERROR
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{security: []}],
        "parameters": params,
        "responses": responses,
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    return op


def _inbox_paths() -> dict[str, Any]:
    page_params = [
        {"name": "unreadOnly", "in": "query", "schema": {"type": "boolean", "default": False}},
        {
            "name": "archived",
            "in": "query",
            "schema": {"type": "boolean", "default": False},
            "description": "the archived notifications (each with archivedAt) instead of the inbox",
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        },
        {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string"},
            "description": "nextCursor of the previous page",
        },
    ]
    paths: dict[str, Any] = {
        "/api/notifications/batch": {
            "post": {
                "summary": "Store up to 1,000 notifications, each with its own idempotencyKey, "
                "in one transaction, then push them. 200 with one result per notification, "
                "in order, each with the status a single create would have had (201, 200 "
                "replayed, 409, 422, 503/507); 503/507 for the whole batch when the store "
                "fails, with nothing stored.",
                "security": [{"apiKey": []}],
                "requestBody": {"required": True, "content": _json("CreateNotifications")},
                "responses": {
                    "200": {
                        "description": "per-notification results",
                        "content": _json("BatchCreated"),
                    },
                    **{
                        status: _ERROR
                        for status in ("400", "401", "403", "408", "413", "422", "503", "507")
                    },
                },
            }
        },
        "/api/notifications": {
            "post": {
                "summary": "Store a notification for each recipient, then push it to those online. "
                "A 2xx means every recipient's row is committed.",
                "security": [{"apiKey": []}],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 255},
                    }
                ],
                "requestBody": {"required": True, "content": _json("CreateNotification")},
                "responses": {
                    "201": {"description": "created", "content": _json("Created")},
                    "200": {
                        "description": "replayed: this Idempotency-Key was already used "
                        "for the same request",
                        "content": _json("Created"),
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "413": _ERROR,
                    "503": _ERROR,
                    "409": _ERROR,
                    "422": _ERROR,
                },
            }
        },
    }
    for base, security, owner in (
        ("/api/users/{userId}/notifications", "apiKey", [_path_param("userId")]),
        ("/api/me/notifications", "userToken", []),
    ):
        one = [*owner, _path_param("notificationId")]
        paths[base] = {
            "get": _op(
                "A page of the inbox, newest first", security, owner + page_params, "page", "Page"
            )
        }
        paths[base + "/read"] = {
            "post": _op(
                "Mark notifications read (ids, or all); every connection of the user receives "
                "notification_read",
                security,
                owner,
                "changed ids and unread count",
                "ReadResult",
                body="Read",
                errors=("422",),
            )
        }
        paths[base + "/archive"] = {
            "post": _op(
                "Archive notifications (kept, out of the inbox and the unread count); every "
                "connection of the user receives notification_archived",
                security,
                owner,
                "changed ids and unread count",
                "ReadResult",
                body="Ids",
                errors=("422",),
            )
        }
        paths[base + "/unarchive"] = {
            "post": _op(
                "Bring archived notifications back into the inbox (read state kept); every "
                "connection of the user receives notification_unarchived",
                security,
                owner,
                "changed ids and unread count",
                "ReadResult",
                body="Ids",
                errors=("422",),
            )
        }
        paths[base + "/{notificationId}"] = {
            "get": _op(
                "One notification (404 for a missing one and for another user's alike)",
                security,
                one,
                "notification",
                "Notification",
                errors=("404",),
            ),
            "delete": _op(
                "Delete one notification for good; every connection of the user "
                "receives notification_deleted",
                security,
                one,
                "deleted",
                "ReadResult",
                errors=("404",),
            ),
        }
    for base, security, owner in (
        ("/api/users/{userId}/preferences", "apiKey", [_path_param("userId")]),
        ("/api/me/preferences", "userToken", []),
    ):
        paths[base] = {
            "get": {
                "summary": "Switches by channel (inApp, push, email, sms) and category "
                "('*': every category)",
                "security": [{security: []}],
                "parameters": owner,
                "responses": {
                    "200": {"description": "switches", "content": _json("Preferences")},
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "413": _ERROR,
                    "503": _ERROR,
                },
            },
            "put": {
                "summary": "Replace the switches of the channels given; a category switched "
                "off in-app is never pushed, listed or counted unread: with escalation steps "
                "planned its row is kept for them (the create's answer lists the user in "
                "inAppOff), else it is not stored (skipped); off on another channel is not "
                "escalated there",
                "security": [{security: []}],
                "parameters": owner,
                "requestBody": {"required": True, "content": _json("Preferences")},
                "responses": {
                    "200": {"description": "stored", "content": _json("Preferences")},
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "413": _ERROR,
                    "503": _ERROR,
                    "422": _ERROR,
                },
            },
        }
    return paths


_INBOX_SCHEMAS: dict[str, Any] = {
    "Created": {
        "type": "object",
        "properties": {
            "skipped": {
                "type": "array",
                "items": {"type": "string"},
                "description": "recipients who switched this category off in-app, with "
                "no escalation planned: nothing was stored for them",
            },
            "inAppOff": {
                "type": "array",
                "items": {"type": "string"},
                "description": "recipients who switched this category off in-app but get "
                "the escalation steps: their notification (listed in notifications) is "
                "stored for the other channels and the delivery log, never shown in the app",
            },
            "notifications": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "userId": {"type": "string"},
                        "seq": {"type": "integer"},
                    },
                },
            },
            "replayed": {"type": "boolean"},
        },
    },
    "ReadResult": {
        "type": "object",
        "properties": {
            "ids": {"type": "array", "items": {"type": "string"}},
            "unreadCount": {"type": "integer"},
        },
    },
}


def _gateway_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidings server API",
            "version": "1",
            "description": "Publish to channels, users, roles or everyone; store and manage "
            "notifications; read stats. Routes under /api/me/ take the user's own JWT; every "
            "other /api route except this document needs a server API key.",
        },
        "paths": {
            "/api/publish": {
                "post": _send_op(
                    "Publish to a channel's subscribers (subscription filters apply)",
                    "#/components/schemas/Publish",
                )
            },
            "/api/users/{userId}/send": {
                "post": _send_op(
                    "Send to every connection of one user",
                    "#/components/schemas/Send",
                    [_path_param("userId")],
                )
            },
            "/api/roles/{role}/send": {
                "post": _send_op(
                    "Send to every connection whose token holds the role",
                    "#/components/schemas/Send",
                    [_path_param("role")],
                )
            },
            "/api/broadcast": {
                "post": _send_op(
                    "Send to every connection, optionally except one user's",
                    "#/components/schemas/Broadcast",
                )
            },
            "/api/stats": {
                "get": {
                    "summary": "Connection, user and channel counts; message counters; uptime",
                    "security": [{"apiKey": []}],
                    "parameters": [
                        {
                            "name": "scope",
                            "in": "query",
                            "required": False,
                            "description": "instance (default) or cluster: totals over every "
                            "live instance, with each one's figures in instances",
                            "schema": {"type": "string", "enum": ["instance", "cluster"]},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "stats",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Stats"}
                                }
                            },
                        },
                        "400": _ERROR,
                        "401": _ERROR,
                        "403": _ERROR,
                        "503": _ERROR,
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Readiness in guide 004's shape; 503 while shutting down",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "draining"},
                    },
                }
            },
            "/health/live": {
                "get": {
                    "summary": "Liveness",
                    "responses": {"200": {"description": "alive"}},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI"}},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a key from `api_keys`",
                }
            },
            "responses": {
                "Error": {
                    "description": "error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            },
            "schemas": {
                "Sent": {
                    "type": "object",
                    "required": ["id", "delivered"],
                    "properties": {
                        "id": {"type": "string", "description": "the message id clients see"},
                        "channel": {"type": "string"},
                        "delivered": {
                            "type": ["integer", "null"],
                            "description": "connections it was queued to on a single "
                            "instance; in a cluster, the user's connections over the cluster "
                            "for a user send and null otherwise",
                        },
                        "offset": {
                            "type": "integer",
                            "description": "stream position (namespaces with history)",
                        },
                        "epoch": {"type": "string"},
                    },
                },
                "Stats": {
                    "type": "object",
                    "properties": {
                        "totalConnections": {"type": "integer"},
                        "totalUsers": {"type": "integer"},
                        "channelCounts": {
                            "type": "object",
                            "additionalProperties": {"type": "integer"},
                        },
                        "messagesIn": {"type": "integer"},
                        "messagesOut": {"type": "integer"},
                        "uptimeSeconds": {"type": "number"},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "instance": {"type": "string", "description": "this instance's id"},
                        "instances": {
                            "type": "array",
                            "items": {"type": "object"},
                            "description": "scope=cluster: each live instance's own stats",
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {
                                    "type": "string",
                                    "enum": [
                                        "BAD_REQUEST",
                                        "UNAUTHORIZED",
                                        "FORBIDDEN",
                                        "NOT_FOUND",
                                        "METHOD_NOT_ALLOWED",
                                        "PAYLOAD_TOO_LARGE",
                                        "VALIDATION_ERROR",
                                        "CONFLICT",
                                        "RATE_LIMIT",
                                        "SERVER_ERROR",
                                        "UNAVAILABLE",
                                    ],
                                },
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
            },
        },
    }


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())
