"""How tidings messages and Socket.IO events map onto each other (pure: no sockets).

Server to client, a message becomes an event named by its ``type``; its one argument is
the message's ``data``, or ``{channel, id, timestamp, data}`` for a message on a channel
(the channel is what tells two subscriptions apart). Client to server, an event is the
command of its name (``ALIASES`` adds guide 003's and the usual Socket.IO spellings), its
first argument the command's fields (snake_case names accepted, see ``FIELDS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import engineio  # type: ignore[import-untyped]
import msgspec

from .frames import frame_text

# Client event names that differ from the native command's; an event not listed is the
# command of its own name.
ALIASES: Final[Mapping[str, tuple[str, Mapping[str, Any]]]] = {
    "mark_all_read": ("mark_read", {"all": True}),
    "mark_as_read": ("mark_read", {}),
    "markAsRead": ("mark_read", {}),
    "markAllAsRead": ("mark_read", {"all": True}),
    "archive_notification": ("archive", {}),
    "delete_notification": ("delete", {}),
    "getNotifications": ("get_notifications", {}),
    "join_room": ("subscribe", {}),
    "leave_room": ("unsubscribe", {}),
}
# snake_case field names accepted beside the native camelCase ones.
FIELDS: Final[Mapping[str, str]] = {
    "notification_id": "notificationId",
    "notification_ids": "notificationIds",
    "unread_only": "unreadOnly",
    "room_id": "roomId",
    "message_id": "messageId",
    "is_typing": "isTyping",
    "before_seq": "beforeSeq",
    "user_id": "userId",
}
# What a bare (non-object) argument means, per command.
BARE: Final[Mapping[str, str]] = {
    "subscribe": "channel",
    "unsubscribe": "channel",
    "mark_read": "notificationId",
    "archive": "notificationId",
    "delete": "notificationId",
    "ack": "notificationId",
}
# Guide 003 names its user after connecting; tidings takes it from the token, so this
# event is acknowledged and otherwise ignored.
REGISTER: Final = "register"

_decoder: Final = msgspec.json.Decoder()
_encoder: Final = msgspec.json.Encoder()


class Event:
    """One server message as a Socket.IO event (built once, shared by every recipient)."""

    __slots__ = ("_frame", "data", "kind", "packet", "reply_to", "value")

    def __init__(self, payload: bytes) -> None:
        env = _decoder.decode(payload)
        self.kind: str = env["type"]
        self.reply_to: str | None = env.get("replyTo")
        channel = env.get("channel")
        self.data: Any = env.get("data")
        if channel is None:
            self.value: Any = self.data
        else:
            self.value = {
                "channel": channel,
                "id": env["id"],
                "timestamp": env["timestamp"],
                "data": self.data,
            }
        # A Socket.IO EVENT for namespace "/" inside an Engine.IO MESSAGE: "2[name,arg]".
        text = "2" + _encoder.encode([self.kind, self.value]).decode()
        self.packet = engineio.packet.Packet(engineio.packet.MESSAGE, text)
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The packet as a WebSocket frame (Engine.IO's ``4`` + the Socket.IO packet)."""
        frame = self._frame
        if frame is None:
            frame = self._frame = frame_text(("4" + self.packet.data).encode())
        return frame


def command_of(event: str, arg: Any, request_id: str) -> bytes:
    """The native command frame for a client event and its first argument."""
    command, preset = ALIASES.get(event, (event, {}))
    fields: dict[str, Any] = dict(preset)
    if command == "publish" and isinstance(arg, dict):
        # For a publication, ``data`` is the payload itself (as in the native message).
        fields.update(arg)
    elif isinstance(arg, dict):
        for key, value in arg.items():
            fields[FIELDS.get(key, key)] = value
    elif isinstance(arg, list) and command in BARE:
        fields["notificationIds" if BARE[command] == "notificationId" else "channels"] = arg
    elif arg is not None and command in BARE:
        fields[BARE[command]] = arg
    # The envelope's own: whatever the client put there is replaced.
    fields["type"] = command
    fields["id"] = request_id
    return _encoder.encode(fields)


def error(code: str, message: str) -> dict[str, Any]:
    """An acknowledgement that reports a failure, in the shape of an ``error`` reply."""
    return {"error": {"code": code, "message": message}}
