"""Publish to a channel, send to a user or a role, broadcast."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from ..publication import PublishError, Sent
from .http import ApiError, Host, json_response, node_of, read_body

_TYPE = msgspec.Meta(description="the `type` clients receive (1 to 64 characters)")
_DATA = msgspec.Meta(description="any JSON value; clients receive it as `data`")


class PublishRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A publication to a channel's subscribers (their filters apply)."""

    channel: str
    type: Annotated[str, _TYPE] = "message"
    data: Annotated[Any, _DATA] = None


class SendRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A message for a user's or a role's connections."""

    type: Annotated[str, _TYPE] = "message"
    data: Annotated[Any, _DATA] = None


class BroadcastRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A message for every connection, optionally but one user's."""

    type: Annotated[str, _TYPE] = "message"
    data: Annotated[Any, _DATA] = None
    excludeUserId: str | None = None


def _sent(sent: Sent, **extra: Any) -> web.Response:
    return json_response(sent_body(sent, **extra))


def sent_body(sent: Sent, **extra: Any) -> dict[str, Any]:
    """The JSON answer to a publication that was sent."""
    body: dict[str, Any] = {"id": sent.id, **extra, "delivered": sent.delivered}
    if sent.position is not None:
        body["offset"], body["epoch"] = sent.position
    return body


async def publish_to(node: Host, body: PublishRequest) -> dict[str, Any]:
    """``POST /api/publish`` without the request: act on a decoded body and return the
    answer's JSON (the aiohttp route and the HTTP front's fast path both call this).

    Raises:
        ApiError: 422, the publication was refused before anything was sent.
    """
    try:
        sent = await node.publish(body.channel, body.type, body.data)
    except PublishError as exc:
        raise ApiError(422, str(exc)) from None
    return sent_body(sent, channel=body.channel)


async def publish(request: web.Request) -> web.Response:
    body = await read_body(request, PublishRequest)
    return json_response(await publish_to(node_of(request), body))


async def send_to_user(request: web.Request) -> web.Response:
    body = await read_body(request, SendRequest)
    try:
        sent = await node_of(request).send_to_user(
            request.match_info["user_id"], body.type, body.data
        )
    except PublishError as exc:
        raise ApiError(422, str(exc)) from None
    return _sent(sent)


async def send_to_role(request: web.Request) -> web.Response:
    body = await read_body(request, SendRequest)
    try:
        sent = await node_of(request).send_to_role(request.match_info["role"], body.type, body.data)
    except PublishError as exc:
        raise ApiError(422, str(exc)) from None
    return _sent(sent)


async def broadcast(request: web.Request) -> web.Response:
    body = await read_body(request, BroadcastRequest)
    try:
        sent = await node_of(request).broadcast(
            body.type, body.data, exclude_user=body.excludeUserId
        )
    except PublishError as exc:
        raise ApiError(422, str(exc)) from None
    return _sent(sent)
