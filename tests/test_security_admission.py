"""Admission control: one client address cannot exhaust the server. Pure rules with a fake
clock, then real servers with clients that appear (through a trusted proxy's
X-Forwarded-For) to come from different addresses."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pytest
import websockets

from tidings.admission import Admission
from tidings.metrics import Metrics

from .conftest import Harness, ServerFactory, closed_with, make_settings, recv, token
from .security import assert_no_error_logged, assert_still_serving, rss_within


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admission(**overrides: Any) -> tuple[Admission, Clock, Metrics]:
    clock, metrics = Clock(), Metrics()
    return Admission(make_settings(**overrides), clock, metrics), clock, metrics


def test_connection_rate_per_address() -> None:
    """An address gets its burst of new connections, then 429 with Retry-After until refill;
    another address is unaffected."""
    adm, clock, metrics = admission(connection_rate_per_address=2, connection_burst_per_address=3)
    assert [adm.admit("a", has_token=True) for _ in range(3)] == [None] * 3
    refusal = adm.admit("a", has_token=True)
    assert refusal is not None
    assert (refusal.status, refusal.reason, refusal.retry_after) == (429, "connection_rate", 1)
    assert adm.admit("b", has_token=True) is None
    clock.now += 0.5  # one token back at 2/s
    assert adm.admit("a", has_token=True) is None
    assert metrics.admission_refusals == Counter(connection_rate=1)


def test_pending_caps_apply_only_without_a_token() -> None:
    """Connections still authenticating are capped per address (429) and in all (503);
    a connection that brings a token is never held back by them."""
    adm, _, metrics = admission(
        max_pending_per_address=2, max_pending_connections=3, connection_rate_per_address=0
    )
    for _ in range(2):
        assert adm.admit("a", has_token=False) is None
        adm.opened("a")
    refused = adm.admit("a", has_token=False)
    assert refused is not None
    assert (refused.status, refused.reason) == (429, "pending_per_address")
    assert adm.admit("a", has_token=True) is None
    assert adm.admit("b", has_token=False) is None
    adm.opened("b")
    refused = adm.admit("c", has_token=False)
    assert refused is not None
    assert (refused.status, refused.reason) == (503, "pending")
    assert adm.admit("c", has_token=True) is None
    adm.settled("a")
    assert adm.admit("c", has_token=False) is None
    assert metrics.pending_connections == 2


def test_failed_authentications_throttle_the_address() -> None:
    """Past its burst of failures an address is refused (429, Retry-After) until refill."""
    adm, clock, _ = admission(auth_failure_rate_per_address=0.5, auth_failure_burst_per_address=3)
    for _ in range(3):
        assert adm.admit("a", has_token=True) is None
        adm.failed("a")
    refusal = adm.admit("a", has_token=True)
    assert refusal is not None
    assert (refusal.status, refusal.reason, refusal.retry_after) == (429, "auth_failures", 2)
    assert adm.admit("b", has_token=True) is None
    clock.now += 2
    assert adm.admit("a", has_token=True) is None


def test_idle_addresses_are_forgotten() -> None:
    """Per-address state goes once it is back to its initial state, so the table is bounded."""
    adm, clock, _ = admission()
    for n in range(100):
        adm.admit(f"10.0.0.{n}", has_token=True)
    adm.admit("held", has_token=False)
    adm.opened("held")
    clock.now += 3600
    adm.admit("new", has_token=True)
    assert adm.addresses == 2  # "held" (still pending) and "new"


# --- real servers -------------------------------------------------------------------------


def from_address(address: str, origin: str | None = None) -> dict[str, Any]:
    """Connect options that make the server see ``address`` (127.0.0.1 is a trusted proxy)."""
    headers = {"X-Forwarded-For": address}
    if origin:
        headers["Origin"] = origin
    return {"additional_headers": headers}


async def refused_status(h: Harness, query: str, address: str) -> tuple[int, str | None]:
    """The HTTP status and Retry-After of a handshake refused before the upgrade."""
    with pytest.raises(websockets.InvalidStatus) as info:
        async with h.connect(query, **from_address(address)):
            pass
    response = info.value.response
    return response.status_code, response.headers.get("Retry-After")


async def test_real_users_get_in_while_one_address_holds_its_allowance(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """One address opens its whole allowance of tokenless sockets (more are refused 429);
    every real user from other addresses still connects, on a server capped at 60."""
    allowance = 20
    h = await make_server(
        trusted_proxies=["127.0.0.1"],
        max_connections=60,
        max_pending_per_address=allowance,
        connection_burst_per_address=1000,
    )
    attacker = "203.0.113.66"
    with rss_within(32):  # twenty held sockets and sixty refusals: no real memory
        async with contextlib.AsyncExitStack() as held:
            refused = 0
            for _ in range(3 * allowance):  # the attacker tries for three times its allowance
                try:
                    await held.enter_async_context(h.connect(**from_address(attacker)))
                except websockets.InvalidStatus as exc:
                    assert exc.response.status_code == 429
                    refused += 1
            assert refused == 2 * allowance
            assert h.server.endpoint.admission.pending == allowance
            admitted = 0
            users = 40
            for n in range(users):
                async with h.connect(
                    f"?token={token(f'user{n}')}", **from_address(f"198.51.100.{n}")
                ) as ws:
                    if (await recv(ws))["type"] == "welcome":
                        admitted += 1
            print(
                f"admission: {admitted} of {users} real users admitted while one address held "
                f"{allowance} unauthenticated sockets and was refused {refused} more (429); "
                "max_connections 60"
            )
            assert admitted == users
            # The attacker's held sockets are still authenticating, and time out as usual.
            assert h.server.endpoint.admission.pending == allowance
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


async def test_failed_authentications_are_throttled(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An address sending bad tokens is refused 429 with Retry-After once past its burst;
    other addresses, and the same address's metrics, show it."""
    h = await make_server(
        trusted_proxies=["127.0.0.1"],
        auth_failure_burst_per_address=5,
        auth_failure_rate_per_address=0.01,
    )
    guesser = "203.0.113.7"
    for _ in range(5):
        async with h.connect("?token=not-a-jwt", **from_address(guesser)) as ws:
            assert (await closed_with(ws))[0] == 4002
    status, retry_after = await refused_status(h, "?token=not-a-jwt", guesser)
    assert status == 429
    assert retry_after is not None
    assert int(retry_after) >= 1
    # Even a valid token from that address waits: the address is throttled, not the token.
    assert (await refused_status(h, f"?token={token()}", guesser))[0] == 429
    async with h.connect(f"?token={token()}", **from_address("198.51.100.1")) as ws:
        assert (await recv(ws))["type"] == "welcome"
    metrics = h.server.node.metrics
    assert metrics.admission_refusals["auth_failures"] == 2
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


async def test_connection_rate_and_global_pending_cap(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Past its burst an address is refused 429; past the instance's cap of connections
    still authenticating, a tokenless handshake from anywhere is refused 503."""
    h = await make_server(
        trusted_proxies=["127.0.0.1"],
        connection_burst_per_address=3,
        connection_rate_per_address=0.01,
        max_pending_connections=4,
    )
    for _ in range(3):
        async with h.client("alice", **from_address("203.0.113.1")):
            pass
    assert (await refused_status(h, f"?token={token()}", "203.0.113.1"))[0] == 429
    async with contextlib.AsyncExitStack() as held:
        for n in range(4):
            await held.enter_async_context(h.connect(**from_address(f"192.0.2.{n}")))
        status, retry_after = await refused_status(h, "", "192.0.2.200")
        assert (status, retry_after) == (503, "1")
        async with h.client("bob", **from_address("198.51.100.9")):
            pass  # a real user with a token is not held back by the pending cap
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


async def test_pending_connections_do_not_count_toward_max_connections(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """max_connections counts authenticated connections; one opened by an auth message is
    checked against it when it authenticates (4009 when full)."""
    h = await make_server(trusted_proxies=["127.0.0.1"], max_connections=2)
    async with contextlib.AsyncExitStack() as held:
        waiting = await held.enter_async_context(h.connect(**from_address("192.0.2.1")))
        for user in ("u1", "u2"):
            await held.enter_async_context(h.client(user, **from_address("198.51.100.1")))
        await waiting.send(f'{{"type": "auth", "token": "{token("late")}"}}')
        assert (await closed_with(waiting))[0] == 4009
    await assert_still_serving(h)
    assert_no_error_logged(caplog)


def test_loopback_is_exempt_from_per_address_limits() -> None:
    """A local proxy (or test) at 127.0.0.1 is not limited as one client; the instance-wide
    cap of connections still authenticating counts it."""
    adm, _, _ = admission(
        connection_burst_per_address=1,
        connection_rate_per_address=0.01,
        max_pending_per_address=1,
        max_pending_connections=2,
    )
    for address in ("127.0.0.1", "::1"):
        assert adm.admit(address, has_token=False) is None
        adm.opened(address)
        adm.failed(address)
    refused = adm.admit("127.0.0.1", has_token=False)
    assert refused is not None
    assert refused.reason == "pending"
    assert adm.admit("127.0.0.1", has_token=True) is None
    adm.settled("::1")
    assert adm.pending == 1
    assert adm.addresses == 0
