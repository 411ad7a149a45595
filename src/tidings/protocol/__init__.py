"""The wire protocol: every message both ways, the close codes and the error codes.

This package is the single source of truth for what goes over the WebSocket. It knows
nothing of sockets: it turns client frames into typed commands and builds server frames
as bytes. ``docs/protocol.md`` documents the same tables; keep them in step.

Client messages are accepted in the shapes the guides use:

* guide 002: ``{"type": "subscribe", "data": {"topic": "activities", "filters": {...}}}``
* guide 001: ``{"type": "subscribe", "channel": "notifications"}``
* guide 004: ``{"type": "PING", "payload": {}}``
* guide 000: ``{"type": "AUTH", "userId": "...", "token": "..."}``

Fields may sit at the top level, under ``data`` or under ``payload``; ``topic`` is an
alias of ``channel``; the type name is case-insensitive.

A package of one concern per module, all re-exported here (``from tidings.protocol import
X`` is the way to import any of them): ``commands`` (client to server), ``messages``
(server to client), ``closecodes`` (the close-code table and its policies), ``errors``
(error codes, ``ProtocolError``), ``codec`` (decoding, the depth guard, the envelope).
"""

from __future__ import annotations

from typing import Final

from .closecodes import CLOSE_CODES, TERMINAL_RANGES, CloseCode, CloseInfo, should_reconnect
from .codec import MAX_JSON_DEPTH, decode_command, encode, envelope, json_depth_exceeded
from .commands import (
    COMMANDS,
    MAX_IDS,
    Ack,
    Archive,
    Auth,
    ChatMessage,
    Command,
    Delete,
    FilterValue,
    GetNotifications,
    GetStatus,
    IdsCommand,
    InboxCommand,
    MarkRead,
    MessageDelete,
    MessageEdit,
    Ping,
    Position,
    Publish,
    RoomCommand,
    RoomHistory,
    RoomPresence,
    RoomRead,
    Scalar,
    Subscribe,
    Typing,
    Unsubscribe,
)
from .errors import ErrorCode, ProtocolError
from .messages import (
    SERVER_MESSAGES,
    SERVER_TYPES,
    Acked,
    Closing,
    Error,
    ErrorDetails,
    Limits,
    MessageDeleted,
    MessageDeleteEvent,
    MessageEdited,
    MessageEditEvent,
    MessagePosted,
    Notification,
    NotificationArchived,
    NotificationDeleted,
    NotificationRead,
    Notifications,
    Pong,
    PongShout,
    Published,
    Refreshed,
    RoomHistoryPage,
    RoomMessage,
    RoomPresenceReply,
    RoomReadEvent,
    RoomReadReply,
    ServerMessage,
    Status,
    Subscribed,
    SubscriptionInfo,
    TypingEvent,
    TypingSent,
    Unsubscribed,
    UserJoined,
    UserLeft,
    Welcome,
)

PROTOCOL_VERSION: Final = 1

__all__ = [
    "CLOSE_CODES",
    "COMMANDS",
    "MAX_IDS",
    "MAX_JSON_DEPTH",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGES",
    "SERVER_TYPES",
    "TERMINAL_RANGES",
    "Ack",
    "Acked",
    "Archive",
    "Auth",
    "ChatMessage",
    "CloseCode",
    "CloseInfo",
    "Closing",
    "Command",
    "Delete",
    "Error",
    "ErrorCode",
    "ErrorDetails",
    "FilterValue",
    "GetNotifications",
    "GetStatus",
    "IdsCommand",
    "InboxCommand",
    "Limits",
    "MarkRead",
    "MessageDelete",
    "MessageDeleteEvent",
    "MessageDeleted",
    "MessageEdit",
    "MessageEditEvent",
    "MessageEdited",
    "MessagePosted",
    "Notification",
    "NotificationArchived",
    "NotificationDeleted",
    "NotificationRead",
    "Notifications",
    "Ping",
    "Pong",
    "PongShout",
    "Position",
    "ProtocolError",
    "Publish",
    "Published",
    "Refreshed",
    "RoomCommand",
    "RoomHistory",
    "RoomHistoryPage",
    "RoomMessage",
    "RoomPresence",
    "RoomPresenceReply",
    "RoomRead",
    "RoomReadEvent",
    "RoomReadReply",
    "Scalar",
    "ServerMessage",
    "Status",
    "Subscribe",
    "Subscribed",
    "SubscriptionInfo",
    "Typing",
    "TypingEvent",
    "TypingSent",
    "Unsubscribe",
    "Unsubscribed",
    "UserJoined",
    "UserLeft",
    "Welcome",
    "decode_command",
    "encode",
    "envelope",
    "json_depth_exceeded",
    "should_reconnect",
]
