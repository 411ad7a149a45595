"""The session state machine driven without sockets: a recording push and a fake clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tidings.auth import mint
from tidings.hub import Outbound
from tidings.node import Node
from tidings.protocol import CloseCode
from tidings.session import Session, State

from .conftest import SECRET, make_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Stands in for the transport: keeps what the session pushed."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, message: Outbound) -> bool:
        self.sent.append(json.loads(message.payload))
        return True

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]


def make(**overrides: Any) -> tuple[Node, Clock]:
    clock = Clock()
    return Node(make_settings(**overrides), clock=clock, monotonic=clock), clock


def tok(clock: Clock, user: str = "alice", ttl: float = 60, **kw: Any) -> str:
    return mint(SECRET, user, ttl=ttl, now=clock.now, **kw)


def test_handshake_token_opens_with_welcome() -> None:
    """A valid handshake token opens the session, registers it and sends welcome."""
    node, clock = make()
    rec = Recorder()
    s = Session(node, "c1", rec)
    assert s.authenticate(tok(clock, roles=["LIBRARIAN"])) is None
    assert s.state is State.OPEN
    assert node.hub.connection_count() == 1
    assert rec.sent[0]["type"] == "welcome"
    assert rec.sent[0]["data"]["roles"] == ["LIBRARIAN"]


def test_first_message_must_be_auth() -> None:
    """Without a handshake token, ping is answered but any other message closes 4001."""
    node, _ = make()
    rec = Recorder()
    s = Session(node, "c1", rec)
    assert s.authenticate(None) is None
    assert s.receive(b'{"type":"PING"}') is None
    assert rec.types() == ["PONG"]
    close = s.receive(b'{"type":"subscribe","channel":"x"}')
    assert close is not None
    assert close.code == CloseCode.MISSING_CREDENTIALS


def test_auth_message_then_timeout_is_moot() -> None:
    """An auth message opens the session; the auth deadline then does nothing."""
    node, clock = make()
    rec = Recorder()
    s = Session(node, "c1", rec)
    assert s.receive(json.dumps({"type": "AUTH", "token": tok(clock)}).encode()) is None
    assert s.state is State.OPEN
    assert s.auth_deadline() is None
    unauth = Session(node, "c2", Recorder())
    close = unauth.auth_deadline()
    assert close is not None
    assert close.code == CloseCode.AUTH_TIMEOUT


def test_expiry_and_refresh() -> None:
    """A token past expiry closes 4005 unless refreshed in-band with the same user."""
    node, clock = make()
    rec = Recorder()
    s = Session(node, "c1", rec)
    s.authenticate(tok(clock, ttl=30))
    clock.now += 20
    assert s.receive(json.dumps({"type": "auth", "token": tok(clock, ttl=60)})) is None
    assert rec.types()[-1] == "refreshed"
    clock.now += 45  # past the first token's expiry + leeway, within the second's
    assert s.expiry_check() is None
    clock.now += 30
    close = s.expiry_check()
    assert close is not None
    assert close.code == CloseCode.TOKEN_EXPIRED
    other = s.receive(json.dumps({"type": "auth", "token": tok(clock, user="mallory")}))
    assert other is not None
    assert other.code == CloseCode.USER_MISMATCH


def test_bad_refresh_keeps_connection() -> None:
    """A bad token sent to refresh gets UNAUTHORIZED; the connection stays open."""
    node, clock = make()
    rec = Recorder()
    s = Session(node, "c1", rec)
    s.authenticate(tok(clock))
    assert s.receive(b'{"type":"auth","token":"nope"}') is None
    assert rec.sent[-1]["data"]["code"] == "UNAUTHORIZED"
    assert s.state is State.OPEN


def test_rate_limit_then_close() -> None:
    """Past the burst, messages get RATE_LIMIT; past close_after more, the session closes."""
    node, clock = make(rate_limit_per_second=1, rate_limit_burst=3, rate_limit_close_after=2)
    rec = Recorder()
    s = Session(node, "c1", rec)
    s.authenticate(tok(clock))
    results = [s.receive(b'{"type":"ping"}') for _ in range(5)]
    assert results == [None] * 5
    assert rec.types()[1:] == ["pong", "pong", "pong", "error", "error"]
    assert rec.sent[-1]["data"]["code"] == "RATE_LIMIT"
    close = s.receive(b'{"type":"ping"}')
    assert close is not None
    assert close.code == CloseCode.RATE_LIMITED
    clock.now += 10  # time refills both buckets
    fresh = Session(node, "c2", Recorder())
    fresh.authenticate(tok(clock))
    assert fresh.receive(b'{"type":"ping"}') is None


@pytest.mark.parametrize("user_param", ["bob", "alice"])
def test_user_id_parameter_must_match(user_param: str) -> None:
    """Guide 001's userId parameter must equal the token's user (4003 otherwise)."""
    node, clock = make()
    s = Session(node, "c1", Recorder(), user_id_param=user_param)
    close = s.authenticate(tok(clock))
    if user_param == "alice":
        assert close is None
    else:
        assert close is not None
        assert close.code == CloseCode.USER_MISMATCH


def test_close_leaves_the_hub() -> None:
    """Closing removes the connection and its subscriptions from every table."""
    node, clock = make()
    s = Session(node, "c1", Recorder())
    s.authenticate(tok(clock, roles=["R"]))
    s.receive(b'{"type":"subscribe","channel":"news"}')
    assert node.hub.channel_counts() == {"news": 1}
    s.close()
    s.close()
    assert node.hub.channel_counts() == {}
    assert node.hub.connection_count() == 0
    assert node.hub.user_count() == 0
