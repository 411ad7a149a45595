"""Delivery beyond the app over HTTP: a browser's Web Push subscriptions and a
notification's delivery log (quiet hours and channel switches are preferences:
``api/notifications.py``)."""

from __future__ import annotations

import base64
import binascii
from typing import Final
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from ..delivery.escalation import Escalation
from ..store import StoreError
from ..store.deliveries import DeliveryStore, PushSubscription
from .http import USER_KEY, ApiError, json_response, node_of, read_body

ESCALATION_KEY: Final = web.AppKey("escalation", Escalation)

MAX_SUBSCRIPTIONS: Final = 20


class SubscriptionKeys(msgspec.Struct):
    p256dh: str
    auth: str


class SubscriptionBody(msgspec.Struct):
    """``PushSubscription.toJSON()`` as the browser gives it (``expirationTime`` ignored)."""

    endpoint: str
    keys: SubscriptionKeys
    expirationTime: float | None = None


class EndpointBody(msgspec.Struct, forbid_unknown_fields=True):
    endpoint: str


def _store(request: web.Request) -> DeliveryStore:
    store = request.app[ESCALATION_KEY].store
    if store is None:
        raise ApiError(503, "the notification store is not available")
    return store


def _owner(request: web.Request) -> str:
    user = request.get(USER_KEY)
    return user if user is not None else request.match_info["user_id"]


def _push_key(request: web.Request) -> str:
    sender = request.app[ESCALATION_KEY].senders.get("push")
    key = getattr(sender, "public_key", None)
    if not isinstance(key, str):
        raise ApiError(404, "Web Push is not enabled on this server (push_vapid_private_key)")
    return key


async def list_push_subscriptions(request: web.Request) -> web.Response:
    key = _push_key(request)
    try:
        subs = await _store(request).push_subscriptions(_owner(request))
    except StoreError as exc:
        raise ApiError(503, f"the store failed: {exc}") from None
    items = [{"endpoint": s.endpoint, "createdAt": s.created_at} for s in subs]
    return json_response({"publicKey": key, "subscriptions": items})


async def add_push_subscription(request: web.Request) -> web.Response:
    _push_key(request)
    body = await read_body(request, SubscriptionBody)
    if not body.endpoint.startswith("https://") and not node_of(request).settings.dev:
        raise ApiError(422, "endpoint must be an https:// URL")
    if not body.endpoint.startswith(("https://", "http://")) or len(body.endpoint) > 2000:
        raise ApiError(422, "endpoint must be an http(s) URL of at most 2000 characters")
    check_endpoint(body.endpoint, node_of(request).settings.push_service_hosts)
    check_keys(body.keys)
    store = _store(request)
    user = _owner(request)
    sub = PushSubscription(endpoint=body.endpoint, p256dh=body.keys.p256dh, auth=body.keys.auth)
    try:
        if len(await store.push_subscriptions(user)) >= MAX_SUBSCRIPTIONS:
            raise ApiError(422, f"at most {MAX_SUBSCRIPTIONS} push subscriptions per user")
        new = await store.add_push_subscription(user, sub, now=node_of(request).clock())
    except StoreError as exc:
        raise ApiError(503, f"the store failed: {exc}") from None
    return json_response({"endpoint": sub.endpoint}, status=201 if new else 200)


def check_endpoint(endpoint: str, hosts: list[str]) -> None:
    """Refuse an endpoint outside the push services (tidings POSTs to it: without this a
    user could aim those POSTs at any host the server reaches)."""
    host = (urlsplit(endpoint).hostname or "").lower()
    if not hosts:
        return
    for allowed in hosts:
        allowed = allowed.lower()
        if host == allowed.lstrip(".") or (allowed.startswith(".") and host.endswith(allowed)):
            return
    raise ApiError(422, f"endpoint host {host!r} is not a known push service (push_service_hosts)")


def check_keys(keys: SubscriptionKeys) -> None:
    """The browser's P-256 public key (65 bytes, uncompressed) and 16-byte auth secret."""
    try:
        point = base64.urlsafe_b64decode(keys.p256dh + "=" * (-len(keys.p256dh) % 4))
        auth = base64.urlsafe_b64decode(keys.auth + "=" * (-len(keys.auth) % 4))
    except (binascii.Error, ValueError):
        raise ApiError(422, "keys.p256dh and keys.auth must be base64url") from None
    if len(point) != 65 or point[0] != 4 or len(auth) != 16:
        raise ApiError(422, "keys.p256dh must be a P-256 point (65 bytes), keys.auth 16 bytes")


async def remove_push_subscription(request: web.Request) -> web.Response:
    endpoint = request.query.get("endpoint")
    if endpoint is None:
        endpoint = (await read_body(request, EndpointBody)).endpoint
    try:
        removed = await _store(request).remove_push_subscription(endpoint, _owner(request))
    except StoreError as exc:
        raise ApiError(503, f"the store failed: {exc}") from None
    if not removed:
        raise ApiError(404, "no such push subscription")
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    nid = request.match_info["notification_id"]
    user = _owner(request)
    store = _store(request)
    inbox = node_of(request).inbox
    try:
        found = inbox is not None and await inbox.store.get(user, nid) is not None
        deliveries = await store.deliveries(user, nid) if found else []
    except StoreError as exc:
        raise ApiError(503, f"the store failed: {exc}") from None
    if not found:
        raise ApiError(404, "no such notification")
    items = [
        {
            "channel": d.channel,
            "state": d.state.value,
            "unless": d.unless.value,
            "attempts": d.attempts,
            "dueAt": d.due_at if d.state.value == "pending" else None,
            "log": d.log,
        }
        for d in deliveries
    ]
    return json_response({"notificationId": nid, "deliveries": items})


def add_delivery_routes(app: web.Application) -> None:
    """The routes above, by API key for any user and under ``/me`` by the user's token."""
    base = "/me/push-subscriptions"
    app.router.add_get(base, list_push_subscriptions)
    app.router.add_post(base, add_push_subscription)
    app.router.add_delete(base, remove_push_subscription)
    for prefix in ("/users/{user_id}", "/me"):
        app.router.add_get(prefix + "/notifications/{notification_id}/deliveries", list_deliveries)
