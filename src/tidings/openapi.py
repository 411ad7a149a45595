"""The OpenAPI 3.1 document served at ``/api/openapi.json``; keep it in step with api.py."""

from __future__ import annotations

from typing import Any

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
        },
    }
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document() -> dict[str, Any]:
    """The API description (built per call: it is small and rarely fetched)."""
    message_props = {
        "type": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "default": "message",
            "description": "the `type` clients receive",
        },
        "data": {"description": "any JSON value; clients receive it as `data`"},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidings server API",
            "version": "1",
            "description": "Publish to channels, users, roles or everyone; read stats. "
            "Every /api route except this document needs a server API key.",
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
                    "responses": {
                        "200": {
                            "description": "stats",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Stats"}
                                }
                            },
                        },
                        "401": _ERROR,
                        "403": _ERROR,
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
                "Publish": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["channel"],
                    "properties": {
                        "channel": {
                            "type": "string",
                            "maxLength": 255,
                            "pattern": "^[A-Za-z0-9_\\-.@=]+(:[A-Za-z0-9_\\-.@=]+)*$",
                        },
                        **message_props,
                    },
                },
                "Send": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": message_props,
                },
                "Broadcast": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {**message_props, "excludeUserId": {"type": ["string", "null"]}},
                },
                "Sent": {
                    "type": "object",
                    "required": ["id", "delivered"],
                    "properties": {
                        "id": {"type": "string", "description": "the message id clients see"},
                        "channel": {"type": "string"},
                        "delivered": {
                            "type": "integer",
                            "description": "connections it was queued to",
                        },
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
