"""The user directory's part of the OpenAPI document (``api/openapi.py`` merges it).

The request bodies' schemas are generated from the msgspec structs the handlers decode
(``api/users.py``), so the document cannot drift from what the routes accept.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .users import ImportBody, UserBody

_ERROR = {"$ref": "#/components/responses/Error"}
_USER_FIELDS: dict[str, Any] = {
    "id": {"type": "string"},
    "name": {"type": ["string", "null"]},
    "avatarUrl": {"type": ["string", "null"]},
    "email": {"type": ["string", "null"]},
    "phone": {"type": ["string", "null"]},
    "locale": {"type": ["string", "null"]},
    "timeZone": {"type": ["string", "null"]},
    "roles": {"type": "array", "items": {"type": "string"}},
    "data": {"type": ["object", "null"]},
    "createdAt": {"type": "string", "format": "date-time"},
    "updatedAt": {"type": "string", "format": "date-time"},
}


def users_schemas() -> dict[str, Any]:
    """Components: the bodies (from the structs) and the answers."""
    _, components = msgspec.json.schema_components(
        [UserBody, ImportBody], ref_template="#/components/schemas/{name}"
    )
    components["User"] = {"type": "object", "properties": _USER_FIELDS}
    components["UserPage"] = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
            "nextCursor": {"type": ["string", "null"]},
        },
    }
    components["Imported"] = {
        "type": "object",
        "properties": {"created": {"type": "integer"}, "updated": {"type": "integer"}},
    }
    counts = {"type": "integer"}
    components["Erased"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "erased": {
                "type": "object",
                "properties": {
                    "profile": {"type": "boolean"},
                    "notifications": counts,
                    "preferences": counts,
                    "roomMemberships": counts,
                    "blocks": counts,
                },
            },
            "kept": {
                "type": "object",
                "properties": {"roomMessages": counts, "reason": {"type": "string"}},
            },
        },
    }
    return components


def _content(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _op(summary: str, result: str, *, body: str | None = None, status: str = "200") -> Any:
    responses: dict[str, Any] = {status: {"description": "done", "content": _content(result)}}
    for code in ("400", "401", "403", "413", "422", "503"):
        responses[code] = _ERROR
    op: dict[str, Any] = {"summary": summary, "security": [{"apiKey": []}], "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": _content(body)}
    return op


def users_paths() -> dict[str, Any]:
    """The directory's routes."""
    user = {"name": "userId", "in": "path", "required": True, "schema": {"type": "string"}}
    put = _op("Register or replace a user (201 created, 200 replaced)", "User", body="UserBody")
    put["responses"]["201"] = put["responses"]["200"]
    get = _op("A registered user (404 if not registered)", "User")
    get["responses"]["404"] = _ERROR
    erase = _op(
        "Erase the user's personal data: profile, roles, notifications, preferences, "
        "room memberships and blocks; says what it kept (their room messages) and why",
        "Erased",
    )
    listing = _op("Registered users in id order, optionally with a role", "UserPage")
    listing["parameters"] = [
        {"name": "role", "in": "query", "schema": {"type": "string"}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 200},
        },
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    ]
    return {
        "/api/users": {"get": listing},
        "/api/users/import": {
            "post": _op(
                "Register or replace up to 1000 users at once", "Imported", body="ImportBody"
            )
        },
        "/api/users/{userId}": {
            "parameters": [user],
            "put": put,
            "get": get,
            "delete": erase,
        },
    }
