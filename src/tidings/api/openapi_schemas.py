"""The OpenAPI components generated from the msgspec structs the handlers decode and
answer with (``api/openapi.py`` merges them), so the document cannot drift from what the
routes accept."""

from __future__ import annotations

from typing import Any

import msgspec

from .. import protocol
from ..cluster.control import ConnectionInfo
from ..events import ClusterEventsPage, ConnectionEventView, EventsPage
from ..inbox import BatchRequest, CreateRequest
from .channels import ChannelHistory
from .connections import ConnectionList, DisconnectBody, UnsubscribeBody
from .delivery import EndpointBody, SubscriptionBody
from .notifications import BatchCreated, IdsBody, PreferencesBody, ReadRequest
from .publish import BroadcastRequest, PublishRequest, SendRequest
from .rooms import ContentBody, CreateRoomBody, MembersBody, ReadBody
from .users import ImportBody, UserBody

# Every body a handler decodes, and every answer that is a struct, under the name the
# document gives it: their schemas are generated from these structs (one source; the
# test in tests/api/test_openapi.py checks each route against what its handler decodes).
REQUEST_BODIES: dict[str, type[msgspec.Struct]] = {
    "Publish": PublishRequest,
    "Send": SendRequest,
    "Broadcast": BroadcastRequest,
    "CreateNotification": CreateRequest,
    "CreateNotifications": BatchRequest,
    "Read": ReadRequest,
    "Ids": IdsBody,
    "Preferences": PreferencesBody,
    "Disconnect": DisconnectBody,
    "Unsubscribe": UnsubscribeBody,
    "CreateRoom": CreateRoomBody,
    "Members": MembersBody,
    "Content": ContentBody,
    "ReadMarkerBody": ReadBody,
    "UserBody": UserBody,
    "ImportBody": ImportBody,
    "PushSubscription": SubscriptionBody,
    "Endpoint": EndpointBody,
}
RESPONSE_BODIES: dict[str, type[msgspec.Struct]] = {
    "BatchCreated": BatchCreated,
    "Notification": protocol.Notification,
    "Page": protocol.Notifications,
    "RoomMessage": protocol.RoomMessage,
    "RoomHistory": protocol.RoomHistoryPage,
    "MessageDeleted": protocol.MessageDeleteEvent,
    "ReadMarker": protocol.RoomReadEvent,
    "Connection": ConnectionInfo,
    "ConnectionList": ConnectionList,
    "ChannelHistory": ChannelHistory,
    "ConnectionEvent": ConnectionEventView,
    "EventsPage": EventsPage,
    "ClusterEventsPage": ClusterEventsPage,
}


def struct_schemas() -> dict[str, Any]:
    """The components generated from the structs, each under its document name (the
    structs they refer to, such as ``Action``, under their own)."""
    named = {**REQUEST_BODIES, **RESPONSE_BODIES}
    renames = {
        f"#/components/schemas/{cls.__name__}": f"#/components/schemas/{name}"
        for name, cls in named.items()
    }
    _, components = msgspec.json.schema_components(
        list(named.values()), ref_template="#/components/schemas/{name}"
    )
    out: dict[str, Any] = {}
    for name, cls in named.items():
        out[name] = components[cls.__name__]
    for name, schema in components.items():
        if name not in {cls.__name__ for cls in named.values()}:
            out[name] = schema
    return {name: _renamed(schema, renames) for name, schema in out.items()}


def _renamed(value: Any, renames: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (renames.get(v, v) if k == "$ref" else _renamed(v, renames))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_renamed(v, renames) for v in value]
    return value
