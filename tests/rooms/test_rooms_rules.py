"""The pure room rules (rooms.py) and the room commands' decoding: no server, no loop."""

from __future__ import annotations

from typing import Any

import pytest

from tidings import protocol
from tidings.filters import Filter
from tidings.rooms import rules as r
from tidings.rooms.rules import BlockFilter, Role, RoomError, TypingTracker


@pytest.mark.parametrize(
    ("channel", "parsed"),
    [
        ("room:abc", ("abc", "messages")),
        ("room:abc:typing", ("abc", "typing")),
        ("room:abc:online", ("abc", "online")),
        ("room:abc:other", ("abc", "other")),
        ("room:a:b:c", ("a", "other")),
        ("room", ("", "other")),
        ("rooms:abc", None),
        ("news", None),
    ],
)
def test_parse_channel(channel: str, parsed: tuple[str, str] | None) -> None:
    """Room channels are recognised with their kind; other namespaces are not claimed."""
    assert r.parse_channel(channel) == parsed


@pytest.mark.parametrize(
    ("content", "ok"),
    [
        ("hi", True),
        ("line\nbreak\tand tab", True),
        ("x" * 4000, True),
        ("🎉" * 4000, True),
        ("", False),
        (" \n\t", False),
        ("x" * 4001, False),
        ("nul\x00", False),
        ("esc\x1b[31m", False),
        ("del\x7f", False),
        (7, False),
        (None, False),
        (["a"], False),
    ],
)
def test_content_limits(content: Any, ok: bool) -> None:
    """Content is a non-blank string of at most 4,000 characters without control chars."""
    if ok:
        assert r.check_content(content) == content
    else:
        with pytest.raises(RoomError) as info:
            r.check_content(content)
        assert info.value.status == 422


@pytest.mark.parametrize("room_id", ["a", "A-z_0.9@=", "x" * 64])
def test_good_room_ids(room_id: str) -> None:
    """Room ids are channel segments of 1 to 64 characters."""
    assert r.check_room_id(room_id) == room_id


@pytest.mark.parametrize("room_id", ["", "x" * 65, "a:b", "a b", "é", "a/b"])
def test_bad_room_ids(room_id: str) -> None:
    """Anything else is refused with 422."""
    with pytest.raises(RoomError):
        r.check_room_id(room_id)


def test_edit_and_delete_rules() -> None:
    """Only the author edits; the author or a moderator deletes; deleted is 404."""
    r.check_edit("alice", "alice", deleted=False)
    for user in ("bob",):
        with pytest.raises(RoomError) as info:
            r.check_edit("alice", user, deleted=False)
        assert info.value.status == 403
    with pytest.raises(RoomError) as info:
        r.check_edit("alice", "alice", deleted=True)
    assert info.value.status == 404
    r.check_delete("alice", "alice", Role.MEMBER, deleted=False)
    r.check_delete("alice", "mod", Role.MODERATOR, deleted=False)
    with pytest.raises(RoomError) as info:
        r.check_delete("alice", "bob", Role.MEMBER, deleted=False)
    assert info.value.status == 403
    with pytest.raises(RoomError) as info:
        r.check_delete("alice", "mod", Role.MODERATOR, deleted=True)
    assert info.value.status == 404


def test_typing_throttles_and_expires() -> None:
    """One start per throttle window goes out; silence past the ttl expires it once."""
    t = TypingTracker(ttl=5.0, throttle=1.0)
    assert t.start("r", "alice", 100.0)
    assert not t.start("r", "alice", 100.5)
    assert t.start("r", "bob", 100.5)
    assert t.start("r", "alice", 101.0)
    assert t.typing("r") == ["alice", "bob"]
    assert t.expired(105.4) == []
    assert t.expired(105.5) == [("r", "bob")]
    assert t.expired(106.0) == [("r", "alice")]
    assert t.expired(200.0) == []
    assert len(t) == 0


def test_typing_refresh_without_an_event_still_extends() -> None:
    """A coalesced start still pushes the expiry back: steady typing never expires."""
    t = TypingTracker(ttl=5.0, throttle=1.0)
    t.start("r", "alice", 0.0)
    for now in (0.4, 4.0, 8.0, 12.0):
        t.start("r", "alice", now)
        assert t.expired(now + 4.9) == []
    assert t.stop("r", "alice")
    assert not t.stop("r", "alice")


def test_block_filter_drops_blocked_authors_only() -> None:
    """The filter drops events whose author is blocked and keeps the rest; equal block
    lists share one key (one hub group), different ones do not."""
    f = BlockFilter("authorId", {"bob", "eve"})
    assert not f.matches({"authorId": "bob"})
    assert f.matches({"authorId": "carol"})
    assert f.matches({"other": 1})
    assert f.matches("not a dict")
    assert f.key == BlockFilter("authorId", ["eve", "bob"]).key
    assert f.key != BlockFilter("authorId", {"bob"}).key
    assert f.key != BlockFilter("userId", {"bob", "eve"}).key


def test_block_filter_combines_with_the_clients_filter() -> None:
    """A client filter still applies on top of the block list."""
    inner = Filter({"authorId": ["bob", "carol"]})
    f = BlockFilter("authorId", {"bob"}, inner)
    assert [f.matches({"authorId": a}) for a in ("alice", "bob", "carol")] == [
        False,
        False,
        True,
    ]
    assert f.key != BlockFilter("authorId", {"bob"}).key


def test_subscription_filter_by_channel_kind() -> None:
    """Blocks filter messages (authorId) and typing (userId), not presence; no blocks and
    no client filter means no filter at all (the plain, cheapest group)."""
    blocked = frozenset({"bob"})
    assert r.subscription_filter("messages", frozenset(), None) is None
    assert r.subscription_filter("online", blocked, None) is None
    msgs = r.subscription_filter("messages", blocked, None)
    assert msgs is not None
    assert not msgs.matches({"authorId": "bob"})
    typing = r.subscription_filter("typing", blocked, None)
    assert typing is not None
    assert not typing.matches({"userId": "bob"})
    plain = r.subscription_filter("online", blocked, {"userId": "x"})
    assert isinstance(plain, Filter)
    assert not isinstance(plain, BlockFilter)


@pytest.mark.parametrize(
    ("frame", "cls", "fields"),
    [
        (
            '{"type":"CHAT_MESSAGE","payload":{"roomId":"r","content":"hi"}}',
            protocol.ChatMessage,
            {"roomId": "r", "content": "hi"},
        ),
        (
            '{"type":"TYPING","payload":{"userId":"x","userName":"X","roomId":"r","isTyping":false}}',
            protocol.Typing,
            {"roomId": "r", "isTyping": False},
        ),
        ('{"type":"typing","roomId":"r"}', protocol.Typing, {"roomId": "r", "isTyping": True}),
        (
            '{"type":"message_edit","roomId":"r","messageId":"m","content":"x"}',
            protocol.MessageEdit,
            {"messageId": "m"},
        ),
        (
            '{"type":"room_read","data":{"roomId":"r","seq":3}}',
            protocol.RoomRead,
            {"seq": 3, "messageId": None},
        ),
        (
            '{"type":"room_history","roomId":"r"}',
            protocol.RoomHistory,
            {"limit": 50, "beforeSeq": None},
        ),
    ],
)
def test_room_commands_decode(frame: str, cls: type, fields: dict[str, Any]) -> None:
    """Room commands decode from every accepted shape, guide 004's included."""
    cmd = protocol.decode_command(frame)
    assert isinstance(cmd, cls)
    for name, value in fields.items():
        assert getattr(cmd, name) == value


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"chat_message","content":"no room"}',
        '{"type":"typing","roomId":"r","isTyping":"yes"}',
        '{"type":"room_read","roomId":"r","seq":"1"}',
        '{"type":"message_delete","roomId":"r"}',
    ],
)
def test_bad_room_commands_are_protocol_errors(frame: str) -> None:
    """A room command of the wrong shape is INVALID_MESSAGE, before any room rule runs."""
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode_command(frame)
    assert info.value.code is protocol.ErrorCode.INVALID_MESSAGE
