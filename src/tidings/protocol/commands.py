"""Client-to-server messages: every command as a typed struct, and ``COMMANDS``, the
table from a ``type`` name to its struct."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final

import msgspec

Scalar = str | int | float | bool | None
FilterValue = Scalar | list[Scalar]


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
    limit: int = 20
    cursor: str | None = None


def _ids(one: str | None, *many: list[str] | None) -> list[str]:
    """Every id given, under any of the accepted names, once each in order."""
    ids = [one] if one is not None else []
    for more in many:
        ids.extend(more or [])
    return list(dict.fromkeys(ids))


IdsCommand = Ack | MarkRead | Archive | Delete
InboxCommand = Ack | MarkRead | Archive | Delete | GetNotifications


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
