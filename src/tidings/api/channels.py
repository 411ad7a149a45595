"""A channel's kept publications for an operator: ``GET /api/channels/{channel}/history``
(server API key). Clients read the same history by subscribing with ``since``
(docs/protocol.md, recovery); this route reads it without subscribing."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from aiohttp import web

from .. import cluster
from ..broker import StreamPosition
from ..channels import is_valid_channel
from .http import ApiError, json_response, node_of

DEFAULT_LIMIT: Final = 50


class ChannelHistory(msgspec.Struct, kw_only=True):
    """Kept publications, oldest first, each exactly as subscribers received it (with its
    ``offset`` and ``epoch``). ``offset``/``epoch`` are the stream's current top;
    ``recoverable`` is false when ``since`` is too old (or of another epoch): then
    ``publications`` is empty."""

    channel: str
    offset: int
    epoch: str
    recoverable: bool
    publications: list[
        Annotated[Any, msgspec.Meta(description="a publication envelope (docs/protocol.md)")]
    ]


def _whole(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 15:
        raise ApiError(400, f"{name} must be a whole number")
    return int(raw)


async def channel_history(request: web.Request) -> web.Response:
    node = node_of(request)
    channel = request.match_info["channel"]
    if not is_valid_channel(channel):
        raise ApiError(422, f"invalid channel name {channel[:80]!r}")
    policy = node.access.policy(channel)
    if not policy.history_size:
        # Asking the broker would start a stream for a channel that never keeps one.
        raise ApiError(404, "this channel's namespace keeps no history (history_size)")
    limit = _whole(request, "limit")
    limit = min(DEFAULT_LIMIT, policy.history_size) if limit is None else limit
    if not 1 <= limit <= policy.history_size:
        raise ApiError(400, f"limit must be 1 to {policy.history_size} (the history_size)")
    offset, epoch = _whole(request, "sinceOffset"), request.query.get("sinceEpoch")
    if (offset is None) != (epoch is None):
        raise ApiError(400, "give sinceOffset and sinceEpoch together")
    if epoch is not None and not 1 <= len(epoch) <= 64:
        raise ApiError(400, "sinceEpoch must be 1 to 64 characters")
    since = None if offset is None or epoch is None else StreamPosition(offset, epoch)
    # Without ``since``, the newest ``limit``: read all that is kept and keep the end.
    result = await node.history(channel, since, limit if since else policy.history_size)
    kept = result.publications if since else result.publications[-limit:]
    top = result.position
    publications = [
        msgspec.Raw(cluster.with_position(message.envelope, at, top.epoch))
        for at, message in kept
        if isinstance(message, cluster.Deliver)
    ]
    body = ChannelHistory(
        channel=channel,
        offset=top.offset,
        epoch=top.epoch,
        recoverable=result.recoverable,
        publications=publications,
    )
    return json_response(body)
