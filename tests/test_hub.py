"""Routing tables and fan-out, with recording connections."""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.filters import Filter
from tidings.hub import Hub, Outbound


@dataclass(eq=False)
class Conn:
    client_id: str
    user_id: str
    roles: tuple[str, ...] = ()
    got: list[bytes] = field(default_factory=list)
    hub: Hub | None = None
    closes_on_push: bool = False

    def push(self, message: Outbound) -> bool:
        if self.closes_on_push and self.hub is not None:
            # What a transport does with a slow consumer: leave the hub mid-fan-out.
            self.hub.remove(self)
            return False
        self.got.append(message.payload)
        return True


def test_filter_groups_share_one_evaluation() -> None:
    """Subscribers with equal filters share a group; non-matching groups get nothing."""
    hub = Hub()
    a, b, c = Conn("1", "a"), Conn("2", "b"), Conn("3", "c")
    for conn in (a, b, c):
        hub.add(conn)
    hub.subscribe(a, "ch", Filter({"k": "x"}))
    hub.subscribe(b, "ch", Filter({"k": ["x"]}))
    hub.subscribe(c, "ch", Filter({"k": "y"}))
    assert hub.publish("ch", Outbound(b"m"), {"k": "x"}) == 2
    assert (a.got, b.got, c.got) == ([b"m"], [b"m"], [])
    assert hub.channel_counts() == {"ch": 3}


def test_subscriber_leaving_during_fan_out() -> None:
    """A connection that leaves the hub while being pushed to does not break the fan-out."""
    hub = Hub()
    slow = Conn("s", "slow", closes_on_push=True)
    slow.hub = hub
    others = [Conn(str(i), f"u{i}") for i in range(5)]
    for conn in (slow, *others):
        hub.add(conn)
    hub.subscribe(slow, "ch", Filter({"k": "v"}))  # alone in its filter group
    for conn in others:
        hub.subscribe(conn, "ch", None)
    hub.subscribe(others[0], "ch", Filter({"k": ["v", "w"]}))
    assert hub.publish("ch", Outbound(b"m"), {"k": "v"}) == 5
    assert all(conn.got == [b"m"] for conn in others)
    assert hub.connection_count() == 5
    assert hub.channel_counts() == {"ch": 5}


def test_user_role_and_broadcast_indexes() -> None:
    """send_to_user, send_to_role and broadcast reach the indexed connections only."""
    hub = Hub()
    a1, a2, b = Conn("1", "a", ("R",)), Conn("2", "a"), Conn("3", "b", ("R", "S"))
    for conn in (a1, a2, b):
        hub.add(conn)
    assert hub.send_to_user("a", Outbound(b"u")) == 2
    assert hub.send_to_role("R", Outbound(b"r")) == 2
    assert hub.broadcast(Outbound(b"x"), exclude_user="a") == 1
    hub.remove(a1)
    assert hub.send_to_role("R", Outbound(b"r")) == 1
    assert hub.user_count() == 2
    hub.remove(a2)
    assert hub.user_count() == 1
    assert hub.messages_out == 6


def test_channel_snapshot_follows_every_change() -> None:
    """The fan-out reuses a copy of a channel's plain subscribers between changes: each
    subscribe, unsubscribe, filter change and removal in between shows in the next
    publication (a stale copy would miss the newcomer or push to one that left), and
    a slow consumer that leaves mid-fan-out is gone from the next one."""
    hub = Hub()
    a, b, c = Conn("1", "a"), Conn("2", "b"), Conn("3", "c")
    for conn in (a, b, c):
        hub.add(conn)
    hub.subscribe(a, "ch", None)
    assert hub.publish("ch", Outbound(b"1"), None) == 1
    hub.subscribe(b, "ch", None)
    assert hub.publish("ch", Outbound(b"2"), None) == 2
    hub.unsubscribe(a, "ch")
    assert hub.publish("ch", Outbound(b"3"), None) == 1
    hub.subscribe(b, "ch", Filter({"k": "x"}))  # plain -> filtered: out of the copy
    hub.subscribe(c, "ch", None)
    assert hub.publish("ch", Outbound(b"4"), {"k": "y"}) == 1
    hub.subscribe(b, "ch", None)  # filtered -> plain: back in it
    assert hub.publish("ch", Outbound(b"5"), {"k": "y"}) == 2
    hub.remove(c)
    assert hub.publish("ch", Outbound(b"6"), None) == 1
    assert (a.got, b.got, c.got) == (
        [b"1", b"2"],
        [b"2", b"3", b"5", b"6"],
        [b"4", b"5"],
    )
    slow = Conn("s", "slow", closes_on_push=True)
    slow.hub = hub
    hub.add(slow)
    hub.subscribe(slow, "ch", None)
    assert hub.publish("ch", Outbound(b"7"), None) == 1
    assert hub.dropped == 1
    assert hub.publish("ch", Outbound(b"8"), None) == 1
    assert hub.dropped == 1  # not pushed to again: it left the copy with the hub
    assert b.got[-2:] == [b"7", b"8"]
    hub.remove(b)
    assert hub.publish("ch", Outbound(b"9"), None) == 0
    assert hub.channel_counts() == {}
