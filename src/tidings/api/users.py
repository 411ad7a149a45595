"""The user directory over HTTP (server API key): register, read, list, import, erase.

Registered users are role and ``all`` targets whether or not they ever connected, and
their names and avatars go with their chat events (docs/users.md).
"""

from __future__ import annotations

import base64
import re
import zoneinfo
from typing import Any, Final

import msgspec
from aiohttp import web

from ..publication import iso_timestamp
from ..store import Store
from ..store.users import UserRecord
from .http import ApiError, json_response, node_of, read_body

MAX_IMPORT: Final = 1000
MAX_ROLES: Final = 100
MAX_DATA_BYTES: Final = 16 * 1024
_LOCALE: Final = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_PHONE: Final = re.compile(r"^\+?[0-9][0-9 ().-]{2,31}$")
_EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,252}$")


class UserBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A user as the backend describes them; every field but the id is optional."""

    name: str | None = None
    avatarUrl: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timeZone: str | None = None
    roles: list[str] = msgspec.field(default_factory=list)
    data: dict[str, Any] | None = None


class ImportedUser(UserBody, forbid_unknown_fields=True, kw_only=True):
    id: str


class ImportBody(msgspec.Struct, forbid_unknown_fields=True):
    users: list[ImportedUser]


def _check_id(user_id: str) -> None:
    if not 0 < len(user_id) <= 255 or "\0" in user_id:
        raise ApiError(422, "user ids must be 1 to 255 characters, without NUL")


def _record(user_id: str, body: UserBody) -> UserRecord:
    """Validate ``body`` (422 naming the field) and make the store's record of it."""
    _check_id(user_id)
    if body.name is not None and not 0 < len(body.name) <= 200:
        raise ApiError(422, "name must be 1 to 200 characters")
    url = body.avatarUrl
    if url is not None and (len(url) > 2048 or not url.startswith(("https://", "http://", "/"))):
        raise ApiError(422, "avatarUrl must be an http(s) URL or a site path, at most 2048")
    if body.email is not None and (len(body.email) > 254 or not _EMAIL.match(body.email)):
        raise ApiError(422, "email is not an email address")
    if body.phone is not None and not _PHONE.match(body.phone):
        raise ApiError(422, "phone is not a phone number (digits, an optional leading +)")
    if body.locale is not None and not _LOCALE.match(body.locale):
        raise ApiError(422, "locale must be a language tag such as en or pt-BR")
    if body.timeZone is not None:
        try:
            zoneinfo.ZoneInfo(body.timeZone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ApiError(422, f"timeZone {body.timeZone!r} is not an IANA time zone") from None
    roles = list(dict.fromkeys(body.roles))
    if len(roles) > MAX_ROLES or any(not 0 < len(r) <= 64 for r in roles):
        raise ApiError(422, f"at most {MAX_ROLES} roles, each 1 to 64 characters")
    if body.data is not None and len(msgspec.json.encode(body.data)) > MAX_DATA_BYTES:
        raise ApiError(422, f"data is larger than {MAX_DATA_BYTES} bytes")
    for field in ("name", "email", "phone", "locale", "timeZone", "avatarUrl"):
        value = getattr(body, field)
        if value is not None and "\0" in value:
            raise ApiError(422, f"{field} contains a NUL character")
    return UserRecord(
        id=user_id,
        name=body.name,
        avatar_url=body.avatarUrl,
        email=body.email,
        phone=body.phone,
        locale=body.locale,
        time_zone=body.timeZone,
        roles=tuple(roles),
        data=body.data,
    )


def view(user: UserRecord) -> dict[str, Any]:
    """A user as the API returns them."""
    return {
        "id": user.id,
        "name": user.name,
        "avatarUrl": user.avatar_url,
        "email": user.email,
        "phone": user.phone,
        "locale": user.locale,
        "timeZone": user.time_zone,
        "roles": list(user.roles),
        "data": user.data,
        "createdAt": iso_timestamp(user.created_at),
        "updatedAt": iso_timestamp(user.updated_at),
    }


def _store(request: web.Request) -> Store:
    inbox = node_of(request).inbox
    if inbox is None:
        raise ApiError(503, "the user directory's store is not available")
    return inbox.store


async def put_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    record = _record(user_id, await read_body(request, UserBody))
    store = _store(request)
    created = await store.put_user(record, now=node_of(request).clock())
    stored = await store.get_user(user_id)
    if stored is None:  # erased between the two calls
        raise ApiError(409, "the user was erased meanwhile; send it again")
    return json_response(view(stored), status=201 if created else 200)


async def get_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    _check_id(user_id)
    user = await _store(request).get_user(user_id)
    if user is None:
        raise ApiError(404, "no such user")
    return json_response(view(user))


async def list_users(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise ApiError(400, "limit must be a whole number") from None
    if not 1 <= limit <= 200:
        raise ApiError(400, "limit must be 1 to 200")
    cursor = request.query.get("cursor")
    after = None
    if cursor is not None:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            after = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "malformed cursor") from None
    role = request.query.get("role")
    users = await _store(request).list_users(after=after, limit=limit + 1, role=role)
    page, more = users[:limit], len(users) > limit
    next_cursor = (
        base64.urlsafe_b64encode(page[-1].id.encode()).decode().rstrip("=") if more else None
    )
    return json_response({"items": [view(u) for u in page], "nextCursor": next_cursor})


async def import_users(request: web.Request) -> web.Response:
    body = await read_body(request, ImportBody)
    if not 0 < len(body.users) <= MAX_IMPORT:
        raise ApiError(422, f"give 1 to {MAX_IMPORT} users")
    records: dict[str, UserRecord] = {}
    for index, user in enumerate(body.users):
        try:
            records[user.id] = _record(user.id, user)
        except ApiError as exc:
            raise ApiError(422, f"users[{index}]: {exc.message}") from None
    created = await _store(request).put_users(list(records.values()), now=node_of(request).clock())
    return json_response({"created": created, "updated": len(records) - created})


async def erase_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    _check_id(user_id)
    erased = await _store(request).erase_user(user_id)
    return json_response(
        {
            "id": user_id,
            "erased": {
                "profile": erased.profile,
                "notifications": erased.notifications,
                "preferences": erased.preferences,
                "roomMemberships": erased.room_memberships,
                "blocks": erased.blocks,
            },
            "kept": {
                "roomMessages": erased.kept_room_messages,
                "reason": "messages the user wrote in rooms stay, so other members' "
                "conversations stay whole; delete them one by one through the rooms API "
                "(DELETE /api/rooms/{roomId}/messages/{messageId}) if they must go too",
            },
        }
    )


def add_user_routes(app: web.Application) -> None:
    """The directory's routes on the /api sub-application."""
    app.router.add_post("/users/import", import_users)
    app.router.add_get("/users", list_users)
    app.router.add_put("/users/{user_id}", put_user)
    app.router.add_get("/users/{user_id}", get_user)
    app.router.add_delete("/users/{user_id}", erase_user)
