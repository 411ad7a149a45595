"""Frames to values and back: ``decode_command`` (a client frame, in every guide's shape,
to its command), the JSON depth guard, the one encoder, and the server envelope."""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any, Final

import msgspec

from .commands import COMMANDS, Command, Ping, Publish
from .errors import ErrorCode, ProtocolError

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
