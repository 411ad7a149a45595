"""The connection event ring: bounded, numbered, read after a position, gaps reported."""

from __future__ import annotations

from dataclasses import dataclass

from tidings.events import ConnectionEvents


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
