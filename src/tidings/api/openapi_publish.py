"""The OpenAPI document's frame and its publishing routes (``api/openapi.py`` merges the
rest into it): publish, send to a user or role, broadcast, stats, health, and the
components every part refers to."""

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
            "503": {
                "description": "clustered and the broker is unreachable: nothing was sent",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if params:
        op["parameters"] = params
    return op


def path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def base_document() -> dict[str, Any]:
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
                    [path_param("userId")],
                )
            },
            "/api/roles/{role}/send": {
                "post": _send_op(
                    "Send to every connection whose token holds the role",
                    "#/components/schemas/Send",
                    [path_param("role")],
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
