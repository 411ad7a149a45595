"""The delivery part of the OpenAPI document (``api/openapi.py`` merges it); keep it in
step with ``api/delivery.py`` and docs/delivery.md."""

from __future__ import annotations

from typing import Any

from .openapi_rooms import _op

_STR: dict[str, Any] = {"type": "string"}
_SWITCHES: dict[str, Any] = {
    "type": "object",
    "maxProperties": 100,
    "additionalProperties": {"type": "boolean"},
    "description": "on/off by category ('*': every category without its own switch)",
}
STEP: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["channel"],
    "properties": {
        "channel": {"enum": ["push", "email", "sms", "digest"]},
        "after": {"type": "number", "minimum": 0, "default": 0},
        "unless": {"enum": ["delivered", "acked", "read"], "default": "read"},
    },
}


def delivery_paths() -> dict[str, Any]:
    """Every push-subscription and delivery-log route."""
    paths: dict[str, Any] = {
        "/api/me/push-subscriptions": {
            "get": _op(
                "The VAPID public key to subscribe with, and this user's subscriptions",
                "userToken",
                [],
                "PushSubscriptions",
                errors=("404",),
            ),
            "post": _op(
                "Register a browser's PushSubscription (201 new, 200 known)",
                "userToken",
                [],
                "Endpoint",
                body="PushSubscription",
                status="201",
                errors=("404", "422"),
            ),
            "delete": {
                **_op(
                    "Forget a subscription (endpoint in the body or ?endpoint=)",
                    "userToken",
                    [],
                    "Endpoint",
                    status="204",
                    errors=("404",),
                    query=[{"name": "endpoint", "in": "query", "schema": _STR}],
                ),
                # The body is read when ?endpoint= is not given.
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Endpoint"}}
                    },
                },
            },
        }
    }
    for prefix, security, owner in (
        ("/api/users/{userId}", "apiKey", ["userId"]),
        ("/api/me", "userToken", []),
    ):
        paths[prefix + "/notifications/{notificationId}/deliveries"] = {
            "get": _op(
                "The notification's deliveries on other channels, each with its log",
                security,
                [*owner, "notificationId"],
                "Deliveries",
                errors=("404",),
            )
        }
    return paths


DELIVERY_SCHEMAS: dict[str, Any] = {
    "PushSubscriptions": {
        "type": "object",
        "properties": {
            "publicKey": {**_STR, "description": "applicationServerKey (base64url)"},
            "subscriptions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"endpoint": _STR, "createdAt": {"type": "number"}},
                },
            },
        },
    },
    "Deliveries": {
        "type": "object",
        "properties": {
            "notificationId": _STR,
            "deliveries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "channel": {"enum": ["push", "email", "sms", "digest"]},
                        "state": {"enum": ["pending", "sent", "failed", "skipped", "cancelled"]},
                        "unless": {"enum": ["delivered", "acked", "read"]},
                        "attempts": {"type": "integer"},
                        "dueAt": {"type": ["number", "null"]},
                        "log": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "event": {
                                        "enum": [
                                            "queued",
                                            "sent",
                                            "failed",
                                            "skipped",
                                            "deferred",
                                            "cancelled",
                                        ]
                                    },
                                    "at": {"type": "number"},
                                    "attempt": {"type": "integer"},
                                    "reason": _STR,
                                    "nextAttemptAt": {"type": "number"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
