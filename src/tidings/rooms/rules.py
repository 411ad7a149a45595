"""Chat rooms, the pure rules: names, limits, who may do what, event shapes, typing.

Nothing here touches the store, a socket or a clock: ``rooms.Rooms`` applies these
rules around the store and the hub, and ``api.rooms`` exposes them over HTTP. Guide 004's
names are kept on the wire: ``CHAT_MESSAGE``, ``MESSAGE_EDIT``, ``MESSAGE_DELETE``,
``TYPING``, ``USER_JOINED``, ``USER_LEFT`` on the channels ``room:{id}``,
``room:{id}:typing`` and ``room:{id}:online``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from ..filters import Filter
from ..protocol import MessageDeleteEvent, MessageEditEvent, RoomMessage, TypingEvent

NAMESPACE: Final = "room"
MAX_ROOM_ID: Final = 64
MAX_ROOM_NAME: Final = 200
MAX_CONTENT_CHARS: Final = 4000
MAX_MEMBERS_PER_CALL: Final = 1000
MAX_HISTORY_PAGE: Final = 100
DEFAULT_HISTORY_PAGE: Final = 50
MAX_USER_ID: Final = 255

_ROOM_ID_RE: Final = re.compile(r"[A-Za-z0-9_\-.@=]+")
# Control characters other than tab and newline make no sense in chat text and are a
# favourite for spoofing how a message renders.
_BAD_CHARS_RE: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class RoomError(ValueError):
    """A request the room rules refuse; ``status`` is the HTTP status that fits."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_member() -> RoomError:
    # One answer for a room that does not exist and one the user is not in: a non-member
    # learns nothing about which rooms exist.
    return RoomError(403, "not a member of this room")


class Role(enum.StrEnum):
    """A member's role in one room."""

    MEMBER = "member"
    MODERATOR = "moderator"


class Channels(msgspec.Struct, frozen=True):
    """The three channels of one room."""

    messages: str
    typing: str
    online: str


def channels(room_id: str) -> Channels:
    """``room:{id}``, ``room:{id}:typing`` and ``room:{id}:online``."""
    base = f"{NAMESPACE}:{room_id}"
    return Channels(base, f"{base}:typing", f"{base}:online")


def parse_channel(channel: str) -> tuple[str, str] | None:
    """``(room id, kind)`` of a room channel, kind one of ``messages``, ``typing``,
    ``online``; None for any other channel (the caller's usual rules apply)."""
    parts = channel.split(":")
    if parts[0] != NAMESPACE:
        return None
    if len(parts) == 2:
        return parts[1], "messages"
    if len(parts) == 3 and parts[2] in ("typing", "online"):
        return parts[1], parts[2]
    return parts[1] if len(parts) > 1 else "", "other"


def check_room_id(room_id: str) -> str:
    """The room id, or RoomError(422) if it is not 1-64 channel-segment characters."""
    if not 0 < len(room_id) <= MAX_ROOM_ID or not _ROOM_ID_RE.fullmatch(room_id):
        raise RoomError(422, f"room id must be 1 to {MAX_ROOM_ID} of A-Z a-z 0-9 _ - . @ =")
    return room_id


def check_name(name: str | None) -> str | None:
    if name is not None and (len(name) > MAX_ROOM_NAME or _BAD_CHARS_RE.search(name)):
        raise RoomError(422, f"name must be at most {MAX_ROOM_NAME} printable characters")
    return name


def check_user_id(user_id: str) -> str:
    if not 0 < len(user_id) <= MAX_USER_ID or _BAD_CHARS_RE.search(user_id):
        raise RoomError(422, f"user ids must be 1 to {MAX_USER_ID} printable characters")
    return user_id


def check_content(content: Any) -> str:
    """Message text: a string of 1 to 4000 characters, not only whitespace, with no control
    characters but tab and newline."""
    if not isinstance(content, str):
        raise RoomError(422, "content must be a string")
    if not content.strip():
        raise RoomError(422, "content must not be empty")
    if len(content) > MAX_CONTENT_CHARS:
        raise RoomError(422, f"content must be at most {MAX_CONTENT_CHARS} characters")
    if _BAD_CHARS_RE.search(content):
        raise RoomError(422, "content must not contain control characters (tab, newline: ok)")
    return content


def check_limit(limit: int) -> int:
    if not 0 < limit <= MAX_HISTORY_PAGE:
        raise RoomError(400, f"limit must be 1 to {MAX_HISTORY_PAGE}")
    return limit


def check_edit(author_id: str, user_id: str, deleted: bool) -> None:
    """Only the author edits, and never a deleted message."""
    if deleted:
        raise RoomError(404, "no such message")
    if author_id != user_id:
        raise RoomError(403, "only the author may edit a message")


def check_delete(author_id: str, user_id: str, role: Role, deleted: bool) -> None:
    """The author or a moderator of the room deletes."""
    if deleted:
        raise RoomError(404, "no such message")
    if author_id != user_id and role is not Role.MODERATOR:
        raise RoomError(403, "only the author or a moderator may delete a message")


# --- event shapes -------------------------------------------------------------------------


def message_view(
    *,
    message_id: str,
    room_id: str,
    seq: int,
    author_id: str,
    content: str | None,
    created_at: str,
    edited_at: str | None,
    deleted: bool,
    author_name: str | None = None,
    author_image: str | None = None,
) -> RoomMessage:
    """A message as ``CHAT_MESSAGE`` and history show it (guide 004's fields, plus ``seq``);
    a deleted message keeps its place with ``content`` null and ``isDeleted`` true."""
    return RoomMessage(
        id=message_id,
        roomId=room_id,
        seq=seq,
        authorId=author_id,
        content=None if deleted else content,
        isEdited=edited_at is not None,
        isDeleted=deleted,
        createdAt=created_at,
        editedAt=edited_at,
        authorName=author_name,
        authorImage=author_image,
    )


def edit_event(view: RoomMessage) -> MessageEditEvent:
    """``MESSAGE_EDIT``: guide 004's ``messageId``, ``content``, ``roomId``, and the rest."""
    return MessageEditEvent(
        messageId=view.id,
        content=view.content,
        roomId=view.roomId,
        seq=view.seq,
        authorId=view.authorId,
        isEdited=True,
        editedAt=view.editedAt,
    )


def delete_event(view: RoomMessage, deleted_by: str) -> MessageDeleteEvent:
    """``MESSAGE_DELETE``: guide 004's ``messageId`` and ``roomId``, and who deleted it."""
    return MessageDeleteEvent(
        messageId=view.id,
        roomId=view.roomId,
        seq=view.seq,
        authorId=view.authorId,
        deletedBy=deleted_by,
    )


def typing_event(
    room_id: str, user_id: str, is_typing: bool, user_name: str | None = None
) -> TypingEvent:
    """``TYPING``, as guide 004 shows it."""
    return TypingEvent(userId=user_id, roomId=room_id, isTyping=is_typing, userName=user_name)


# --- blocking -----------------------------------------------------------------------------


class BlockFilter(Filter):
    """A hub filter that drops publications whose ``field`` names a blocked user.

    It rides the hub's filter groups: subscribers with the same blocked set (and the same
    client filter, ``inner``) share one group, so a publication is checked once per
    distinct blocked set, and subscribers who block nobody stay in the plain, unfiltered
    group at no cost at all.
    """

    __slots__ = ("_blocked", "_field", "_inner")

    def __init__(self, field: str, blocked: Iterable[str], inner: Filter | None = None) -> None:
        self._field = field
        self._blocked = frozenset(blocked)
        self._inner = inner
        self.key = msgspec.json.encode(
            {"!block": [field, sorted(self._blocked)], "and": inner.key if inner else None}
        ).decode()

    def matches(self, data: Any) -> bool:
        if isinstance(data, dict) and data.get(self._field) in self._blocked:
            return False
        return self._inner is None or self._inner.matches(data)


def subscription_filter(
    kind: str, blocked: frozenset[str], client_filter: Mapping[str, Any] | None
) -> Filter | None:
    """The hub filter for one subscriber of a room channel: the client's own filter, with
    the authors it blocked taken out of ``room:{id}`` and ``room:{id}:typing``."""
    inner = Filter(client_filter) if client_filter else None
    if not blocked or kind not in ("messages", "typing"):
        return inner
    return BlockFilter("authorId" if kind == "messages" else "userId", blocked, inner)


# --- typing -------------------------------------------------------------------------------


class TypingTracker:
    """Who is typing where, on the caller's clock; never stored.

    ``start`` says whether a ``TYPING`` true should go out: the first one, and then at most
    one per ``throttle`` seconds per user and room (a client sending one per keystroke is
    coalesced). Each accepted or refused start pushes the expiry to ``now + ttl``;
    ``expired`` returns who stopped without saying so, for a ``TYPING`` false.
    """

    def __init__(self, *, ttl: float = 5.0, throttle: float = 1.0) -> None:
        self.ttl = ttl
        self.throttle = throttle
        # (room, user) -> [last sent, expires at]
        self._typing: dict[tuple[str, str], list[float]] = {}

    def start(self, room_id: str, user_id: str, now: float) -> bool:
        key = (room_id, user_id)
        entry = self._typing.get(key)
        if entry is None:
            self._typing[key] = [now, now + self.ttl]
            return True
        entry[1] = now + self.ttl
        if now - entry[0] >= self.throttle:
            entry[0] = now
            return True
        return False

    def stop(self, room_id: str, user_id: str) -> bool:
        """True if the user was typing there (a ``TYPING`` false is due)."""
        return self._typing.pop((room_id, user_id), None) is not None

    def expired(self, now: float) -> list[tuple[str, str]]:
        """``(room, user)`` pairs whose typing lapsed by ``now``; they are forgotten."""
        gone = [key for key, (_, until) in self._typing.items() if until <= now]
        for key in gone:
            del self._typing[key]
        return gone

    def typing(self, room_id: str) -> list[str]:
        return sorted(u for r, u in self._typing if r == room_id)

    def __len__(self) -> int:
        return len(self._typing)
