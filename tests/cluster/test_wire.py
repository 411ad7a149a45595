"""The node messages: what crosses the broker, as types, and back."""

from __future__ import annotations

import msgspec
import pytest

from tidings import cluster
from tidings.store import Notification, Priority

NOTE = Notification(
    id="ntf_1",
    user_id="alice",
    seq=3,
    type="notification",
    title="Hi",
    message=None,
    priority=Priority.HIGH,
    category=None,
    data={"k": 1},
    actions=(),
    expires_at=None,
    created_at=1.5,
)

MESSAGES: list[cluster.NodeMessage] = [
    cluster.Deliver(b'{"id":"m1","type":"t","timestamp":"x","data":1}'),
    cluster.DeliverExcept("alice", b'{"id":"m2","type":"t","timestamp":"x","data":2}'),
    cluster.Committed(NOTE),
    cluster.Told(user="alice", skip="c1", pop=["ntf_1"], envelope=msgspec.Raw(b'{"a":[1,2]}')),
    cluster.Acknowledged(user="alice", pop=["ntf_1", "ntf_2"]),
    cluster.ControlRequest(req="req_1", sender="n1", op=cluster.ListConnections(user="bob")),
    cluster.ControlRequest(
        req="req_2",
        sender="n1",
        op=cluster.Disconnect(user="bob", client=None, code=4010, reason="bye"),
    ),
    cluster.ControlRequest(req="req_3", sender="n1", op=cluster.Stats()),
    cluster.ControlRequest(
        req="req_4", sender="n1", op=cluster.RoomBlocks(user="bob", blocked=["eve"])
    ),
    cluster.ControlReply(req="req_1", node="n2", held=2, result=[{"clientId": "c"}]),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_node_message_round_trips(message: cluster.NodeMessage) -> None:
    """decode(encode(m)) gives back an equal message of the same type."""
    back = cluster.decode(cluster.encode(message))
    assert type(back) is type(message)
    if isinstance(message, cluster.Told):
        assert isinstance(back, cluster.Told)
        assert bytes(back.envelope) == bytes(message.envelope)
        assert (back.user, back.skip, back.pop) == (message.user, message.skip, message.pop)
    else:
        assert back == message


def test_deliveries_are_the_envelope_behind_one_tag_byte() -> None:
    """The fan-out's messages carry the serialized envelope untouched (no JSON around it)."""
    envelope = b'{"id":"m1","type":"t","timestamp":"x","data":1}'
    assert cluster.encode(cluster.Deliver(envelope)) == b"M" + envelope
    assert cluster.encode(cluster.DeliverExcept("al", envelope)) == b"Eal\0" + envelope


def test_an_unknown_payload_is_a_decode_error() -> None:
    """A payload no node made raises msgspec.DecodeError, whatever its first byte."""
    with pytest.raises(msgspec.DecodeError):
        cluster.decode(b"Xjunk")
    with pytest.raises(msgspec.DecodeError):
        cluster.decode(b'{"t":"Z"}')
