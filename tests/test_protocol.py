"""Decoding client frames in every guide's shape, and the close-code table."""

from __future__ import annotations

import msgspec
import pytest

from tidings import protocol
from tidings.protocol import CLOSE_CODES, CloseCode, ErrorCode, ProtocolError


@pytest.mark.parametrize(
    ("frame", "cls", "fields"),
    [
        ('{"type":"ping"}', protocol.Ping, {"shout": False}),
        ('{"type":"PING","payload":{}}', protocol.Ping, {"shout": True}),
        (
            '{"type":"subscribe","channel":"notifications"}',
            protocol.Subscribe,
            {"channel": "notifications", "filters": None},
        ),
        (
            '{"type":"subscribe","data":{"topic":"activities","filters":{"a":["X","Y"]}}}',
            protocol.Subscribe,
            {"channel": "activities", "filters": {"a": ["X", "Y"]}},
        ),
        (
            '{"type":"SUBSCRIBE","payload":{"channel":"room:1"}}',
            protocol.Subscribe,
            {"channel": "room:1"},
        ),
        (
            '{"type":"unsubscribe","data":{"topic":"activities"}}',
            protocol.Unsubscribe,
            {"channel": "activities"},
        ),
        ('{"type":"get_status","data":{}}', protocol.GetStatus, {}),
        (
            '{"type":"AUTH","userId":"u1","token":"t"}',
            protocol.Auth,
            {"token": "t", "userId": "u1"},
        ),
        ('{"type":"auth","data":{"token":"t"}}', protocol.Auth, {"token": "t"}),
        (
            '{"type":"publish","channel":"room:1","event":"chat","data":{"x":1}}',
            protocol.Publish,
            {"channel": "room:1", "event": "chat", "data": {"x": 1}},
        ),
        ('{"type":"ping","id":7}', protocol.Ping, {"id": "7"}),
    ],
)
def test_decode_accepts_each_guides_shape(frame: str, cls: type, fields: dict) -> None:
    """Top-level, data and payload fields, topic alias and any type case all decode."""
    cmd = protocol.decode_command(frame)
    assert type(cmd) is cls
    for name, value in fields.items():
        assert getattr(cmd, name) == value


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ("not json", "malformed JSON"),
        ("[1,2]", "JSON object"),
        ('{"data":{}}', "type"),
        ('{"type":5}', "type"),
        ('{"type":"launch_missiles"}', "unknown message type"),
        ('{"type":"subscribe"}', "channel"),
        ('{"type":"subscribe","channel":5}', "channel"),
        ('{"type":"subscribe","channel":"a","filters":{"x":{"y":1}}}', "filters"),
        ('{"type":"auth"}', "token"),
        (b"\xff\xfe", "malformed JSON"),
        (b'{"type":"ping","x":"\xff"}', "malformed JSON"),
    ],
)
def test_decode_rejects_with_invalid_message(frame: str | bytes, needle: str) -> None:
    """Every bad frame is a ProtocolError with INVALID_MESSAGE and a useful message."""
    with pytest.raises(ProtocolError) as info:
        protocol.decode_command(frame)
    assert info.value.code is ErrorCode.INVALID_MESSAGE
    assert needle in info.value.message


def test_error_keeps_request_id() -> None:
    """A schema error on a message with an id carries the id, so the reply can name it."""
    with pytest.raises(ProtocolError) as info:
        protocol.decode_command('{"type":"subscribe","id":"r9"}')
    assert info.value.request_id == "r9"


def test_every_close_code_is_documented() -> None:
    """Each CloseCode has a reason and a reconnect policy; guide 001's codes are exact."""
    assert set(CLOSE_CODES) == set(CloseCode)
    assert (
        CloseCode.INTERNAL_ERROR,
        CloseCode.MISSING_CREDENTIALS,
        CloseCode.INVALID_TOKEN,
        CloseCode.USER_MISMATCH,
    ) == (4000, 4001, 4002, 4003)
    assert protocol.should_reconnect(1001) is True
    assert protocol.should_reconnect(4001) is False
    assert protocol.should_reconnect(4008) is True
    assert protocol.should_reconnect(1006) is True  # not ours: abnormal closure


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (1006, True),
        (1011, True),
        (1012, True),
        (3000, True),
        (3499, True),
        (3500, False),
        (3999, False),
        (4100, True),
        (4499, True),
        (4500, False),
        (4999, False),
    ],
)
def test_codes_outside_the_table_get_a_policy_by_range(code: int, reconnect: bool) -> None:
    """A code tidings does not define reconnects in 3000-3499 and 4000-4499 and for
    transport codes, and gives up in 3500-3999 and 4500-4999."""
    assert code not in {int(c) for c in CLOSE_CODES}
    assert protocol.should_reconnect(code) is reconnect


def test_envelope_shape() -> None:
    """Server messages use guide 002's envelope, plus channel and replyTo when present."""
    import json

    raw = protocol.envelope(
        "m1", "notification", "2025-01-01T00:00:00.000Z", {"a": 1}, channel="c", reply_to="r1"
    )
    assert json.loads(raw) == {
        "id": "m1",
        "type": "notification",
        "channel": "c",
        "timestamp": "2025-01-01T00:00:00.000Z",
        "data": {"a": 1},
        "replyTo": "r1",
    }


def test_body_cannot_override_envelope_id() -> None:
    """An id inside data does not replace the message's own id."""
    cmd = protocol.decode_command('{"type":"ping","id":"outer","data":{"id":5}}')
    assert cmd.id == "outer"


def test_server_types_are_derived_from_the_message_types() -> None:
    """SERVER_TYPES is exactly the (lower-cased) kinds of the server message types, each kind
    belongs to one type, and it covers every type the server sends (rooms' too)."""
    kinds = [cls.kind for cls in protocol.SERVER_MESSAGES]
    assert len(kinds) == len(set(kinds))
    assert frozenset(k.lower() for k in kinds) == protocol.SERVER_TYPES
    sent = {
        "welcome", "pong", "PONG", "refreshed", "status", "subscribed", "unsubscribed",
        "published", "error", "close", "notification", "notifications", "acked",
        "notification_read", "notification_archived", "notification_deleted",
        "notification_unarchived", "message_posted", "message_edited", "message_deleted",
        "typing_sent", "room_read",
        "room_presence", "room_history", "CHAT_MESSAGE", "MESSAGE_EDIT", "MESSAGE_DELETE",
        "TYPING", "USER_JOINED", "USER_LEFT", "ROOM_READ",
    }  # fmt: skip
    assert set(kinds) == sent


def test_server_messages_encode_without_unset_fields() -> None:
    """A server message leaves out the fields it does not carry (UNSET), keeps nulls."""
    sub = protocol.Subscribed(channel="news", filters=None)
    assert msgspec.json.decode(protocol.encode(sub)) == {"channel": "news", "filters": None}
    err = protocol.Error(code=protocol.ErrorCode.FORBIDDEN, message="no")
    assert msgspec.json.decode(protocol.encode(err)) == {"code": "FORBIDDEN", "message": "no"}
