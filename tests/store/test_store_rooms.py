"""The RoomStore contract, run against every backend: SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from tidings.store import Store

from . import test_store_contract as contract

NOW = contract.NOW
store = contract.store  # the contract suite's fixture: SQLite, and a PostgreSQL schema per test


async def room(store: Store, room_id: str = "r1", *members: str) -> None:
    assert await store.create_room(room_id, name="Room", ws_post=True, now=NOW)
    for user in members:
        await store.set_member(room_id, user, "member", now=NOW)


async def test_create_get_delete_room(store: Store) -> None:
    """A room is created once, read back, and deleted with its members and messages."""
    assert await store.create_room("r1", name="General", ws_post=False, now=NOW)
    assert not await store.create_room("r1", name="Other", ws_post=True, now=NOW)
    got = await store.get_room("r1")
    assert got is not None
    assert (got.name, got.ws_post, got.last_seq, got.created_at) == ("General", False, 0, NOW)
    await store.set_member("r1", "alice", "member", now=NOW)
    assert await store.add_message("r1", "alice", "hi", now=NOW) is not None
    assert await store.delete_room("r1")
    assert not await store.delete_room("r1")
    assert await store.get_room("r1") is None
    assert await store.get_member("r1", "alice") is None
    assert await store.rooms_of("alice") == []
    # A room created again under the same id starts empty.
    await room(store, "r1")
    assert await store.messages("r1") == []


async def test_membership_roles(store: Store) -> None:
    """set_member adds, then changes the role; remove_member removes once."""
    await room(store)
    assert await store.set_member("r1", "alice", "member", now=NOW)
    assert not await store.set_member("r1", "alice", "moderator", now=NOW + 1)
    member = await store.get_member("r1", "alice")
    assert member is not None
    assert (member.role, member.joined_at, member.last_read_seq) == ("moderator", NOW, 0)
    await store.set_member("r1", "bob", "member", now=NOW)
    assert [m.user_id for m in await store.members("r1")] == ["alice", "bob"]
    assert [m.room_id for m in await store.rooms_of("bob")] == ["r1"]
    assert await store.remove_member("r1", "bob")
    assert not await store.remove_member("r1", "bob")
    assert await store.get_member("r1", "bob") is None


async def test_messages_get_gapless_seq_per_room(store: Store) -> None:
    """Concurrent posts get seq 1..n per room, independently of other rooms."""
    await room(store, "r1")
    await room(store, "r2")
    posted = await asyncio.gather(
        *(store.add_message("r1" if i % 2 else "r2", "alice", f"m{i}", now=NOW) for i in range(60))
    )
    seqs: dict[str, list[int]] = {"r1": [], "r2": []}
    for msg in posted:
        assert msg is not None
        seqs[msg.room_id].append(msg.seq)
    assert sorted(seqs["r1"]) == list(range(1, 31))
    assert sorted(seqs["r2"]) == list(range(1, 31))
    got = await store.get_room("r1")
    assert got is not None
    assert got.last_seq == 30
    assert await store.add_message("nope", "alice", "x", now=NOW) is None


async def test_edit_and_delete(store: Store) -> None:
    """Edit sets the body and edited_at; delete clears the body; neither works twice or
    in another room."""
    await room(store, "r1")
    await room(store, "r2")
    msg = await store.add_message("r1", "alice", "hello", now=NOW)
    assert msg is not None
    assert await store.edit_message("r2", msg.id, "x", now=NOW) is None
    edited = await store.edit_message("r1", msg.id, "hello!", now=NOW + 1)
    assert edited is not None
    assert (edited.body, edited.edited_at, edited.seq) == ("hello!", NOW + 1, 1)
    assert await store.delete_message("r2", msg.id, by="mod", now=NOW) is None
    deleted = await store.delete_message("r1", msg.id, by="mod", now=NOW + 2)
    assert deleted is not None
    assert (deleted.body, deleted.deleted_at, deleted.deleted_by) == (None, NOW + 2, "mod")
    assert await store.delete_message("r1", msg.id, by="mod", now=NOW + 3) is None
    assert await store.edit_message("r1", msg.id, "again", now=NOW + 3) is None
    assert await store.get_message("r1", msg.id) == deleted
    assert await store.get_message("r2", msg.id) is None


async def test_history_pages_newest_first_without_blocked_authors(store: Store) -> None:
    """History pages by seq, newest first, and leaves out excluded authors."""
    await room(store, "r1")
    for i in range(10):
        await store.add_message("r1", "bob" if i % 3 == 0 else "alice", f"m{i}", now=NOW + i)
    page = await store.messages("r1", limit=4)
    assert [m.seq for m in page] == [10, 9, 8, 7]
    page = await store.messages("r1", before_seq=7, limit=4)
    assert [m.seq for m in page] == [6, 5, 4, 3]
    without_bob = await store.messages("r1", limit=100, exclude_authors={"bob"})
    assert {m.author_id for m in without_bob} == {"alice"}
    assert len(without_bob) == 6


async def test_read_markers_and_unread_counts(store: Store) -> None:
    """Markers only move forward, stop at the last message; unread skips own, deleted and
    blocked authors' messages."""
    await room(store, "r1", "alice", "bob", "carol")
    await room(store, "r2", "alice")
    ids = []
    for author in ("bob", "bob", "alice", "carol", "bob"):
        msg = await store.add_message("r1", author, "x", now=NOW)
        assert msg is not None
        ids.append(msg.id)
    assert await store.unread_counts("alice") == {"r1": 4, "r2": 0}
    await store.delete_message("r1", ids[0], by="bob", now=NOW)
    assert await store.unread_counts("alice") == {"r1": 3, "r2": 0}
    await store.block("alice", "carol", now=NOW)
    assert await store.unread_counts("alice") == {"r1": 2, "r2": 0}
    assert await store.mark_room_read("r1", "alice", 2) == 2
    assert await store.unread_counts("alice") == {"r1": 1, "r2": 0}
    assert await store.mark_room_read("r1", "alice", 1) == 2  # never back
    assert await store.mark_room_read("r1", "alice", 99) == 5  # never past the last
    assert await store.unread_counts("alice") == {"r1": 0, "r2": 0}
    assert await store.mark_room_read("r1", "dave", 1) is None
    assert await store.unread_counts("dave") == {}


async def test_blocks_are_one_way(store: Store) -> None:
    """block/unblock report changes; a block is about what the blocker sees."""
    assert await store.block("alice", "bob", now=NOW)
    assert not await store.block("alice", "bob", now=NOW)
    assert await store.blocked("alice") == {"bob"}
    assert await store.blocked("bob") == set()
    assert await store.unblock("alice", "bob")
    assert not await store.unblock("alice", "bob")
    assert await store.blocked("alice") == set()


@pytest.mark.parametrize("content", ["", "x" * 10_000, "emoji 🎉 and 'quotes' \"; DROP"])
async def test_bodies_round_trip(store: Store, content: str) -> None:
    """What goes in comes out, whatever the text (validation is the rooms layer's job)."""
    await room(store)
    msg = await store.add_message("r1", "alice", content, now=NOW)
    assert msg is not None
    got = await store.get_message("r1", msg.id)
    assert got is not None
    assert got.body == content
