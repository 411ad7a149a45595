"""The notification inbox over HTTP: create, list, read, archive, delete, preferences
(by a server API key for any user, or under ``/me`` by the user's own token)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..inbox import CreateRequest, Inbox, InboxError
from ..store import IdempotencyConflict
from .http import USER_KEY, ApiError, json_response, node_of, read_body


class IdsBody(msgspec.Struct, forbid_unknown_fields=True):
    """Notification ids: ``ids`` is the canonical name; the WebSocket's ``notificationIds``
    and ``notificationId`` (the guides' names) are accepted too, and merged."""

    ids: list[str] | None = None
    notificationIds: list[str] | None = None
    notificationId: str | None = None

    def id_list(self) -> list[str] | None:
        """Every id given once, in order; None when no name was given at all."""
        if self.ids is None and self.notificationIds is None and self.notificationId is None:
            return None
        merged = [self.notificationId] if self.notificationId is not None else []
        merged += (self.ids or []) + (self.notificationIds or [])
        ids = list(dict.fromkeys(merged))
        if len(ids) > 1000:
            raise ApiError(422, "at most 1000 ids")
        return ids


class ReadRequest(IdsBody, forbid_unknown_fields=True):
    all: bool = False


def _inbox(request: web.Request) -> Inbox:
    inbox = node_of(request).inbox
    if inbox is None:
        raise ApiError(503, "the notification store is not available")
    return inbox


async def create_notification(request: web.Request) -> web.Response:
    body = await read_body(request, CreateRequest)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 255:
        raise ApiError(400, "Idempotency-Key must be 1 to 255 characters")
    try:
        created = await _inbox(request).create(body, idempotency_key=key)
    except InboxError as exc:
        raise ApiError(422, str(exc)) from None
    except IdempotencyConflict:
        raise ApiError(409, "Idempotency-Key was already used for a different request") from None
    items = [{"id": n.id, "userId": n.user_id, "seq": n.seq} for n in created.notifications]
    skipped = list(created.skipped)
    return json_response(
        {"notifications": items, "replayed": created.replayed, "skipped": skipped},
        status=200 if created.replayed else 201,
    )


def _owner(request: web.Request) -> str:
    user = request.get(USER_KEY)
    return user if user is not None else request.match_info["user_id"]


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError(400, f"{name} must be true or false")
    return value in ("true", "1")


async def list_notifications(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        raise ApiError(400, "limit must be a whole number") from None
    try:
        page = await _inbox(request).list(
            _owner(request),
            unread_only=_flag(request, "unreadOnly"),
            limit=limit,
            cursor=request.query.get("cursor"),
        )
    except InboxError as exc:
        raise ApiError(400, str(exc)) from None
    return json_response(page)


async def get_notification(request: web.Request) -> web.Response:
    item = await _inbox(request).get(_owner(request), request.match_info["notification_id"])
    if item is None:
        # The same answer for another user's notification as for a missing one.
        raise ApiError(404, "no such notification")
    return json_response(item)


async def read_notifications(request: web.Request) -> web.Response:
    body = await read_body(request, ReadRequest)
    ids = body.id_list()
    if body.all == (ids is not None):
        raise ApiError(422, "give either ids or all: true")
    changed, unread = await _inbox(request).mark_read(_owner(request), None if body.all else ids)
    return json_response({"ids": changed, "unreadCount": unread})


class PreferencesBody(msgspec.Struct, forbid_unknown_fields=True):
    inApp: dict[str, bool]


async def get_preferences(request: web.Request) -> web.Response:
    prefs = await _inbox(request).store.preferences(_owner(request))
    return json_response({"inApp": prefs})


async def put_preferences(request: web.Request) -> web.Response:
    body = await read_body(request, PreferencesBody)
    if len(body.inApp) > 100 or any(not 0 < len(c) <= 64 for c in body.inApp):
        raise ApiError(422, "at most 100 categories, each 1 to 64 characters")
    await _inbox(request).store.set_preferences(_owner(request), body.inApp)
    return json_response({"inApp": body.inApp})


async def archive_notifications(request: web.Request) -> web.Response:
    ids = (await read_body(request, IdsBody)).id_list()
    if ids is None:
        raise ApiError(422, "give ids")
    changed, unread = await _inbox(request).remove(_owner(request), ids, delete=False)
    return json_response({"ids": changed, "unreadCount": unread})


async def delete_notification(request: web.Request) -> web.Response:
    nid = request.match_info["notification_id"]
    changed, unread = await _inbox(request).remove(_owner(request), [nid], delete=True)
    if not changed:
        raise ApiError(404, "no such notification")
    return json_response({"ids": changed, "unreadCount": unread})
