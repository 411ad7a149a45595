"""The OpenAPI 3.1 document served at ``/api/openapi.json``; keep it in step with the
routes of this package."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .http import json_response
from .openapi_delivery import DELIVERY_SCHEMAS, delivery_paths
from .openapi_inbox import INBOX_SCHEMAS, inbox_paths
from .openapi_operator import operator_paths
from .openapi_publish import base_document, path_param
from .openapi_rooms import ROOMS_SCHEMAS, rooms_paths
from .openapi_schemas import REQUEST_BODIES, RESPONSE_BODIES, struct_schemas
from .openapi_users import users_paths, users_schemas

__all__ = ["REQUEST_BODIES", "RESPONSE_BODIES", "openapi", "openapi_document", "struct_schemas"]

_ERROR = {"$ref": "#/components/responses/Error"}


def openapi_document() -> dict[str, Any]:
    """The API description (built per call: it is small and rarely fetched)."""
    doc = base_document()
    doc["paths"].update(_control_paths())
    doc["paths"].update(inbox_paths())
    doc["paths"].update(_sse_paths())
    doc["components"]["schemas"].update(INBOX_SCHEMAS)
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
    user = [path_param("userId")]

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
        "parameters": [path_param("clientId"), token],
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


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())
