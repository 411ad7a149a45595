"""The inbox's part of the OpenAPI document (``api/openapi.py`` merges it): the
notification routes, a user's own inbox under ``/api/me``, and the answers that are not
structs."""

from __future__ import annotations

from typing import Any

from .openapi_publish import path_param

_ERROR = {"$ref": "#/components/responses/Error"}


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


def inbox_paths() -> dict[str, Any]:
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
        ("/api/users/{userId}/notifications", "apiKey", [path_param("userId")]),
        ("/api/me/notifications", "userToken", []),
    ):
        one = [*owner, path_param("notificationId")]
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
        ("/api/users/{userId}/preferences", "apiKey", [path_param("userId")]),
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


INBOX_SCHEMAS: dict[str, Any] = {
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
