"""The notification inbox over HTTP: create, list, read, archive, delete, preferences
(by a server API key for any user, or under ``/me`` by the user's own token)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

from ..inbox import BatchRequest, CreateRequest, Inbox, InboxError
from ..store import Created, IdempotencyConflict, failure_status
from .http import STATUS_CODES, USER_KEY, ApiError, json_response, node_of, read_body


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


def idempotency_key(value: str | None) -> str | None:
    """An ``Idempotency-Key`` header's value, checked (1 to 255 characters)."""
    if value is not None and not 0 < len(value) <= 255:
        raise ApiError(400, "Idempotency-Key must be 1 to 255 characters")
    return value


async def create_notification(request: web.Request) -> web.Response:
    body = await read_body(request, CreateRequest)
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    status, answer = await create_in(_inbox(request), body, key)
    return json_response(answer, status=status)


async def create_in(
    inbox: Inbox, body: CreateRequest, key: str | None
) -> tuple[int, dict[str, Any]]:
    """``POST /api/notifications`` without the request: the status and JSON answer of a
    decoded create (the aiohttp route and the HTTP front's fast path both call this).

    Raises:
        ApiError: 422 refused by the inbox's rules, 409 the key was used for another.
    """
    try:
        created = await inbox.create(body, idempotency_key=key)
    except InboxError as exc:
        raise ApiError(422, str(exc)) from None
    except IdempotencyConflict:
        raise ApiError(409, "Idempotency-Key was already used for a different request") from None
    items = [{"id": n.id, "userId": n.user_id, "seq": n.seq} for n in created.notifications]
    answer = {
        "notifications": items,
        "replayed": created.replayed,
        "skipped": list(created.skipped),
        "inAppOff": list(created.in_app_off),
    }
    return 200 if created.replayed else 201, answer


class CreatedItem(msgspec.Struct):
    """One stored row of a create: the notification's id in one recipient's inbox."""

    id: str
    userId: str
    seq: int


class ItemError(msgspec.Struct):
    code: str
    message: str


class BatchResult(msgspec.Struct):
    """What became of one notification of a batch: ``status`` is what ``POST
    /api/notifications`` would have answered for it alone (201 created, 200 replayed,
    409 key reused for another request, 422 invalid, 503/507 store unavailable)."""

    status: int
    notifications: list[CreatedItem] = msgspec.field(default_factory=list)
    replayed: bool = False
    skipped: list[str] = msgspec.field(default_factory=list)
    error: ItemError | None = None


class BatchCreated(msgspec.Struct):
    """The answer to a batch: one result per notification sent, in the same order."""

    results: list[BatchResult]


def _result(outcome: Created | Exception) -> BatchResult:
    if isinstance(outcome, Created):
        return BatchResult(
            status=200 if outcome.replayed else 201,
            notifications=[CreatedItem(n.id, n.user_id, n.seq) for n in outcome.notifications],
            replayed=outcome.replayed,
            skipped=list(outcome.skipped),
        )
    if isinstance(outcome, InboxError):
        status, message = 422, str(outcome)
    elif isinstance(outcome, IdempotencyConflict):
        status, message = 409, "idempotencyKey was already used for a different request"
    elif (failed := failure_status(outcome)) is not None:
        status, message = failed, "the notification store is unavailable; try again"
    else:
        raise outcome
    return BatchResult(status=status, error=ItemError(STATUS_CODES[status], message))


async def create_notifications(request: web.Request) -> web.Response:
    body = await read_body(request, BatchRequest)
    return json_response(await create_batch_in(_inbox(request), body))


async def create_batch_in(inbox: Inbox, body: BatchRequest) -> BatchCreated:
    """``POST /api/notifications/batch`` without the request (see ``create_in``).

    Raises:
        ApiError: 422, the batch was refused as a whole.
    """
    try:
        outcomes = await inbox.create_many(
            [(item, item.idempotencyKey) for item in body.notifications]
        )
    except InboxError as exc:
        raise ApiError(422, str(exc)) from None
    return BatchCreated([_result(o) for o in outcomes])


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
            archived=_flag(request, "archived"),
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
    """Switches by category (``*``: every category) for each channel; a channel left out
    keeps its switches. ``inApp`` decides whether a notification is stored at all."""

    inApp: dict[str, bool] | None = None
    push: dict[str, bool] | None = None
    email: dict[str, bool] | None = None
    sms: dict[str, bool] | None = None
    # {"start": "22:00", "end": "07:00"} in the directory's time zone; null clears them.
    quietHours: QuietHours | msgspec.UnsetType | None = msgspec.UNSET


class QuietHours(msgspec.Struct, forbid_unknown_fields=True):
    start: str
    end: str


_CHANNELS = ("push", "email", "sms")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


async def _preferences(request: web.Request, user: str) -> dict[str, Any]:
    store = _inbox(request).store
    channels = await store.channel_preferences(user)
    out: dict[str, Any] = {"inApp": await store.preferences(user)}
    out.update({c: channels.get(c, {}) for c in _CHANNELS})
    contact = await store.contact(user)
    quiet = None
    if contact.quietStart is not None and contact.quietEnd is not None:
        quiet = QuietHours(contact.quietStart, contact.quietEnd)
    out["quietHours"] = quiet
    return out


async def get_preferences(request: web.Request) -> web.Response:
    return json_response(await _preferences(request, _owner(request)))


async def put_preferences(request: web.Request) -> web.Response:
    body = await read_body(request, PreferencesBody)
    given = {"inApp": body.inApp, **{c: getattr(body, c) for c in _CHANNELS}}
    switches = {name: value for name, value in given.items() if value is not None}
    quiet = body.quietHours
    if not switches and quiet is msgspec.UNSET:
        raise ApiError(
            422, "give the switches of at least one of inApp, push, email, sms, or quietHours"
        )
    if isinstance(quiet, QuietHours) and not (
        _CLOCK.match(quiet.start) and _CLOCK.match(quiet.end)
    ):
        raise ApiError(422, "quietHours start and end are HH:MM (22:00)")
    for value in switches.values():
        if len(value) > 100 or any(not 0 < len(c) <= 64 for c in value):
            raise ApiError(422, "at most 100 categories, each 1 to 64 characters")
    user = _owner(request)
    store = _inbox(request).store
    for name, value in switches.items():
        if name == "inApp":
            await store.set_preferences(user, value)
        else:
            await store.set_channel_preferences(user, name, value)
    if isinstance(quiet, QuietHours):
        await store.set_quiet_hours(user, quiet.start, quiet.end)
    elif quiet is None:
        await store.set_quiet_hours(user, None, None)
    return json_response(await _preferences(request, user))


async def archive_notifications(request: web.Request) -> web.Response:
    ids = (await read_body(request, IdsBody)).id_list()
    if ids is None:
        raise ApiError(422, "give ids")
    changed, unread = await _inbox(request).remove(_owner(request), ids, delete=False)
    return json_response({"ids": changed, "unreadCount": unread})


async def unarchive_notifications(request: web.Request) -> web.Response:
    ids = (await read_body(request, IdsBody)).id_list()
    if ids is None:
        raise ApiError(422, "give ids")
    changed, unread = await _inbox(request).unarchive(_owner(request), ids)
    return json_response({"ids": changed, "unreadCount": unread})


async def delete_notification(request: web.Request) -> web.Response:
    nid = request.match_info["notification_id"]
    changed, unread = await _inbox(request).remove(_owner(request), [nid], delete=True)
    if not changed:
        raise ApiError(404, "no such notification")
    return json_response({"ids": changed, "unreadCount": unread})
