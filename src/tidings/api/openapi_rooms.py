"""The rooms' part of the OpenAPI document (``api/openapi.py`` merges it); keep it in step
with ``api/rooms.py``."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}


def _ref(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _op(
    summary: str,
    security: str,
    params: list[str],
    result: str,
    *,
    body: str | None = None,
    status: str = "200",
    errors: tuple[str, ...] = (),
    query: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {status: {"description": "done", "content": _ref(result)}}
    for code in ("400", "401", "403", "503", *errors):
        responses[code] = _ERROR
    op: dict[str, Any] = {
        "summary": summary,
        # "userToken|apiKey": a member's token, or a server API key (an operator).
        "security": [{scheme: []} for scheme in security.split("|")],
        "parameters": [_param(p) for p in params] + (query or []),
        "responses": responses,
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": _ref(body)}
    return op


def rooms_paths() -> dict[str, Any]:
    """Every /api/rooms and /api/me/{rooms,blocks} route."""
    room = ["roomId"]
    msg = ["roomId", "messageId"]
    history_query = [
        {"name": "beforeSeq", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
        },
    ]
    return {
        "/api/rooms": {
            "post": _op(
                "Create a room",
                "apiKey",
                [],
                "Room",
                body="CreateRoom",
                status="201",
                errors=("409", "422"),
            )
        },
        "/api/rooms/{roomId}": {
            "get": _op("A room", "apiKey", room, "Room", errors=("404",)),
            "delete": _op(
                "Delete a room with its members and messages; members' connections lose its "
                "channels",
                "apiKey",
                room,
                "Deleted",
                errors=("404",),
            ),
        },
        "/api/rooms/{roomId}/members": {
            "put": _op(
                "Add members or change their role (member, moderator)",
                "apiKey",
                room,
                "MembersAdded",
                body="Members",
                errors=("404", "422"),
            ),
            "get": _op("The room's members", "apiKey", room, "MemberList", errors=("404",)),
        },
        "/api/rooms/{roomId}/members/{userId}": {
            "delete": _op(
                "Remove a member; their connections lose the room's channels at once",
                "apiKey",
                ["roomId", "userId"],
                "Removed",
                errors=("404",),
            )
        },
        "/api/rooms/{roomId}/messages": {
            "post": _op(
                "Post as the member the token names: stored, then CHAT_MESSAGE on room:{id}",
                "userToken",
                room,
                "RoomMessage",
                body="Content",
                status="201",
                errors=("422",),
            ),
            "get": _op(
                "A page of history, newest first, without authors the reader blocked; with "
                "a server API key, as an operator: every message (404 for no such room)",
                "userToken|apiKey",
                room,
                "RoomHistory",
                query=history_query,
                errors=("404",),
            ),
        },
        "/api/rooms/{roomId}/messages/{messageId}": {
            "patch": _op(
                "The author edits: MESSAGE_EDIT on room:{id}",
                "userToken",
                msg,
                "RoomMessage",
                body="Content",
                errors=("404", "422"),
            ),
            "delete": _op(
                "The author or a moderator deletes: MESSAGE_DELETE on room:{id}",
                "userToken",
                msg,
                "MessageDeleted",
                errors=("404",),
            ),
        },
        "/api/rooms/{roomId}/presence": {
            "get": _op(
                "Who is online in the room (a member's token, or a server API key)",
                "userToken|apiKey",
                room,
                "RoomPresence",
                errors=("404",),
            )
        },
        "/api/rooms/{roomId}/presence/{userId}": {
            "get": _op(
                "Whether one user is online in the room (a member's token, or a server API key)",
                "userToken|apiKey",
                ["roomId", "userId"],
                "UserPresence",
                errors=("404",),
            )
        },
        "/api/rooms/{roomId}/read": {
            "post": _op(
                "Move the caller's read marker (seq or messageId); every connection of the "
                "user receives ROOM_READ",
                "userToken",
                room,
                "ReadMarker",
                body="ReadMarkerBody",
                errors=("404", "422"),
            )
        },
        "/api/me/rooms": {
            "get": _op("The caller's rooms with unread counts", "userToken", [], "MyRooms")
        },
        "/api/me/blocks": {"get": _op("Users the caller blocked", "userToken", [], "Blocks")},
        "/api/me/blocks/{userId}": {
            "put": _op(
                "Block a user: none of their messages or typing reach the caller, nor their "
                "messages in history",
                "userToken",
                ["userId"],
                "BlockResult",
                errors=("422",),
            ),
            "delete": _op("Unblock a user", "userToken", ["userId"], "BlockResult"),
        },
    }


_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_TIME = {"type": "string", "format": "date-time"}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


_MESSAGE = _obj(
    {
        "id": _STR,
        "roomId": _STR,
        "seq": _INT,
        "authorId": _STR,
        "content": {"type": ["string", "null"]},
        "isEdited": _BOOL,
        "isDeleted": _BOOL,
        "createdAt": _TIME,
        "editedAt": {"type": ["string", "null"], "format": "date-time"},
    },
    ("id", "roomId", "seq", "authorId", "content", "isEdited", "isDeleted", "createdAt"),
)

ROOMS_SCHEMAS: dict[str, Any] = {
    "Room": _obj(
        {
            "id": _STR,
            "name": {"type": ["string", "null"]},
            "wsPost": _BOOL,
            "lastSeq": _INT,
            "createdAt": _TIME,
        }
    ),
    "Deleted": _obj({"deleted": _BOOL}),
    "Removed": _obj({"removed": _BOOL}),
    "MembersAdded": _obj({"added": {"type": "array", "items": _STR}}),
    "MemberList": _obj(
        {
            "members": {
                "type": "array",
                "items": _obj(
                    {"userId": _STR, "role": _STR, "joinedAt": _TIME, "lastReadSeq": _INT}
                ),
            }
        }
    ),
    "RoomPresence": _obj({"roomId": _STR, "online": {"type": "array", "items": _STR}}),
    "UserPresence": _obj({"roomId": _STR, "userId": _STR, "online": _BOOL}),
    "MyRooms": _obj(
        {
            "rooms": {
                "type": "array",
                "items": _obj(
                    {"roomId": _STR, "role": _STR, "lastReadSeq": _INT, "unreadCount": _INT}
                ),
            }
        }
    ),
    "Blocks": _obj({"blocked": {"type": "array", "items": _STR}}),
    "BlockResult": _obj({"userId": _STR, "blocked": _BOOL, "changed": _BOOL}),
}
