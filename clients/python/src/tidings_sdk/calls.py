"""Every server route as a :class:`Call`: method, path, body, and whether it is safe to
send twice. Pure (no I/O), so the synchronous and the asyncio clients build the very same
requests and differ only in how they send them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from .payload import expires_at as _expires_at
from .payload import notification_body
from .payload import priority as _priority


@dataclass(frozen=True, slots=True)
class Call:
    """One request, built once and sent as many times as the retry policy allows (so a
    retry carries the same Idempotency-Key).

    Attributes:
        repeatable: performing it twice has the effect of once (reads, replacements,
            and creates carrying an Idempotency-Key).
        unwrap: a key of the answer's object to return instead of the whole object.
        token: a user's JWT for this call, in place of the client's API key.
    """

    method: str
    path: str
    body: Any = None
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    repeatable: bool = False
    unwrap: str | None = None
    token: str | None = None


def _seg(value: str) -> str:
    """One path segment: user ids and room ids may hold '/', '?', '#' or spaces."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return quote(value, safe="")


def user_base(user_id: str) -> str:
    return f"/api/users/{_seg(user_id)}"


ME = "/api/me"


# --- sends --------------------------------------------------------------------------------


def publish(channel: str, data: Any, type: str) -> Call:
    return Call("POST", "/api/publish", {"channel": channel, "type": type, "data": data})


def send_to_user(user_id: str, data: Any, type: str) -> Call:
    return Call("POST", f"{user_base(user_id)}/send", {"type": type, "data": data})


def send_to_role(role: str, data: Any, type: str) -> Call:
    return Call("POST", f"/api/roles/{_seg(role)}/send", {"type": type, "data": data})


def broadcast(data: Any, type: str, exclude_user_id: str | None) -> Call:
    body = {"type": type, "data": data, "excludeUserId": exclude_user_id}
    return Call("POST", "/api/broadcast", body)


def stats(cluster: bool) -> Call:
    return Call("GET", "/api/stats", params={"scope": "cluster" if cluster else "instance"})


def health() -> Call:
    return Call("GET", "/health", repeatable=True)


# --- notifications ------------------------------------------------------------------------


def new_idempotency_key() -> str:
    return f"sdk-{uuid.uuid4().hex}"


def create_notification(
    *,
    user_id: str | None,
    user_ids: Iterable[str] | None,
    role: str | None,
    everyone: bool,
    content: Mapping[str, Any],
    idempotency_key: str | None,
) -> Call:
    """``POST /api/notifications`` with exactly one target and a key for retries.

    Raises:
        ValueError: not exactly one target.
    """
    targets: dict[str, Any] = {}
    if user_id is not None:
        targets["userId"] = user_id
    if user_ids is not None:
        targets["userIds"] = list(user_ids)
    if role is not None:
        targets["role"] = role
    if everyone:
        targets["all"] = True
    if len(targets) != 1:
        raise ValueError("give exactly one target: user_id, user_ids, role or everyone=True")
    key = idempotency_key or new_idempotency_key()
    return Call(
        "POST",
        "/api/notifications",
        {**targets, **content},
        headers={"Idempotency-Key": key},
        repeatable=True,
    )


def content(
    *,
    type: str | None = None,
    title: str | None = None,
    message: str | None = None,
    priority: str | None = None,
    category: str | None = None,
    data: Any = None,
    actions: Iterable[Mapping[str, Any]] | None = None,
    expires_at: Any = None,
) -> dict[str, Any]:
    """The content fields given (``None`` ones are left to the server's defaults)."""
    body: dict[str, Any] = {}
    if type is not None:
        body["type"] = type
    if title is not None:
        body["title"] = title
    if message is not None:
        body["message"] = message
    if priority is not None:
        body["priority"] = _priority(priority)
    if category is not None:
        body["category"] = category
    if data is not None:
        body["data"] = data
    if actions is not None:
        body["actions"] = [dict(a) for a in actions]
    if expires_at is not None:
        body["expiresAt"] = _expires_at(expires_at)
    return body


# A batch item's targets, by every spelling accepted for each.
_ITEM_TARGETS = {
    "userId": "userId",
    "user_id": "userId",
    "userIds": "userIds",
    "user_ids": "userIds",
    "role": "role",
    "all": "all",
}


def create_notifications(notifications: Iterable[Mapping[str, Any]]) -> Call:
    """``POST /api/notifications/batch``: each item is its target (``userId``,
    ``userIds``, ``role``, ``all``, or ``user_id`` / ``user_ids``), its content as
    ``send_notification`` takes it, and its own ``idempotencyKey`` (a fresh one when
    absent, so retrying the whole batch replays what was stored).

    Raises:
        ValueError: what ``notification_body`` refuses in an item.
    """
    items = []
    for notification in notifications:
        rest = dict(notification)
        targets = {_ITEM_TARGETS[k]: rest.pop(k) for k in list(rest) if k in _ITEM_TARGETS}
        if "userIds" in targets:
            targets["userIds"] = list(targets["userIds"])
        key = rest.pop("idempotencyKey", None) or rest.pop("idempotency_key", None)
        item = {**targets, **notification_body(rest)}
        item["idempotencyKey"] = key or new_idempotency_key()
        items.append(item)
    return Call("POST", "/api/notifications/batch", {"notifications": items}, repeatable=True)


def send_notification(
    user_id: str, payload: Mapping[str, Any], idempotency_key: str | None
) -> Call:
    return create_notification(
        user_id=user_id,
        user_ids=None,
        role=None,
        everyone=False,
        content=notification_body(payload),
        idempotency_key=idempotency_key,
    )


def list_notifications(
    base: str,
    limit: int,
    cursor: str | None,
    unread_only: bool,
    token: str | None = None,
    archived: bool = False,
) -> Call:
    params = {"limit": str(limit), "unreadOnly": "true" if unread_only else "false"}
    if archived:
        params["archived"] = "true"
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", f"{base}/notifications", params=params, repeatable=True, token=token)


def get_notification(base: str, notification_id: str, token: str | None = None) -> Call:
    path = f"{base}/notifications/{_seg(notification_id)}"
    return Call("GET", path, repeatable=True, token=token)


def get_deliveries(base: str, notification_id: str, token: str | None = None) -> Call:
    path = f"{base}/notifications/{_seg(notification_id)}/deliveries"
    return Call("GET", path, repeatable=True, token=token)


def mark_read(base: str, ids: Iterable[str] | None, token: str | None = None) -> Call:
    body: dict[str, Any] = {"all": True} if ids is None else {"ids": list(ids)}
    return Call("POST", f"{base}/notifications/read", body, repeatable=True, token=token)


def archive(base: str, ids: Iterable[str], token: str | None = None) -> Call:
    body = {"ids": list(ids)}
    return Call("POST", f"{base}/notifications/archive", body, repeatable=True, token=token)


def unarchive(base: str, ids: Iterable[str], token: str | None = None) -> Call:
    body = {"ids": list(ids)}
    return Call("POST", f"{base}/notifications/unarchive", body, repeatable=True, token=token)


def delete_notification(base: str, notification_id: str, token: str | None = None) -> Call:
    path = f"{base}/notifications/{_seg(notification_id)}"
    return Call("DELETE", path, repeatable=True, token=token)


def get_preferences(base: str, token: str | None = None) -> Call:
    return Call("GET", f"{base}/preferences", repeatable=True, unwrap="inApp", token=token)


def set_preferences(base: str, in_app: Mapping[str, bool], token: str | None = None) -> Call:
    body = {"inApp": dict(in_app)}
    return Call("PUT", f"{base}/preferences", body, repeatable=True, unwrap="inApp", token=token)


# --- the user directory ----------------------------------------------------------------


def user_fields(
    *,
    name: str | None,
    avatar_url: str | None,
    email: str | None,
    phone: str | None,
    locale: str | None,
    time_zone: str | None,
    roles: Iterable[str],
    data: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A directory record's fields, in the wire's names."""
    return {
        "name": name,
        "avatarUrl": avatar_url,
        "email": email,
        "phone": phone,
        "locale": locale,
        "timeZone": time_zone,
        "roles": list(roles),
        "data": None if data is None else dict(data),
    }


def put_user(user_id: str, fields: Mapping[str, Any]) -> Call:
    # PUT replaces the whole record: doing it twice is doing it once.
    return Call("PUT", user_base(user_id), dict(fields), repeatable=True)


def get_user(user_id: str) -> Call:
    return Call("GET", user_base(user_id), repeatable=True)


def list_users(role: str | None, limit: int, cursor: str | None) -> Call:
    params = {"limit": str(limit)}
    if role is not None:
        params["role"] = role
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", "/api/users", params=params, repeatable=True)


def import_users(users: Iterable[Mapping[str, Any]]) -> Call:
    # Each user is replaced whole, so a repeat leaves the same directory (its counts then
    # say "updated" for what the first try created).
    return Call("POST", "/api/users/import", {"users": [dict(u) for u in users]}, repeatable=True)


def erase_user(user_id: str) -> Call:
    return Call("DELETE", user_base(user_id), repeatable=True)


# --- rooms (management: API key) -----------------------------------------------------------


def room_base(room_id: str) -> str:
    return f"/api/rooms/{_seg(room_id)}"


def create_room(room_id: str, name: str | None, ws_post: bool) -> Call:
    # Not repeatable: a repeat of a create that did happen answers 409.
    return Call("POST", "/api/rooms", {"id": room_id, "name": name, "wsPost": ws_post})


def get_room(room_id: str) -> Call:
    return Call("GET", room_base(room_id), repeatable=True)


def delete_room(room_id: str) -> Call:
    return Call("DELETE", room_base(room_id), repeatable=True)


def set_members(
    room_id: str, user_ids: Iterable[str], role: Literal["member", "moderator"]
) -> Call:
    body = {"userIds": list(user_ids), "role": role}
    return Call("PUT", f"{room_base(room_id)}/members", body, repeatable=True, unwrap="added")


def list_members(room_id: str) -> Call:
    path = f"{room_base(room_id)}/members"
    return Call("GET", path, repeatable=True, unwrap="members")


def remove_member(room_id: str, user_id: str) -> Call:
    return Call("DELETE", f"{room_base(room_id)}/members/{_seg(user_id)}", repeatable=True)


# --- rooms (a member's JWT) ------------------------------------------------------------------


def post_message(room_id: str, content: str, token: str) -> Call:
    path = f"{room_base(room_id)}/messages"
    return Call("POST", path, {"content": content}, token=token)


def list_messages(room_id: str, limit: int, before_seq: int | None, token: str) -> Call:
    params = {"limit": str(limit)}
    if before_seq is not None:
        params["beforeSeq"] = str(before_seq)
    path = f"{room_base(room_id)}/messages"
    return Call("GET", path, params=params, repeatable=True, token=token)


def edit_message(room_id: str, message_id: str, content: str, token: str) -> Call:
    path = f"{room_base(room_id)}/messages/{_seg(message_id)}"
    return Call("PATCH", path, {"content": content}, repeatable=True, token=token)


def delete_message(room_id: str, message_id: str, token: str) -> Call:
    path = f"{room_base(room_id)}/messages/{_seg(message_id)}"
    return Call("DELETE", path, repeatable=True, token=token)


def room_presence(room_id: str, token: str) -> Call:
    path = f"{room_base(room_id)}/presence"
    return Call("GET", path, repeatable=True, unwrap="online", token=token)


def mark_room_read(room_id: str, seq: int | None, message_id: str | None, token: str) -> Call:
    if (seq is None) == (message_id is None):
        raise ValueError("give either seq or message_id")
    body: dict[str, Any] = {"seq": seq} if seq is not None else {"messageId": message_id}
    return Call("POST", f"{room_base(room_id)}/read", body, repeatable=True, token=token)


def my_rooms(token: str) -> Call:
    return Call("GET", f"{ME}/rooms", repeatable=True, unwrap="rooms", token=token)


def blocks(token: str) -> Call:
    return Call("GET", f"{ME}/blocks", repeatable=True, unwrap="blocked", token=token)


def block(user_id: str, on: bool, token: str) -> Call:
    method = "PUT" if on else "DELETE"
    return Call(method, f"{ME}/blocks/{_seg(user_id)}", repeatable=True, token=token)


# --- connection control --------------------------------------------------------------------


def connections(user_id: str) -> Call:
    path = f"{user_base(user_id)}/connections"
    return Call("GET", path, repeatable=True, unwrap="connections")


def disconnect(user_id: str, code: int, reason: str, client_id: str | None) -> Call:
    body = {"code": code, "reason": reason, "clientId": client_id}
    path = f"{user_base(user_id)}/disconnect"
    return Call("POST", path, body, repeatable=True, unwrap="disconnected")


def unsubscribe(user_id: str, channel: str) -> Call:
    path = f"{user_base(user_id)}/unsubscribe"
    return Call("POST", path, {"channel": channel}, repeatable=True, unwrap="unsubscribed")
