"""The Store contract, run against every backend: SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from tidings.backends import open_store
from tidings.store import (
    Action,
    Created,
    Creation,
    IdempotencyConflict,
    NewNotification,
    Planned,
    Priority,
    Store,
    StoreError,
    failure_status,
)
from tidings.store.users import UserRecord

PG_URL = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
NOW = 1_800_000_000.0


def note(n: int = 0, **kw: object) -> NewNotification:
    fields: dict[str, object] = {
        "type": "booking_confirmation",
        "title": f"Booking {n}",
        "message": "Confirmed",
        "data": {"n": n},
    }
    fields.update(kw)
    return NewNotification(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh, migrated store; PostgreSQL gets a schema of its own per test."""
    if request.param == "sqlite":
        s = open_store(str(tmp_path / "inbox.db"))
        await s.open()
        yield s
        await s.close()
        return
    import asyncpg

    schema = "t_" + secrets.token_hex(6)
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    s = open_store(f"{PG_URL}?search_path={schema}")
    try:
        await s.open()
        yield s
        await s.close()
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def test_create_assigns_gapless_seq_per_user(store: Store) -> None:
    """Each user's notifications get seq 1, 2, 3 … independently of other users."""
    first = await store.create(note(1), ["alice", "bob"], now=NOW)
    second = await store.create(note(2), ["alice"], now=NOW)
    assert [(n.user_id, n.seq) for n in first.notifications] == [("alice", 1), ("bob", 1)]
    assert [(n.user_id, n.seq) for n in second.notifications] == [("alice", 2)]
    assert not first.replayed
    assert len({n.id for n in first.notifications + second.notifications}) == 3


async def test_concurrent_creates_keep_order_and_commit(store: Store) -> None:
    """Many concurrent creates (group commit) give gapless seqs and every row is readable."""
    results = await asyncio.gather(*(store.create(note(i), ["alice"], now=NOW) for i in range(200)))
    seqs = sorted(r.notifications[0].seq for r in results)
    assert seqs == list(range(1, 201))
    rows = await store.since("alice", 0, now=NOW, limit=1000)
    assert [n.seq for n in rows] == list(range(1, 201))


async def test_round_trip_of_every_field(store: Store) -> None:
    """What goes in comes out: priority, category, data, actions, expiry."""
    content = note(
        7,
        priority=Priority.CRITICAL,
        category="REMINDER",
        actions=(Action(id="a1", label="View", url="/x/1"),),
        expires_at=NOW + 60,
        data={"nested": [1, {"b": None}]},
    )
    created = (await store.create(content, ["alice"], now=NOW)).notifications[0]
    got = await store.get("alice", created.id)
    assert got == created
    assert got is not None
    assert got.actions[0].url == "/x/1"
    assert got.created_at == NOW


async def test_duplicate_recipients_get_one_row(store: Store) -> None:
    """A user named twice in one create gets one notification."""
    created = await store.create(note(), ["alice", "alice", "bob"], now=NOW)
    assert [n.user_id for n in created.notifications] == ["alice", "bob"]


async def test_idempotency_replay_and_conflict(store: Store) -> None:
    """The same key and request replays the first rows; a different request conflicts."""
    first = await store.create(
        note(1), ["alice", "bob"], now=NOW, idempotency_key="k1", fingerprint="f1"
    )
    again = await store.create(
        note(1), ["alice", "bob"], now=NOW + 5, idempotency_key="k1", fingerprint="f1"
    )
    assert again.replayed
    assert [n.id for n in again.notifications] == [n.id for n in first.notifications]
    with pytest.raises(IdempotencyConflict):
        await store.create(note(2), ["alice"], now=NOW, idempotency_key="k1", fingerprint="f2")
    assert len(await store.since("alice", 0, now=NOW)) == 1


async def test_concurrent_same_key_creates_once(store: Store) -> None:
    """Racing retries with one key create one row and all return its id."""
    results = await asyncio.gather(
        *(
            store.create(note(), ["alice"], now=NOW, idempotency_key="race", fingerprint="f")
            for _ in range(20)
        )
    )
    assert len({r.notifications[0].id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert len(await store.since("alice", 0, now=NOW)) == 1


async def test_a_failing_request_fails_alone(store: Store) -> None:
    """In one group commit, a conflicting request fails and the others commit."""
    await store.create(note(0), ["alice"], now=NOW, idempotency_key="k", fingerprint="a")
    outcomes = await asyncio.gather(
        store.create(note(1), ["alice"], now=NOW),
        store.create(note(2), ["alice"], now=NOW, idempotency_key="k", fingerprint="b"),
        store.create(note(3), ["alice"], now=NOW),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], IdempotencyConflict)
    assert [n.seq for n in await store.since("alice", 0, now=NOW)] == [1, 2, 3]


async def test_isolation_between_users(store: Store) -> None:
    """Another user's id acts like a missing one for every read and change."""
    nid = (await store.create(note(), ["alice"], now=NOW)).notifications[0].id
    assert await store.get("bob", nid) is None
    assert await store.mark_read("bob", [nid], now=NOW) == []
    assert await store.ack("bob", [nid], now=NOW) == []
    assert await store.archive("bob", [nid], now=NOW) == []
    assert await store.delete("bob", [nid]) == []
    assert await store.page("bob") == []
    got = await store.get("alice", nid)
    assert got is not None
    assert got.read_at is None
    assert got.archived_at is None


async def test_read_state_and_unread_count(store: Store) -> None:
    """mark_read returns only what changed; all-read covers every unread one."""
    ids = [n.id for n in (await store.create(note(), ["alice"], now=NOW)).notifications]
    ids += [(await store.create(note(i), ["alice"], now=NOW)).notifications[0].id for i in range(3)]
    assert await store.unread_count("alice", now=NOW) == 4
    assert await store.mark_read("alice", ids[:2], now=NOW + 1) == ids[:2]
    assert await store.mark_read("alice", ids[:2], now=NOW + 2) == []
    assert sorted(await store.mark_read("alice", None, now=NOW + 3)) == sorted(ids[2:])
    assert await store.unread_count("alice", now=NOW) == 0
    got = await store.get("alice", ids[0])
    assert got is not None
    assert got.read_at == NOW + 1


async def test_delivery_and_ack(store: Store) -> None:
    """Deliveries count attempts; acked rows leave unacked; delivered_at keeps the first."""
    a, b = [(await store.create(note(i), ["alice"], now=NOW)).notifications[0].id for i in range(2)]
    await store.mark_delivered({"alice": [a, b]}, now=NOW + 1)
    await store.mark_delivered({"alice": [a]}, now=NOW + 2)
    assert await store.ack("alice", [a], now=NOW + 3) == [a]
    assert await store.ack("alice", [a], now=NOW + 4) == []
    assert [n.id for n in await store.unacked("alice", now=NOW)] == [b]
    got = await store.get("alice", a)
    assert got is not None
    assert (got.attempts, got.delivered_at, got.acked_at) == (2, NOW + 1, NOW + 3)


async def test_backlog_counts_live_unacked_and_undelivered(store: Store) -> None:
    """backlog: live rows not acked, and live rows never delivered, over every user."""
    assert await store.backlog(now=NOW) == (0, 0)
    ids = [
        (await store.create(note(i), [u], now=NOW)).notifications[0].id
        for i, u in enumerate(["alice", "alice", "bob"])
    ]
    await store.create(note(9, expires_at=NOW + 10), ["bob"], now=NOW)
    await store.mark_delivered({"alice": ids[:2]}, now=NOW + 1)
    await store.ack("alice", [ids[0]], now=NOW + 2)
    assert await store.backlog(now=NOW + 3) == (3, 2)
    assert await store.backlog(now=NOW + 11) == (2, 1)  # the expired one no longer counts


async def test_expired_and_archived_are_not_live(store: Store) -> None:
    """Expired rows are not resumed, redelivered or counted; archived ones leave the page."""
    live = (await store.create(note(1), ["alice"], now=NOW)).notifications[0].id
    await store.create(note(2, expires_at=NOW + 10), ["alice"], now=NOW)
    arch = (await store.create(note(3), ["alice"], now=NOW)).notifications[0].id
    assert await store.archive("alice", [arch], now=NOW) == [arch]
    later = NOW + 11
    assert [n.id for n in await store.since("alice", 0, now=later)] == [live]
    assert [n.id for n in await store.unacked("alice", now=later)] == [live]
    assert await store.unread_count("alice", now=later) == 1
    assert len(await store.page("alice")) == 2
    assert len(await store.page("alice", include_archived=True)) == 3


async def test_archived_page_and_unarchive(store: Store) -> None:
    """archived_only pages the archived rows, newest first; unarchive makes them live again."""
    ids = [(await store.create(note(i), ["alice"], now=NOW)).notifications[0].id for i in range(4)]
    other = (await store.create(note(9), ["bob"], now=NOW)).notifications[0].id
    assert await store.archive("alice", ids[:3], now=NOW + 1) == ids[:3]
    await store.archive("bob", [other], now=NOW + 1)
    first = await store.page("alice", archived_only=True, limit=2)
    assert [n.id for n in first] == [ids[2], ids[1]]
    assert all(n.archived_at == NOW + 1 for n in first)
    rest = await store.page("alice", archived_only=True, before_seq=first[-1].seq, limit=2)
    assert [n.id for n in rest] == [ids[0]]
    assert [n.id for n in await store.page("alice")] == [ids[3]]
    await store.mark_read("alice", [ids[0]], now=NOW + 2)
    assert await store.page("alice", archived_only=True, unread_only=True) == [
        n for n in await store.page("alice", archived_only=True) if n.id != ids[0]
    ]
    # Another user's id, a live one and an unknown one change nothing.
    assert await store.unarchive("alice", [other, ids[3], "nope"]) == []
    assert await store.unarchive("alice", [ids[2], ids[0]]) == [ids[0], ids[2]]
    assert await store.unarchive("alice", [ids[0]]) == []
    assert await store.unarchive("alice", []) == []
    assert [n.id for n in await store.page("alice", archived_only=True)] == [ids[1]]
    assert [n.id for n in await store.since("alice", 0, now=NOW + 3)] == [ids[0], ids[2], ids[3]]
    assert (await store.get("alice", ids[0])).read_at == NOW + 2  # type: ignore[union-attr]
    assert await store.unread_count("alice", now=NOW + 3) == 2


async def test_page_is_newest_first_with_cursor(store: Store) -> None:
    """page walks backwards by seq; unread_only filters."""
    for i in range(5):
        await store.create(note(i), ["alice"], now=NOW)
    first = await store.page("alice", limit=2)
    assert [n.seq for n in first] == [5, 4]
    rest = await store.page("alice", before_seq=first[-1].seq, limit=10)
    assert [n.seq for n in rest] == [3, 2, 1]
    await store.mark_read("alice", [rest[0].id], now=NOW)
    assert [n.seq for n in await store.page("alice", unread_only=True)] == [5, 4, 2, 1]


async def test_delete_removes_for_good(store: Store) -> None:
    """Deleted rows are gone everywhere, and seq never reuses their numbers."""
    nid = (await store.create(note(), ["alice"], now=NOW)).notifications[0].id
    assert await store.delete("alice", [nid]) == [nid]
    assert await store.get("alice", nid) is None
    assert (await store.create(note(), ["alice"], now=NOW)).notifications[0].seq == 2


async def test_roles_and_known_users(store: Store) -> None:
    """Roles of the latest token replace earlier ones; all_users lists users seen."""
    await store.remember_user("alice", ["LIBRARIAN", "STAFF"], now=NOW)
    await store.remember_user("bob", ["STAFF"], now=NOW)
    await store.create(note(), ["carol"], now=NOW)  # has an inbox but never connected
    assert await store.users_with_role("STAFF") == ["alice", "bob"]
    await store.remember_user("alice", ["STUDENT"], now=NOW + 1)
    assert await store.users_with_role("STAFF") == ["bob"]
    assert await store.users_with_role("LIBRARIAN") == []
    assert await store.all_users() == ["alice", "bob"]


async def test_remember_user_writes_only_changes(store: Store) -> None:
    """A reconnect storm of known users commits nothing; new users and changed roles are
    committed, in shared transactions on SQLite."""
    users = [f"u{i}" for i in range(100)]
    await asyncio.gather(*(store.remember_user(u, ["STAFF"], now=NOW) for u in users))
    first = store.user_commits  # type: ignore[attr-defined]
    assert 1 <= first <= 100
    assert await store.users_with_role("STAFF") == sorted(users)
    # Reconnects with the same roles, in any order: no transaction at all.
    await asyncio.gather(*(store.remember_user(u, ["STAFF", "STAFF"], now=NOW + 1) for u in users))
    assert store.user_commits == first  # type: ignore[attr-defined]
    await store.remember_user("u7", ["STUDENT"], now=NOW + 2)
    assert store.user_commits == first + 1  # type: ignore[attr-defined]
    assert await store.users_with_role("STUDENT") == ["u7"]
    assert "u7" not in await store.users_with_role("STAFF")


async def test_remember_user_after_restart(tmp_path: Path) -> None:
    """A restarted SQLite store knows its recorded users from the file: reconnects after a
    deploy commit nothing, while a user whose roles changed is rewritten."""
    path = str(tmp_path / "inbox.db")
    s = open_store(path)
    await s.open()
    await asyncio.gather(*(s.remember_user(f"u{i}", ["A", "B"], now=NOW) for i in range(50)))
    assert s.user_commits < 50  # type: ignore[attr-defined]
    await s.close()
    s = open_store(path)
    await s.open()
    try:
        await asyncio.gather(*(s.remember_user(f"u{i}", ["B", "A"], now=NOW) for i in range(50)))
        assert s.user_commits == 0  # type: ignore[attr-defined]
        await s.remember_user("u3", ["A"], now=NOW)
        assert s.user_commits == 1  # type: ignore[attr-defined]
        assert await s.users_with_role("B") == sorted(f"u{i}" for i in range(50) if i != 3)
    finally:
        await s.close()


async def test_purge_in_bounded_batches(store: Store) -> None:
    """Retention deletes old and expired rows at most ``limit`` at a time."""
    for i in range(5):
        await store.create(
            note(i), ["alice"], now=NOW - 1000, idempotency_key=f"old{i}", fingerprint="f"
        )
    await store.create(note(9, expires_at=NOW - 1), ["alice"], now=NOW)
    keep = (await store.create(note(10), ["alice"], now=NOW)).notifications[0].id
    assert await store.purge(created_before=NOW - 500, now=NOW, limit=4) == 4
    assert await store.purge(created_before=NOW - 500, now=NOW, limit=4) == 2
    assert await store.purge(created_before=NOW - 500, now=NOW, limit=4) == 0
    assert [n.id for n in await store.page("alice", include_archived=True)] == [keep]


async def test_unread(store: Store) -> None:
    """unread lists live unread rows after a seq, oldest first."""
    a, b, c = [
        (await store.create(note(i), ["alice"], now=NOW)).notifications[0].id for i in range(3)
    ]
    await store.mark_read("alice", [b], now=NOW)
    assert [n.id for n in await store.unread("alice", now=NOW)] == [a, c]
    assert [n.id for n in await store.unread("alice", now=NOW, after_seq=1)] == [c]


async def test_preferences_and_in_app_switches(store: Store) -> None:
    """A category's own switch wins over '*'; no switch means in-app on."""
    await store.set_preferences("alice", {"*": False, "SECURITY": True})
    await store.set_preferences("bob", {"MARKETING": False})
    assert await store.preferences("alice") == {"*": False, "SECURITY": True}
    users = ["alice", "bob", "carol"]
    assert await store.in_app_disabled(users, "MARKETING") == {"alice", "bob"}
    assert await store.in_app_disabled(users, "SECURITY") == set()
    assert await store.in_app_disabled(users, None) == {"alice"}
    await store.set_preferences("alice", {})
    assert await store.preferences("alice") == {}
    assert await store.in_app_disabled(users, "MARKETING") == {"bob"}


async def test_webhook_claims_are_exclusive(store: Store) -> None:
    """Concurrent claims with a lease split the due rows; a lapsed lease frees them."""
    ids = {
        (await store.create(note(i), ["alice"], now=NOW - 100)).notifications[0].id
        for i in range(6)
    }
    claims = await asyncio.gather(
        *(store.webhook_due(created_before=NOW - 50, now=NOW, limit=3, lease=60) for _ in range(3))
    )
    claimed = [n.id for batch in claims for n, _ in batch]
    assert sorted(claimed) == sorted(ids)  # every row once, none twice
    assert await store.webhook_due(created_before=NOW - 50, now=NOW + 59, limit=10) == []
    again = await store.webhook_due(created_before=NOW - 50, now=NOW + 61, limit=10)
    assert {n.id for n, _ in again} == ids


async def test_webhook_queue(store: Store) -> None:
    """Due rows are unacked, old enough and not yet sent; results move them along."""
    old = (await store.create(note(1), ["alice"], now=NOW - 100)).notifications[0].id
    acked = (await store.create(note(2), ["alice"], now=NOW - 100)).notifications[0].id
    await store.create(note(3), ["alice"], now=NOW)  # too recent
    await store.ack("alice", [acked], now=NOW)
    due = await store.webhook_due(created_before=NOW - 50, now=NOW, limit=10)
    assert [(n.id, attempts) for n, attempts in due] == [(old, 0)]
    await store.webhook_result("alice", old, sent=False, next_at=NOW + 30)
    assert await store.webhook_due(created_before=NOW - 50, now=NOW, limit=10) == []
    due = await store.webhook_due(created_before=NOW - 50, now=NOW + 31, limit=10)
    assert [(n.id, attempts) for n, attempts in due] == [(old, 1)]
    await store.webhook_result("alice", old, sent=True, next_at=None)
    assert await store.webhook_due(created_before=NOW - 1, now=NOW + 1000, limit=10) == []


async def test_group_commit_batches(store: Store) -> None:
    """A burst of concurrent creates shares transactions instead of one commit each."""
    before = store.create_commits  # type: ignore[attr-defined]
    await asyncio.gather(*(store.create(note(i), [f"u{i % 10}"], now=NOW) for i in range(300)))
    commits = store.create_commits - before  # type: ignore[attr-defined]
    assert 1 <= commits < 300 / 5, commits


async def test_create_many_is_each_create_in_one_commit(store: Store) -> None:
    """create_many: one result per creation in order, seqs in that order, a reused key
    failing alone (the others commit), a replay answered as such; one transaction."""
    await store.create(note(0), ["alice"], now=NOW, idempotency_key="k0", fingerprint="f0")
    commits = store.create_commits  # type: ignore[attr-defined]
    out = await store.create_many(
        [
            Creation(note(1), ["alice", "bob"], NOW),
            Creation(note(2), ["alice"], NOW, "k0", "other"),  # the key, another request
            Creation(note(3), ["alice"], NOW, "k0", "f0"),  # the key, the same request
            Creation(note(4), ["bob", "bob"], NOW, "k4", "f4"),
            Creation(note(5), ["alice"], NOW),
        ]
    )
    assert store.create_commits == commits + 1  # type: ignore[attr-defined]
    first, conflict, replay, keyed, last = out
    assert isinstance(conflict, IdempotencyConflict)
    assert isinstance(first, Created)
    assert isinstance(replay, Created)
    assert isinstance(keyed, Created)
    assert isinstance(last, Created)
    assert [(n.user_id, n.seq) for n in first.notifications] == [("alice", 2), ("bob", 1)]
    assert replay.replayed
    assert [n.seq for n in replay.notifications] == [1]
    assert [(n.user_id, n.seq) for n in keyed.notifications] == [("bob", 2)]
    assert [(n.user_id, n.seq) for n in last.notifications] == [("alice", 3)]
    alice = await store.since("alice", 0, now=NOW)
    assert [n.title for n in alice] == ["Booking 0", "Booking 1", "Booking 5"]


async def test_delivery_marks_ride_in_the_group_commit(store: Store) -> None:
    """Marks waiting while creates are written go in their transaction, each call with
    its own time and in call order; alone, they get a transaction of their own."""
    a, b = [(await store.create(note(i), ["alice"], now=NOW)).notifications[0].id for i in range(2)]
    alone = store.mark_commits  # type: ignore[attr-defined]
    commits = store.create_commits  # type: ignore[attr-defined]
    created = await asyncio.gather(
        *(store.create(note(i), [f"u{i % 3}"], now=NOW) for i in range(20)),
        store.mark_delivered({"alice": [a]}, now=NOW + 1),
        store.mark_delivered({"alice": [a, b]}, now=NOW + 2),
    )
    assert all(isinstance(c, Created) for c in created[:20])
    assert store.mark_commits == alone  # type: ignore[attr-defined]
    assert store.create_commits == commits + 1  # type: ignore[attr-defined]
    got_a, got_b = await store.get("alice", a), await store.get("alice", b)
    assert got_a is not None
    assert got_b is not None
    assert (got_a.attempts, got_a.delivered_at) == (2, NOW + 1)
    assert (got_b.attempts, got_b.delivered_at) == (1, NOW + 2)
    await store.mark_delivered({"alice": [b]}, now=NOW + 3)
    assert store.mark_commits == alone + 1  # type: ignore[attr-defined]
    got_b = await store.get("alice", b)
    assert got_b is not None
    assert (got_b.attempts, got_b.delivered_at) == (2, NOW + 2)


async def test_a_failing_mark_fails_no_create(store: Store) -> None:
    """Marks the database refuses fail their callers (a store error), not the creates
    whose transaction carried them: those are committed."""
    (a,) = (await store.create(note(0), ["alice"], now=NOW)).notifications
    outcomes = await asyncio.gather(
        store.create(note(1), ["alice"], now=NOW),
        store.mark_delivered({"alice": [object()]}, now=NOW + 1),  # type: ignore[list-item]
        return_exceptions=True,
    )
    created, failed = outcomes
    assert isinstance(created, Created)
    assert isinstance(failed, StoreError)
    assert failure_status(failed) == 503
    (n,) = created.notifications
    assert await store.get("alice", n.id) is not None
    got = await store.get("alice", a.id)
    assert got is not None
    assert got.attempts == 0


async def test_create_skips_in_app_off(store: Store) -> None:
    """Recipients who switched the category off get no row and are named in skipped."""
    await store.set_preferences("alice", {"MARKETING": False})
    created = await store.create(note(category="MARKETING"), ["alice", "bob"], now=NOW)
    assert [n.user_id for n in created.notifications] == ["bob"]
    assert created.skipped == ("alice",)
    assert await store.page("alice") == []


@pytest.mark.parametrize("key", [None, "k1"], ids=["plain", "keyed"])
async def test_in_app_off_with_escalation_keeps_a_row_for_the_other_channels(
    store: Store, key: str | None
) -> None:
    """In-app off with steps planned: the row is stored (in_app False, named in in_app_off,
    its deliveries planned) but never live: not paged, resumed, redelivered or counted;
    it takes its seq, so the next one follows it."""
    await store.set_preferences("alice", {"MARKETING": False})
    steps = (Planned("email", 60.0),)
    content = note(1, category="MARKETING", escalation=steps)
    created = await store.create(
        content, ["alice", "bob"], now=NOW, idempotency_key=key, fingerprint="f"
    )
    assert [(n.user_id, n.in_app) for n in created.notifications] == [
        ("alice", False),
        ("bob", True),
    ]
    assert (created.skipped, created.in_app_off) == ((), ("alice",))
    muted = created.notifications[0]
    assert await store.get("alice", muted.id) == muted
    assert await store.page("alice") == []
    assert await store.page("alice", unread_only=True) == []
    assert await store.since("alice", 0, now=NOW) == []
    assert await store.unacked("alice", now=NOW) == []
    assert await store.unread("alice", now=NOW) == []
    assert await store.unread_count("alice", now=NOW) == 0
    assert await store.backlog(now=NOW) == (1, 1)  # bob's only
    due = await store.claim_deliveries(now=NOW + 60, limit=10, lease=30)
    assert sorted((d.user_id, n is not None and n.in_app) for d, n in due) == [
        ("alice", False),
        ("bob", True),
    ]
    later = (await store.create(note(2), ["alice"], now=NOW)).notifications[0]
    assert (later.seq, later.in_app) == (2, True)
    assert [n.id for n in await store.page("alice", include_archived=True)] == [
        later.id,
        muted.id,
    ]
    # Without steps, in-app off stores nothing, as before.
    plain = await store.create(note(3, category="MARKETING"), ["alice"], now=NOW)
    assert (plain.notifications, plain.skipped, plain.in_app_off) == ((), ("alice",), ())


@pytest.mark.parametrize("key", [None, "k1"], ids=["plain", "keyed"])
async def test_create_stores_each_recipients_own_text(store: Store, key: str | None) -> None:
    """``texts`` (rendered per recipient) replaces the title and message of those it names;
    the others get the content's own."""
    content = msgspec.structs.replace(note(1), texts={"alice": ("Réservation 1", "Confirmée")})
    created = await store.create(
        content, ["alice", "bob"], now=NOW, idempotency_key=key, fingerprint="f"
    )
    assert [(n.user_id, n.title, n.message) for n in created.notifications] == [
        ("alice", "Réservation 1", "Confirmée"),
        ("bob", "Booking 1", "Confirmed"),
    ]
    for n in created.notifications:
        assert await store.get(n.user_id, n.id) == n


async def test_create_for_role_keeps_in_app_off_rows_with_escalation(store: Store) -> None:
    """As create: with steps planned, a role's users who switched in-app off get a row
    that is not live (in_app False, named in in_app_off), and their seq is taken."""
    await store.remember_user("alice", ["STAFF"], now=NOW)
    await store.remember_user("bob", ["STAFF"], now=NOW)
    await store.set_preferences("alice", {"MARKETING": False})
    steps = (Planned("email", 60.0),)
    staff = await store.create_for_role(
        note(1, category="MARKETING", escalation=steps), "STAFF", now=NOW
    )
    assert [(n.user_id, n.in_app) for n in staff.notifications] == [
        ("alice", False),
        ("bob", True),
    ]
    assert (staff.skipped, staff.in_app_off) == ((), ("alice",))
    muted = staff.notifications[0]
    assert await store.get("alice", muted.id) == muted
    assert await store.page("alice") == []
    assert await store.unread_count("alice", now=NOW) == 0
    later = (await store.create(note(2), ["alice"], now=NOW)).notifications[0]
    assert later.seq == 2


async def test_mixed_burst_keeps_every_rule(store: Store) -> None:
    """Keyed, unkeyed, replayed and preference-skipped creates in one burst: each gets its
    own outcome, and every user's seqs stay gapless."""
    await store.set_preferences("carol", {"MARKETING": False})
    await store.create(note(0), ["alice"], now=NOW, idempotency_key="old", fingerprint="f")
    calls = []
    for i in range(60):
        users = ["alice", "bob", "carol"][: 1 + i % 3]
        category = "MARKETING" if i % 2 else None
        key = f"k{i % 7}" if i % 4 == 0 else None
        calls.append(
            store.create(
                note(i, category=category), users, now=NOW, idempotency_key=key, fingerprint="f"
            )
        )
    calls.append(store.create(note(), ["bob"], now=NOW, idempotency_key="old", fingerprint="f"))
    results = await asyncio.gather(*calls)
    assert results[-1].replayed
    for i, created in enumerate(results[:60]):
        users = ["alice", "bob", "carol"][: 1 + i % 3]
        if created.replayed:
            continue
        off = ("carol",) if i % 2 and "carol" in users else ()
        assert created.skipped == off
        assert [n.user_id for n in created.notifications] == [u for u in users if u not in off]
    for user in ("alice", "bob", "carol"):
        rows = await store.page(user, limit=500)
        assert sorted(n.seq for n in rows) == list(range(1, len(rows) + 1))
        for n in rows:
            if n.user_id == "carol":
                assert n.category != "MARKETING"


async def test_a_value_the_database_rejects_fails_alone(store: Store) -> None:
    """However a store treats a NUL character, the requests beside it commit."""
    outcomes = await asyncio.gather(
        *(store.create(note(i), ["alice", "bob"], now=NOW) for i in range(5)),
        store.create(note(5, title="bad\x00title"), ["alice"], now=NOW),
        *(store.create(note(i), ["bob"], now=NOW) for i in range(6, 10)),
        return_exceptions=True,
    )
    assert all(not isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 5)
    alice = await store.since("alice", 0, now=NOW)
    bob = await store.since("bob", 0, now=NOW)
    assert [n.seq for n in alice] == list(range(1, len(alice) + 1))
    assert len(alice) == 5 + (not isinstance(outcomes[5], BaseException))
    assert [n.seq for n in bob] == list(range(1, 10))


async def test_create_for_role_and_everyone(store: Store) -> None:
    """create_for_role reaches the role's users (token or directory roles) or everyone,
    in id order, one row each with the next seq, skipping in-app off, like create."""
    await store.remember_user("bob", ["STAFF"], now=NOW)
    await store.remember_user("alice", ["STAFF"], now=NOW)
    await store.remember_user("cat", ["STUDENT"], now=NOW)
    await store.put_user(UserRecord(id="dan", roles=("STAFF",)), now=NOW)
    await store.create(note(0), ["bob"], now=NOW)
    await store.set_preferences("alice", {"MARKETING": False})
    staff = await store.create_for_role(note(1, category="MARKETING"), "STAFF", now=NOW)
    assert [(n.user_id, n.seq) for n in staff.notifications] == [("bob", 2), ("dan", 1)]
    assert staff.skipped == ("alice",)
    assert len({n.id for n in staff.notifications}) == 2
    for n in staff.notifications:  # the ids returned are the rows' ids
        assert await store.get(n.user_id, n.id) == n
    everyone = await store.create_for_role(note(2), None, now=NOW)
    assert [(n.user_id, n.seq) for n in everyone.notifications] == [
        ("alice", 1),
        ("bob", 3),
        ("cat", 1),
        ("dan", 2),
    ]
    got = await store.get("dan", everyone.notifications[3].id)
    assert got is not None
    assert (got.title, got.data, got.seq) == (everyone.notifications[3].title, {"n": 2}, 2)
    assert await store.unread_count("bob", now=NOW) == 3
    assert await store.mark_read("bob", None, now=NOW) == [
        n.id for n in await store.since("bob", 0, now=NOW)
    ]
    assert await store.create_for_role(note(3), "NOBODY", now=NOW) == Created((), False)


async def test_create_for_role_idempotency(store: Store) -> None:
    """A key replays a fan-out's rows, and refuses another request."""
    await store.remember_user("alice", ["STAFF"], now=NOW)
    first = await store.create_for_role(
        note(1), "STAFF", now=NOW, idempotency_key="fan-1", fingerprint="a"
    )
    again = await store.create_for_role(
        note(1), "STAFF", now=NOW, idempotency_key="fan-1", fingerprint="a"
    )
    assert again.replayed
    assert [n.id for n in again.notifications] == [n.id for n in first.notifications]
    with pytest.raises(IdempotencyConflict):
        await store.create_for_role(
            note(2), "STAFF", now=NOW, idempotency_key="fan-1", fingerprint="b"
        )
    assert len(await store.page("alice")) == 1


async def test_unread_counts_asked_together_are_each_exact(store: Store) -> None:
    """Counts asked for at once (connections opening together) are each their user's own:
    read, archived and expired rows left out, users with none at 0, each ``now`` kept."""
    users = [f"u{i}" for i in range(40)]
    expected = [0] * 40
    expiring = set()
    for i, user in enumerate(users[:20]):
        ids = [(await store.create(note(k), [user], now=NOW)).notifications[0].id for k in range(3)]
        expected[i] = 3
        if i % 2:
            await store.mark_read(user, ids[:1], now=NOW)
            expected[i] -= 1
        if i % 3 == 0:
            await store.archive(user, ids[1:2], now=NOW)
            expected[i] -= 1
        if i % 5 == 0:
            await store.create(note(9, expires_at=NOW + 10), [user], now=NOW)
            expected[i] += 1
            expiring.add(i)
    asks = users + users[:10]  # the same user twice in a burst (two tabs)
    got = await asyncio.gather(*(store.unread_count(u, now=NOW) for u in asks))
    assert got == expected + expected[:10]
    later = await asyncio.gather(
        *(store.unread_count(u, now=NOW + 11 if i % 2 else NOW) for i, u in enumerate(users))
    )
    # The expiring one counts only for a count asked for before it expired.
    assert later == [e - (i in expiring and i % 2 == 1) for i, e in enumerate(expected)]


async def test_a_burst_of_counts_is_read_in_a_batch_or_two(store: Store) -> None:
    """A thousand counts asked at once: a batch or two, not a thousand reads; users with
    notifications among users without get their own counts."""
    for i in range(0, 1000, 7):
        for _ in range(i % 3 + 1):
            await store.create(note(), [f"u{i}"], now=NOW)
    got = await asyncio.gather(*(store.unread_count(f"u{i}", now=NOW) for i in range(1000)))
    assert got == [(i % 3 + 1) if i % 7 == 0 else 0 for i in range(1000)]
    assert store._unread.batches <= 2  # type: ignore[attr-defined]


async def test_a_count_asked_after_a_commit_is_never_an_earlier_batchs(store: Store) -> None:
    """A count asked for after a notification committed counts it, even while a batch
    that read before the commit is still on its way back: it never shares that answer."""
    batcher = store._unread  # type: ignore[attr-defined]
    read = batcher._read
    queried, release = asyncio.Event(), asyncio.Event()

    async def read_then_wait(asks: list[tuple[str, float]]) -> list[int]:
        counts: list[int] = await read(asks)
        if not release.is_set():  # only the first batch is held up, after its query
            queried.set()
            await release.wait()
        return counts

    batcher._read = read_then_wait
    before = asyncio.create_task(store.unread_count("bob", now=NOW))
    async with asyncio.timeout(10):
        await queried.wait()  # the first batch has read
    await store.create(note(), ["bob"], now=NOW)
    after = asyncio.create_task(store.unread_count("bob", now=NOW))
    await asyncio.sleep(0)  # asked for while the first batch is still out
    release.set()
    assert await before == 0  # read before the commit: right when it was read
    assert await after == 1
    assert batcher.batches == 2


async def test_a_failed_batch_fails_each_count(store: Store) -> None:
    """The batch's read failing (a stalled database) fails every count in it, as each
    alone would have; the next batch reads again."""
    batcher = store._unread  # type: ignore[attr-defined]
    read = batcher._read

    async def unavailable(asks: list[tuple[str, float]]) -> list[int]:
        raise StoreError("the database did not answer within 5 s")

    batcher._read = unavailable
    got = await asyncio.gather(
        *(store.unread_count(u, now=NOW) for u in ("a", "b", "c")), return_exceptions=True
    )
    assert all(isinstance(e, StoreError) for e in got)
    batcher._read = read
    await store.create(note(), ["a"], now=NOW)
    assert await store.unread_count("a", now=NOW) == 1


async def test_sqlite_set_wise_failure_reruns_one_by_one_with_the_marks(tmp_path: Path) -> None:
    """When the set-wise insert fails, the transaction starts over: the marks it carried
    are written once, the request the database refuses fails alone, the others commit
    with gapless seqs."""
    s = open_store(str(tmp_path / "inbox.db"))
    await s.open()
    try:
        (first,) = (await s.create(note(0), ["alice"], now=NOW)).notifications
        await s._write(  # type: ignore[attr-defined]
            lambda c: c.execute(
                "CREATE TRIGGER boom BEFORE INSERT ON notifications WHEN NEW.title = 'boom' "
                "BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        )
        outcomes = await asyncio.gather(
            s.create(note(1), ["alice"], now=NOW),
            s.create(note(2, title="boom"), ["alice"], now=NOW),
            s.create(note(3), ["alice", "bob"], now=NOW),
            s.mark_delivered({"alice": [first.id]}, now=NOW + 1),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], Created)
        assert isinstance(outcomes[1], Exception)
        assert not isinstance(outcomes[1], Created)
        assert isinstance(outcomes[2], Created)
        assert outcomes[3] is None
        alice = await s.since("alice", 0, now=NOW)
        assert [n.title for n in alice] == ["Booking 0", "Booking 1", "Booking 3"]
        assert [n.seq for n in alice] == [1, 2, 3]
        got = await s.get("alice", first.id)
        assert got is not None
        assert (got.attempts, got.delivered_at) == (1, NOW + 1)
    finally:
        await s.close()


async def test_sqlite_call_past_its_deadline_fails_and_is_never_run(tmp_path: Path) -> None:
    """A call queued behind a stuck one fails with a StoreError at its deadline, and
    when the writer comes free it is skipped, not run late."""
    import threading

    from tidings.store.sqlite import SQLiteStore

    s = SQLiteStore(str(tmp_path / "inbox.db"), timeout=0.2)
    await s.open()
    stuck = threading.Event()
    try:
        blocker = asyncio.ensure_future(s._write(lambda c: stuck.wait(5)))
        with pytest.raises(StoreError, match="did not answer"):
            await s.create(note(1), ["alice"], now=NOW)
        stuck.set()
        with pytest.raises(StoreError):
            await blocker  # it ran past its own deadline too
        assert (await s.create(note(2), ["alice"], now=NOW)).notifications[0].seq == 1
        assert [n.title for n in await s.since("alice", 0, now=NOW)] == ["Booking 2"]
    finally:
        stuck.set()
        await s.close()


async def test_a_create_returns_the_rows_it_stored(store: Store) -> None:
    """What a create returns is what the store holds, field by field: for one recipient
    (built from its row) and several (one built, then copied per recipient), together in
    one group commit, every priority among them."""
    priorities = list(Priority)
    contents = [
        note(i, priority=p, category="c", actions=(Action(id="a", label="A"),))
        for i, p in enumerate(priorities)
    ]
    created = await asyncio.gather(
        *(store.create(c, ["solo"], now=NOW) for c in contents),
        store.create(note(9, data=None), ["x", "y", "x"], now=NOW + 1),
    )
    returned = [n for c in created for n in c.notifications]
    assert [n.priority for n in returned[: len(priorities)]] == priorities
    assert [(n.user_id, n.seq) for n in returned[len(priorities) :]] == [("x", 1), ("y", 1)]
    for n in returned:
        assert await store.get(n.user_id, n.id) == n
