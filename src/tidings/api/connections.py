"""Connection control: list a user's connections, disconnect them, unsubscribe them from
a channel, on every instance."""

from __future__ import annotations

import msgspec
from aiohttp import web

from .. import cluster
from ..cluster.control import ConnectionInfo
from .http import ApiError, json_response, node_of, read_body


class ConnectionList(msgspec.Struct):
    """A user's connections over the cluster, oldest first."""

    connections: list[ConnectionInfo]


class DisconnectBody(msgspec.Struct, forbid_unknown_fields=True):
    code: int = 4010
    reason: str = "disconnected by the server"
    clientId: str | None = None


class UnsubscribeBody(msgspec.Struct, forbid_unknown_fields=True):
    channel: str


async def list_connections(request: web.Request) -> web.Response:
    user = request.match_info["user_id"]
    answers = await node_of(request).control(cluster.ListConnections(user=user))
    items = [conn for answer in answers for conn in answer]
    items.sort(key=lambda c: c["connectedAt"] or "")
    return json_response({"connections": items})


async def disconnect_user(request: web.Request) -> web.Response:
    body = await read_body(request, DisconnectBody)
    if not (4000 <= body.code <= 4999 or body.code in (1000, 1001)):
        raise ApiError(422, "code must be 1000, 1001 or 4000-4999")
    if len(body.reason.encode()) > 120:
        raise ApiError(422, "reason must be at most 120 bytes")
    op = cluster.Disconnect(
        user=request.match_info["user_id"],
        client=body.clientId,
        code=body.code,
        reason=body.reason,
    )
    answers = await node_of(request).control(op)
    return json_response({"disconnected": sum(answers)})


async def unsubscribe_user(request: web.Request) -> web.Response:
    body = await read_body(request, UnsubscribeBody)
    op = cluster.UnsubscribeUser(user=request.match_info["user_id"], channel=body.channel)
    answers = await node_of(request).control(op)
    return json_response({"unsubscribed": sum(answers)})
