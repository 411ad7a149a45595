"""The rooms' HTTP routes, under ``/api``: management with a server API key, the rest
with the member's own JWT (``Authorization: Bearer <jwt>``), as guide 004 posts messages.

Handlers are thin: they parse, call ``rooms.Rooms``, and turn ``RoomError`` into
the API's JSON errors. ``docs/http-api.md`` and ``openapi.py`` describe the same routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from ..publication import iso_timestamp
from ..rooms import Rooms
from ..rooms.rules import Role, RoomError
from ..store.rooms import Room
from .http import NODE_KEY, USER_KEY, ApiError, json_response, read_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def member_route(handler: Handler) -> Handler:
    """Mark a route as called with a user's JWT (api/http.py's middleware checks it)."""
    # An attribute on the function object: api/http.py reads it back with getattr.
    setattr(handler, "user_token", True)  # noqa: B010 (a Callable declares no attributes)
    return handler


def operator_too(handler: Handler) -> Handler:
    """A member's route that a server API key may call too, as an operator."""
    setattr(handler, "operator_too", True)  # noqa: B010 (read back by api/http.py)
    return member_route(handler)


class CreateRoomBody(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    name: str | None = None
    wsPost: bool = True


class MembersBody(msgspec.Struct, forbid_unknown_fields=True):
    userIds: list[str]
    role: Role = Role.MEMBER


class ContentBody(msgspec.Struct, forbid_unknown_fields=True):
    content: Any = None


class ReadBody(msgspec.Struct, forbid_unknown_fields=True):
    seq: int | None = None
    messageId: str | None = None


def _rooms(request: web.Request) -> Rooms:
    rooms = request.app[NODE_KEY].rooms
    if rooms is None:
        raise ApiError(503, "rooms are not available")
    return rooms


def _user(request: web.Request) -> str:
    return request[USER_KEY]


def _reader(request: web.Request) -> str | None:
    """The member reading (None: an operator with a server API key)."""
    return request.get(USER_KEY)


async def _call(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except RoomError as exc:
        raise ApiError(exc.status, exc.message) from None


def _int_query(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, f"{name} must be a whole number")
    return int(raw)


# --- management (server API key) ------------------------------------------------------------


async def create_room(request: web.Request) -> web.Response:
    body = await read_body(request, CreateRoomBody)
    rooms = _rooms(request)
    if not await _call(rooms.create_room(body.id, body.name, body.wsPost)):
        raise ApiError(409, "a room with this id exists")
    room = await rooms.store.get_room(body.id)
    assert room is not None
    return json_response(_room(room), status=201)


def _room(room: Room) -> dict[str, Any]:
    return {
        "id": room.id,
        "name": room.name,
        "wsPost": room.ws_post,
        "lastSeq": room.last_seq,
        "createdAt": iso_timestamp(room.created_at),
    }


async def get_room(request: web.Request) -> web.Response:
    room = await _rooms(request).store.get_room(request.match_info["roomId"])
    if room is None:
        raise ApiError(404, "no such room")
    return json_response(_room(room))


async def delete_room(request: web.Request) -> web.Response:
    if not await _rooms(request).delete_room(request.match_info["roomId"]):
        raise ApiError(404, "no such room")
    return json_response({"deleted": True})


async def put_members(request: web.Request) -> web.Response:
    body = await read_body(request, MembersBody)
    room_id = request.match_info["roomId"]
    added = await _call(_rooms(request).set_members(room_id, body.userIds, body.role))
    return json_response({"added": added})


async def list_members(request: web.Request) -> web.Response:
    members = await _call(_rooms(request).members(request.match_info["roomId"]))
    return json_response({"members": members})


async def remove_member(request: web.Request) -> web.Response:
    info = request.match_info
    if not await _rooms(request).remove_member(info["roomId"], info["user_id"]):
        raise ApiError(404, "not a member of this room")
    return json_response({"removed": True})


# --- members (their own JWT) ------------------------------------------------------------------


@member_route
async def post_message(request: web.Request) -> web.Response:
    body = await read_body(request, ContentBody)
    rooms = _rooms(request)
    view = await _call(rooms.post(request.match_info["roomId"], _user(request), body.content))
    return json_response(view, status=201)


@operator_too
async def list_messages(request: web.Request) -> web.Response:
    page = await _call(
        _rooms(request).history(
            request.match_info["roomId"],
            _reader(request),
            before_seq=_int_query(request, "beforeSeq", None),
            limit=_int_query(request, "limit", 50) or 0,
        )
    )
    return json_response(page)


@member_route
async def edit_message(request: web.Request) -> web.Response:
    body = await read_body(request, ContentBody)
    info = request.match_info
    view = await _call(
        _rooms(request).edit(info["roomId"], _user(request), info["messageId"], body.content)
    )
    return json_response(view)


@member_route
async def delete_message(request: web.Request) -> web.Response:
    info = request.match_info
    event = await _call(_rooms(request).delete(info["roomId"], _user(request), info["messageId"]))
    return json_response(event)


@operator_too
async def room_presence(request: web.Request) -> web.Response:
    room_id = request.match_info["roomId"]
    online = await _call(_rooms(request).online(room_id, _reader(request)))
    return json_response({"roomId": room_id, "online": online})


@operator_too
async def user_presence(request: web.Request) -> web.Response:
    room_id, who = request.match_info["roomId"], request.match_info["user_id"]
    online = await _call(_rooms(request).is_online(room_id, _reader(request), who))
    return json_response({"roomId": room_id, "userId": who, "online": online})


@member_route
async def mark_read(request: web.Request) -> web.Response:
    body = await read_body(request, ReadBody)
    data = await _call(
        _rooms(request).mark_read(
            request.match_info["roomId"], _user(request), seq=body.seq, message_id=body.messageId
        )
    )
    return json_response(data)


async def my_rooms(request: web.Request) -> web.Response:
    return json_response(await _rooms(request).unread(_user(request)))


async def my_blocks(request: web.Request) -> web.Response:
    blocked = await _rooms(request).store.blocked(_user(request))
    return json_response({"blocked": sorted(blocked)})


async def put_block(request: web.Request) -> web.Response:
    who = request.match_info["user_id"]
    changed = await _call(_rooms(request).block(_user(request), who, on=True))
    return json_response({"userId": who, "blocked": True, "changed": changed})


async def delete_block(request: web.Request) -> web.Response:
    who = request.match_info["user_id"]
    changed = await _call(_rooms(request).block(_user(request), who, on=False))
    return json_response({"userId": who, "blocked": False, "changed": changed})


def add_room_routes(app: web.Application) -> None:
    """Register the room routes on the /api sub-application."""
    add = app.router
    add.add_post("/rooms", create_room)
    add.add_get("/rooms/{roomId}", get_room)
    add.add_delete("/rooms/{roomId}", delete_room)
    add.add_put("/rooms/{roomId}/members", put_members)
    add.add_get("/rooms/{roomId}/members", list_members)
    add.add_delete("/rooms/{roomId}/members/{user_id}", remove_member)
    add.add_post("/rooms/{roomId}/messages", post_message)
    add.add_get("/rooms/{roomId}/messages", list_messages)
    add.add_patch("/rooms/{roomId}/messages/{messageId}", edit_message)
    add.add_delete("/rooms/{roomId}/messages/{messageId}", delete_message)
    add.add_get("/rooms/{roomId}/presence", room_presence)
    add.add_get("/rooms/{roomId}/presence/{user_id}", user_presence)
    add.add_post("/rooms/{roomId}/read", mark_read)
    add.add_get("/me/rooms", my_rooms)
    add.add_get("/me/blocks", my_blocks)
    add.add_put("/me/blocks/{user_id}", put_block)
    add.add_delete("/me/blocks/{user_id}", delete_block)
