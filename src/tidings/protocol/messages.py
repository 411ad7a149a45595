"""Server-to-client messages: every one a typed struct (its ``kind`` is the envelope's
``type``), and ``SERVER_TYPES``, the reserved names derived from them."""

from __future__ import annotations

from typing import Any, ClassVar, Final

import msgspec
from msgspec import UNSET, UnsetType

from .errors import ErrorCode

#
# Every message the server sends is one of these types: the struct is the envelope's
# ``data`` and ``kind`` its ``type``. ``SERVER_TYPES`` is derived from them, so a type
# added here is reserved at once. Fields absent from a message are ``UNSET``.


class ServerMessage(msgspec.Struct, kw_only=True):
    """Base of every server-to-client message (the ``data`` of its envelope)."""

    kind: ClassVar[str]


class Limits(msgspec.Struct):
    maxMessageBytes: int
    maxSubscriptions: int


class Welcome(ServerMessage, kw_only=True):
    """The first message of an open connection (after the inbox catch-up is ready)."""

    kind: ClassVar[str] = "welcome"
    clientId: str
    userId: str
    roles: list[str]
    role: str | None
    serverTime: str
    expiresAt: str | None
    availableSubscriptions: list[str]
    heartbeatInterval: float
    limits: Limits
    protocolVersion: int
    unreadCount: int | UnsetType = UNSET
    # The backend's data from the connect hook.
    info: Any | UnsetType = UNSET
    # False when the store could not be read or written as the connection opened: live
    # messages flow, but there is no unread count and no catch-up this time.
    inboxAvailable: bool | UnsetType = UNSET


class Pong(ServerMessage, kw_only=True):
    kind: ClassVar[str] = "pong"


class PongShout(ServerMessage, kw_only=True):
    """Guide 004's ``PONG``, the answer to an upper-case ``PING``."""

    kind: ClassVar[str] = "PONG"


class Refreshed(ServerMessage, kw_only=True):
    kind: ClassVar[str] = "refreshed"
    expiresAt: str | None


class SubscriptionInfo(msgspec.Struct):
    channel: str
    filters: dict[str, Any] | None


class Status(ServerMessage, kw_only=True):
    kind: ClassVar[str] = "status"
    clientId: str
    userId: str
    roles: list[str]
    connectedAt: str | None
    expiresAt: str | None
    subscriptions: list[SubscriptionInfo]


class Subscribed(ServerMessage, kw_only=True):
    """A subscription's reply; ``offset``/``epoch`` when the namespace keeps history,
    ``recovered``/``reason`` when the client asked to resume (or the server lost track)."""

    kind: ClassVar[str] = "subscribed"
    channel: str
    filters: dict[str, Any] | UnsetType | None = UNSET
    offset: int | UnsetType = UNSET
    epoch: str | UnsetType = UNSET
    recovered: bool | UnsetType = UNSET
    reason: str | UnsetType = UNSET
    # The backend's data from the subscribe hook.
    info: Any | UnsetType = UNSET
    # Subscribed by the server (a connect hook's channels), not asked for by the client.
    byServer: bool | UnsetType = UNSET


class Unsubscribed(ServerMessage, kw_only=True):
    kind: ClassVar[str] = "unsubscribed"
    channel: str
    byServer: bool | UnsetType = UNSET


class Published(ServerMessage, kw_only=True):
    kind: ClassVar[str] = "published"
    channel: str
    messageId: str


class ErrorDetails(msgspec.Struct):
    channel: str


class Error(ServerMessage, kw_only=True):
    """A refused command; the connection stays open."""

    kind: ClassVar[str] = "error"
    code: ErrorCode
    message: str
    details: ErrorDetails | UnsetType = UNSET


class Closing(ServerMessage, kw_only=True):
    """The close code and reason, as the last event of an SSE stream."""

    kind: ClassVar[str] = "close"
    code: int
    reason: str


class Notification(ServerMessage, kw_only=True):
    """A stored notification as clients see it (guide 002's shape, plus ``seq`` and read
    state); the HTTP API returns the same. ``type`` is the notification's own type."""

    kind: ClassVar[str] = "notification"
    id: str
    seq: int
    type: str
    title: str | None
    message: str | None
    priority: str
    category: str | None
    data: Any
    actionable: bool
    actions: list[dict[str, Any]]
    expiresAt: str | None
    createdAt: str
    readAt: str | None
    timestamp: str
    recovered: bool | UnsetType = UNSET
    redelivered: bool | UnsetType = UNSET


class Notifications(ServerMessage, kw_only=True):
    """A page of the inbox, newest first (``get_notifications``; the HTTP list too)."""

    kind: ClassVar[str] = "notifications"
    items: list[Notification]
    unreadCount: int
    nextCursor: str | None


class Acked(ServerMessage, kw_only=True):
    kind: ClassVar[str] = "acked"
    ids: list[str]


class NotificationRead(ServerMessage, kw_only=True):
    """Notifications marked read, told to every tab of the user."""

    kind: ClassVar[str] = "notification_read"
    ids: list[str]
    unreadCount: int


class NotificationArchived(NotificationRead, kw_only=True):
    kind: ClassVar[str] = "notification_archived"


class NotificationDeleted(NotificationRead, kw_only=True):
    kind: ClassVar[str] = "notification_deleted"


class RoomMessage(ServerMessage, kw_only=True, omit_defaults=True):
    """``CHAT_MESSAGE``: a room message as events and history show it (guide 004's fields,
    plus ``seq``); a deleted message keeps its place with ``content`` null."""

    kind: ClassVar[str] = "CHAT_MESSAGE"
    id: str
    roomId: str
    seq: int
    authorId: str
    content: str | None
    isEdited: bool
    isDeleted: bool
    createdAt: str
    editedAt: str | None
    # From the user directory (docs/users.md); left out for an unregistered author.
    authorName: str | None = None
    authorImage: str | None = None


class MessagePosted(RoomMessage, kw_only=True):
    """The reply to a ``chat_message`` command."""

    kind: ClassVar[str] = "message_posted"


class MessageEdited(RoomMessage, kw_only=True):
    kind: ClassVar[str] = "message_edited"


class MessageEditEvent(ServerMessage, kw_only=True):
    """``MESSAGE_EDIT``: guide 004's ``messageId``, ``content``, ``roomId``, and the rest."""

    kind: ClassVar[str] = "MESSAGE_EDIT"
    messageId: str
    content: str | None
    roomId: str
    seq: int
    authorId: str
    isEdited: bool
    editedAt: str | None


class MessageDeleteEvent(ServerMessage, kw_only=True):
    """``MESSAGE_DELETE``: guide 004's ``messageId`` and ``roomId``, and who deleted it."""

    kind: ClassVar[str] = "MESSAGE_DELETE"
    messageId: str
    roomId: str
    seq: int
    authorId: str
    deletedBy: str


class MessageDeleted(MessageDeleteEvent, kw_only=True):
    kind: ClassVar[str] = "message_deleted"


class TypingEvent(ServerMessage, kw_only=True, omit_defaults=True):
    kind: ClassVar[str] = "TYPING"
    userId: str
    roomId: str
    isTyping: bool
    userName: str | None = None


class TypingSent(ServerMessage, kw_only=True):
    kind: ClassVar[str] = "typing_sent"
    roomId: str


class UserJoined(ServerMessage, kw_only=True, omit_defaults=True):
    kind: ClassVar[str] = "USER_JOINED"
    userId: str
    roomId: str
    userName: str | None = None
    userImage: str | None = None


class UserLeft(UserJoined, kw_only=True):
    kind: ClassVar[str] = "USER_LEFT"


class RoomReadEvent(ServerMessage, kw_only=True):
    """``ROOM_READ``: the user's read marker moved (to every connection of theirs)."""

    kind: ClassVar[str] = "ROOM_READ"
    roomId: str
    lastReadSeq: int
    unreadCount: int


class RoomReadReply(RoomReadEvent, kw_only=True):
    kind: ClassVar[str] = "room_read"


class RoomPresenceReply(ServerMessage, kw_only=True):
    """Who is online in a room (``online`` a list), or whether ``userId`` is (a bool)."""

    kind: ClassVar[str] = "room_presence"
    roomId: str
    userId: str | UnsetType = UNSET
    online: bool | list[str]


class RoomHistoryPage(ServerMessage, kw_only=True):
    kind: ClassVar[str] = "room_history"
    roomId: str
    messages: list[RoomMessage]
    nextBeforeSeq: int | None


def _leaves(cls: type[ServerMessage]) -> list[type[ServerMessage]]:
    subs = cls.__subclasses__()
    return [cls] + [leaf for sub in subs for leaf in _leaves(sub)]


SERVER_MESSAGES: Final[tuple[type[ServerMessage], ...]] = tuple(
    c for c in _leaves(ServerMessage) if c is not ServerMessage
)

# Types the server itself sends, compared case-insensitively: a client may not publish
# under these names, so no client can pass a publication off as a welcome, a close, an
# inbox or a room message.
SERVER_TYPES: Final = frozenset(c.kind.lower() for c in SERVER_MESSAGES)
