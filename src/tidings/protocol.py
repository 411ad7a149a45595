"""The wire protocol: every message both ways, the close codes and the error codes.

This module is the single source of truth for what goes over the WebSocket. It knows
nothing of sockets: it turns client frames into typed commands and builds server frames
as bytes. ``docs/protocol.md`` documents the same tables; keep them in step.

Client messages are accepted in the shapes the guides use:

* guide 002: ``{"type": "subscribe", "data": {"topic": "activities", "filters": {...}}}``
* guide 001: ``{"type": "subscribe", "channel": "notifications"}``
* guide 004: ``{"type": "PING", "payload": {}}``
* guide 000: ``{"type": "AUTH", "userId": "...", "token": "..."}``

Fields may sit at the top level, under ``data`` or under ``payload``; ``topic`` is an
alias of ``channel``; the type name is case-insensitive.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Annotated, Any, ClassVar, Final

import msgspec
from msgspec import UNSET, UnsetType

PROTOCOL_VERSION: Final = 1

Scalar = str | int | float | bool | None
FilterValue = Scalar | list[Scalar]


class CloseCode(enum.IntEnum):
    """WebSocket close codes sent by tidings.

    4000-4003 are exactly guide 001's. The ``CLOSE_CODES`` table says, for each, whether
    a client should reconnect; the Python and JavaScript clients follow it.
    """

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 4000
    MISSING_CREDENTIALS = 4001
    INVALID_TOKEN = 4002
    USER_MISMATCH = 4003
    AUTH_TIMEOUT = 4004
    TOKEN_EXPIRED = 4005
    FORBIDDEN_ORIGIN = 4006
    BACKEND_DENIED = 4007
    SLOW_CONSUMER = 4008
    TOO_MANY_CONNECTIONS = 4009
    DISCONNECTED = 4010
    RATE_LIMITED = 4029


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """What a close code means and what a client should do about it."""

    reason: str
    reconnect: bool
    advice: str


CLOSE_CODES: Final[Mapping[CloseCode, CloseInfo]] = {
    CloseCode.NORMAL: CloseInfo("normal closure", False, "closed on purpose; do not reconnect"),
    CloseCode.GOING_AWAY: CloseInfo(
        "server shutting down", True, "reconnect (with jitter) to this or another instance"
    ),
    CloseCode.MESSAGE_TOO_BIG: CloseInfo(
        "message too big", True, "reconnect, and do not resend the oversized message"
    ),
    CloseCode.INTERNAL_ERROR: CloseInfo("internal server error", True, "reconnect with backoff"),
    CloseCode.MISSING_CREDENTIALS: CloseInfo(
        "missing authentication credentials", False, "get a token before connecting again"
    ),
    CloseCode.INVALID_TOKEN: CloseInfo(
        "invalid or expired token", False, "reconnect only with a new token"
    ),
    CloseCode.USER_MISMATCH: CloseInfo(
        "user id mismatch", False, "the userId parameter does not match the token; fix the client"
    ),
    CloseCode.AUTH_TIMEOUT: CloseInfo(
        "authentication timeout", True, "reconnect and send auth promptly"
    ),
    CloseCode.TOKEN_EXPIRED: CloseInfo(
        "token expired", True, "reconnect with a fresh token (or refresh in-band before expiry)"
    ),
    CloseCode.FORBIDDEN_ORIGIN: CloseInfo(
        "origin not allowed", False, "the page's origin is not in the allowlist"
    ),
    CloseCode.BACKEND_DENIED: CloseInfo(
        "denied by the application",
        False,
        "the backend's connect hook refused this user; the reason says why",
    ),
    CloseCode.SLOW_CONSUMER: CloseInfo(
        "slow consumer", True, "reconnect; the client was not reading fast enough"
    ),
    CloseCode.TOO_MANY_CONNECTIONS: CloseInfo(
        "too many connections", True, "reconnect later with backoff, or close other tabs"
    ),
    CloseCode.DISCONNECTED: CloseInfo(
        "disconnected by the server",
        False,
        "an operator closed it (a ban, a password change): do not reconnect on your own",
    ),
    CloseCode.RATE_LIMITED: CloseInfo(
        "rate limit exceeded", True, "reconnect after a backoff and send less"
    ),
}


# Codes outside the table get a policy by range, as centrifuge's do: the lower half of
# each application range (3000-3499, 4000-4499) is worth a reconnect, the upper half
# (3500-3999, 4500-4999) is terminal. An operator choosing a code for the connection
# control API picks the policy with the code. Everything else (1006 abnormal closure,
# 1011, 1012 service restart, proxies' codes) is transport trouble: reconnect.
TERMINAL_RANGES: Final = (range(3500, 4000), range(4500, 5000))


def should_reconnect(code: int) -> bool:
    """Client policy for a close code: the table's for codes tidings sends, else by range
    (``TERMINAL_RANGES`` give up, every other code reconnects)."""
    try:
        return CLOSE_CODES[CloseCode(code)].reconnect
    except (ValueError, KeyError):
        return not any(code in terminal for terminal in TERMINAL_RANGES)


class ErrorCode(enum.StrEnum):
    """Codes of ``error`` messages; the connection stays open after each."""

    INVALID_MESSAGE = "INVALID_MESSAGE"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMIT = "RATE_LIMIT"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    SERVER_ERROR = "SERVER_ERROR"
    # The cluster's broker cannot be reached: nothing was published; try again.
    UNAVAILABLE = "UNAVAILABLE"


class ProtocolError(Exception):
    """A client frame that cannot be turned into a command."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


# --- client -> server -------------------------------------------------------------------


class Command(msgspec.Struct, kw_only=True):
    """Base of every client message; ``id`` is echoed as ``replyTo`` on the reply."""

    name: ClassVar[str]
    id: str | None = None


class Ping(Command, kw_only=True):
    """Application ping; ``shout`` records an upper-case ``PING`` so the reply is ``PONG``."""

    name: ClassVar[str] = "ping"
    shout: bool = False


class Auth(Command, kw_only=True):
    """Authenticate after open (guide 000), or refresh the token of an open connection."""

    name: ClassVar[str] = "auth"
    token: str
    userId: str | None = None


class Position(msgspec.Struct, forbid_unknown_fields=True):
    """A channel stream position, as publications carry it (``offset``, ``epoch``)."""

    offset: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    epoch: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Subscribe(Command, kw_only=True):
    name: ClassVar[str] = "subscribe"
    channel: str
    filters: dict[str, FilterValue] | None = None
    # Resume after this position: the publications missed since are sent first.
    since: Position | None = None
    # A subscription token: a JWT for this channel and user, signed by the backend.
    token: str | None = None


class Unsubscribe(Command, kw_only=True):
    name: ClassVar[str] = "unsubscribe"
    channel: str


class Publish(Command, kw_only=True):
    """Client publication into a namespace that allows it."""

    name: ClassVar[str] = "publish"
    channel: str
    event: str = "message"
    data: Any = None


class GetStatus(Command, kw_only=True):
    name: ClassVar[str] = "get_status"


MAX_IDS: Final = 1000


class Ack(Command, kw_only=True):
    """Delivery confirmation of notifications (guide 003)."""

    name: ClassVar[str] = "ack"
    notificationId: str | None = None
    notificationIds: list[str] | None = None
    ids: list[str] | None = None  # the canonical name, as over HTTP

    def id_list(self) -> list[str]:
        return _ids(self.notificationId, self.notificationIds, self.ids)


class MarkRead(Command, kw_only=True):
    """Mark notifications read: one, several, or ``all`` (guides 001 and 003)."""

    name: ClassVar[str] = "mark_read"
    notificationId: str | None = None
    notificationIds: list[str] | None = None
    ids: list[str] | None = None  # the canonical name, as over HTTP
    all: bool = False

    def id_list(self) -> list[str]:
        return _ids(self.notificationId, self.notificationIds, self.ids)


class Archive(Command, kw_only=True):
    """Archive notifications: kept, but out of the inbox and the unread count."""

    name: ClassVar[str] = "archive"
    notificationId: str | None = None
    notificationIds: list[str] | None = None
    ids: list[str] | None = None  # the canonical name, as over HTTP

    def id_list(self) -> list[str]:
        return _ids(self.notificationId, self.notificationIds, self.ids)


class Unarchive(Command, kw_only=True):
    """Bring archived notifications back into the inbox (read state kept)."""

    name: ClassVar[str] = "unarchive"
    notificationId: str | None = None
    notificationIds: list[str] | None = None
    ids: list[str] | None = None  # the canonical name, as over HTTP

    def id_list(self) -> list[str]:
        return _ids(self.notificationId, self.notificationIds, self.ids)


class Delete(Command, kw_only=True):
    """Delete notifications for good."""

    name: ClassVar[str] = "delete"
    notificationId: str | None = None
    notificationIds: list[str] | None = None
    ids: list[str] | None = None  # the canonical name, as over HTTP

    def id_list(self) -> list[str]:
        return _ids(self.notificationId, self.notificationIds, self.ids)


class GetNotifications(Command, kw_only=True):
    """A page of the user's inbox, newest first."""

    name: ClassVar[str] = "get_notifications"
    unreadOnly: bool = False
    # The archived notifications instead of the inbox (the "Archived" tab).
    archived: bool = False
    limit: int = 20
    cursor: str | None = None


def _ids(one: str | None, *many: list[str] | None) -> list[str]:
    """Every id given, under any of the accepted names, once each in order."""
    ids = [one] if one is not None else []
    for more in many:
        ids.extend(more or [])
    return list(dict.fromkeys(ids))


IdsCommand = Ack | MarkRead | Archive | Unarchive | Delete
InboxCommand = Ack | MarkRead | Archive | Unarchive | Delete | GetNotifications


# Chat rooms (docs/rooms.md); guide 004's names, as commands too. ``content`` is checked by
# the room rules, so a wrong type gets their documented error rather than a schema one.


class ChatMessage(Command, kw_only=True):
    """Post to a room that allows posting over the WebSocket."""

    name: ClassVar[str] = "chat_message"
    roomId: str
    content: Any = None


class MessageEdit(Command, kw_only=True):
    """The author replaces a message's text."""

    name: ClassVar[str] = "message_edit"
    roomId: str
    messageId: str
    content: Any = None


class MessageDelete(Command, kw_only=True):
    """The author or a moderator deletes a message."""

    name: ClassVar[str] = "message_delete"
    roomId: str
    messageId: str


class Typing(Command, kw_only=True):
    """Guide 004's ``TYPING``: ``isTyping`` true while typing, false when stopped."""

    name: ClassVar[str] = "typing"
    roomId: str
    isTyping: bool = True


class RoomRead(Command, kw_only=True):
    """Move this user's read marker in a room to a message (by ``seq`` or ``messageId``)."""

    name: ClassVar[str] = "room_read"
    roomId: str
    seq: int | None = None
    messageId: str | None = None


class RoomPresence(Command, kw_only=True):
    """Who is online in a room, or whether ``userId`` is."""

    name: ClassVar[str] = "room_presence"
    roomId: str
    userId: str | None = None


class RoomHistory(Command, kw_only=True):
    """A page of a room's messages, newest first, below ``beforeSeq``."""

    name: ClassVar[str] = "room_history"
    roomId: str
    beforeSeq: int | None = None
    limit: int = 50


RoomCommand = (
    ChatMessage | MessageEdit | MessageDelete | Typing | RoomRead | RoomPresence | RoomHistory
)

COMMANDS: Final[dict[str, type[Command]]] = {
    cls.name: cls
    for cls in (
        Ping,
        Auth,
        Subscribe,
        Unsubscribe,
        Publish,
        GetStatus,
        Ack,
        MarkRead,
        Archive,
        Unarchive,
        Delete,
        GetNotifications,
        ChatMessage,
        MessageEdit,
        MessageDelete,
        Typing,
        RoomRead,
        RoomPresence,
        RoomHistory,
    )
}

_decoder: Final = msgspec.json.Decoder()
_RESERVED_TOP: Final = frozenset(("type", "data", "payload"))


# JSON from clients (frames, API bodies) may nest this deep and no deeper. msgspec decodes
# and encodes recursively on the interpreter's stack, so a 2 KB document of 1,000 open
# brackets raises RecursionError, and one that just fits here might not fit when it is
# encoded again deeper in a call stack; a fixed, small bound keeps both sides safe.
MAX_JSON_DEPTH: Final = 64
# A JSON string (escapes included), removed before brackets are counted.
_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
# Per byte of the brackets-only text: +1 opens, -1 closes.
_DEPTH_STEP: Final = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


def json_depth_exceeded(raw: bytes | str) -> bool:
    """Whether a JSON document nests deeper than ``MAX_JSON_DEPTH`` (checked before it
    is decoded, in C-speed passes over the bytes; a malformed document may answer
    either way and fails to decode afterwards)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False  # the common case: too few brackets to nest that deep
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH


def decode_command(frame: bytes | str) -> Command:
    """Parse one client text frame into a typed command.

    Raises:
        ProtocolError: malformed JSON, nested deeper than ``MAX_JSON_DEPTH``, not an
            object, unknown type or a schema violation.
    """
    if json_depth_exceeded(frame):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )
    try:
        raw = _decoder.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        # msgspec reports invalid UTF-8 inside a string as UnicodeDecodeError.
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"malformed JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message must be a JSON object")
    request_id = raw.get("id")
    if not isinstance(request_id, str):
        request_id = str(request_id) if isinstance(request_id, int) else None
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "missing or non-string 'type'", request_id)
    cls = COMMANDS.get(kind.lower())
    if cls is None:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"unknown message type {kind[:64]!r}", request_id
        )
    fields: dict[str, Any] = {k: v for k, v in raw.items() if k not in _RESERVED_TOP}
    fields["id"] = request_id
    body = raw.get("data", raw.get("payload"))
    if cls is Publish:
        # For a publication, ``data`` is the payload itself, not a field container.
        fields["data"] = body
    elif isinstance(body, dict):
        fields.update(body)
    if cls is Ping:
        fields["shout"] = kind.isupper()
    fields["id"] = request_id  # the envelope's id, whatever the body carries
    if "topic" in fields and "channel" not in fields:
        fields["channel"] = fields.pop("topic")
    try:
        return msgspec.convert(fields, cls)
    except msgspec.ValidationError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"invalid {cls.name}: {exc}", request_id
        ) from None


# --- server -> client -------------------------------------------------------------------
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
    # Only on an archived notification (the archived list).
    archivedAt: str | UnsetType = UNSET
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


class NotificationUnarchived(NotificationRead, kw_only=True):
    """Archived notifications back in the inbox: a list shows them again (fetch them)."""

    kind: ClassVar[str] = "notification_unarchived"


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

_encoder: Final = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    """Serialize a JSON value; the one encoder used for every outgoing frame."""
    return _encoder.encode(obj)


def envelope(
    msg_id: str,
    kind: str,
    timestamp: str,
    data: Any,
    *,
    channel: str | None = None,
    reply_to: str | None = None,
) -> bytes:
    """Build a server message in guide 002's envelope ``{id, type, timestamp, data}``.

    ``channel`` is present on publications and channel replies; ``replyTo`` echoes the
    ``id`` of the client message a reply answers.
    """
    msg: dict[str, Any] = {"id": msg_id, "type": kind}
    if channel is not None:
        msg["channel"] = channel
    msg["timestamp"] = timestamp
    msg["data"] = data
    if reply_to is not None:
        msg["replyTo"] = reply_to
    return _encoder.encode(msg)
