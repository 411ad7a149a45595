"""The connection event ring: bounded, numbered, read after a position, gaps reported."""

from __future__ import annotations

from dataclasses import dataclass

from tidings.events import ConnectionEvents, merge


@dataclass
class Conn:
    client_id: str
    user_id: str = "una"
    transport: str = "websocket"
    remote: str | None = "127.0.0.1"


def test_events_are_numbered_and_read_after_a_position() -> None:
    """Connects and disconnects get consecutive seqs; ``after`` returns the newer ones."""
    log = ConnectionEvents(lambda: 100.0, size=10)
    log.connected(Conn("c1"))
    log.disconnected(Conn("c1", transport="sse"), 4010)
    events, gap = log.after(0)
    assert not gap
    assert [(e.seq, e.kind, e.client_id, e.code) for e in events] == [
        (1, "connect", "c1", None),
        (2, "disconnect", "c1", 4010),
    ]
    assert events[1].transport == "sse"
    assert log.after(1) == ([events[1]], False)
    assert log.after(2) == ([], False)
    assert log.after(0, limit=1) == ([events[0]], False)


def test_the_ring_is_bounded_and_a_late_reader_is_told_of_the_gap() -> None:
    """Past ``size`` the oldest go; a reader behind them gets what is left and ``gap``."""
    log = ConnectionEvents(lambda: 0.0, size=3)
    for i in range(5):
        log.connected(Conn(f"c{i}"))
    events, gap = log.after(0)
    assert gap
    assert [e.seq for e in events] == [3, 4, 5]
    assert log.after(2) == (events, False)
    assert log.last_seq == 5


def test_followers_are_woken_per_event_until_they_stop() -> None:
    """A follower's wake runs once per event; the undo stops it."""
    log = ConnectionEvents(lambda: 0.0)
    woken: list[int] = []
    stop = log.follow(lambda: woken.append(log.last_seq))
    log.connected(Conn("a"))
    log.disconnected(Conn("a"), 1000)
    stop()
    log.connected(Conn("b"))
    assert woken == [1, 2]


def test_a_page_and_the_merge_of_instances_pages() -> None:
    """``page`` shows events for the API (the newest without a position, a position from
    an earlier run reads as 0); ``merge`` orders instances' events by time."""
    now = [10.0]
    a, b = ConnectionEvents(lambda: now[0]), ConnectionEvents(lambda: now[0])
    a.connected(Conn("a1"))
    now[0] = 11.0
    b.connected(Conn("b1", transport="sse"))
    now[0] = 12.0
    a.disconnected(Conn("a1"), 4008)
    page = a.page(None, 1, "A")
    assert [(e.seq, e.event, e.code, e.instance) for e in page.events] == [
        (2, "disconnect", 4008, "A")
    ]
    assert (page.lastSeq, page.gap) == (2, False)
    assert [e.seq for e in a.page(99, 10, "A").events] == [1, 2]
    merged = merge([a.page(0, 10, "A"), b.page(0, 10, "B")])
    assert [(e.instance, e.clientId) for e in merged.events] == [
        ("A", "a1"),
        ("B", "b1"),
        ("A", "a1"),
    ]
    assert merged.positions == {"A": 2, "B": 1}
    assert merged.events[0].at == "1970-01-01T00:00:10.000Z"
