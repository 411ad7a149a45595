"""The UserStore contract (the user directory), run against SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from tidings.store import Store
from tidings.store.users import UserRecord

from . import test_store_contract as contract

NOW = contract.NOW
store = contract.store  # SQLite, and a PostgreSQL schema per test


def user(uid: str, *roles: str, **fields: object) -> UserRecord:
    return UserRecord(id=uid, roles=roles, **fields)  # type: ignore[arg-type]


async def test_put_get_replace(store: Store) -> None:
    """put_user creates then replaces the whole record, roles included; created_at stays."""
    full = user(
        "alice",
        "LIBRARIAN",
        "STAFF",
        name="Alice Liddell",
        avatar_url="https://img.example/a.png",
        email="alice@example.org",
        phone="+441234567890",
        locale="en-GB",
        time_zone="Europe/London",
        data={"branch": "Main", "tier": 3},
    )
    assert await store.put_user(full, now=NOW)
    got = await store.get_user("alice")
    assert got == UserRecord(**{**msgspec_fields(full), "created_at": NOW, "updated_at": NOW})
    assert not await store.put_user(user("alice", "STUDENT", name="A."), now=NOW + 5)
    got = await store.get_user("alice")
    assert got is not None
    assert (got.name, got.email, got.roles, got.data) == ("A.", None, ("STUDENT",), None)
    assert (got.created_at, got.updated_at) == (NOW, NOW + 5)
    assert await store.get_user("nobody") is None


def msgspec_fields(record: UserRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__struct_fields__}


async def test_registered_users_are_role_and_all_targets(store: Store) -> None:
    """Directory roles and token roles both count; all_users lists registered users too."""
    await store.put_users([user("lib1", "LIBRARIAN"), user("stu1", "STUDENT")], now=NOW)
    await store.remember_user("lib2", ["LIBRARIAN"], now=NOW)
    # A token that says otherwise does not hide a directory role, nor the reverse.
    await store.remember_user("lib1", ["STUDENT"], now=NOW)
    assert await store.users_with_role("LIBRARIAN") == ["lib1", "lib2"]
    assert await store.users_with_role("STUDENT") == ["lib1", "stu1"]
    assert await store.all_users() == ["lib1", "lib2", "stu1"]


async def test_notifications_reach_registered_users_who_never_connected(store: Store) -> None:
    """A create for the role's users (as the inbox resolves it) stores rows for them."""
    await store.put_users([user("l1", "LIBRARIAN"), user("l2", "LIBRARIAN")], now=NOW)
    created = await store.create(contract.note(), await store.users_with_role("LIBRARIAN"), now=NOW)
    assert sorted(n.user_id for n in created.notifications) == ["l1", "l2"]
    assert await store.unread_count("l2", now=NOW) == 1


async def test_bulk_put_is_one_transaction(store: Store) -> None:
    """put_users counts the new ones; a failing import stores none of its users."""
    assert await store.put_users([user("a"), user("b"), user("a")], now=NOW) == 2
    # A record the database refuses (no id: NOT NULL) fails the whole import.
    broken = UserRecord(id=None)  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017 (each backend's own error type)
        await store.put_users([user("c"), broken, user("e")], now=NOW)
    assert await store.get_user("c") is None
    assert await store.get_user("e") is None


async def test_list_pages_in_id_order_and_filters_by_role(store: Store) -> None:
    """list_users pages bytewise by id after a cursor, optionally by directory role."""
    ids = ["b", "a", "B", "c1", "c2"]
    await store.put_users([user(i, "R" if i.startswith("c") else "S") for i in ids], now=NOW)
    first = await store.list_users(after=None, limit=3)
    assert [u.id for u in first] == ["B", "a", "b"]
    rest = await store.list_users(after=first[-1].id, limit=3)
    assert [u.id for u in rest] == ["c1", "c2"]
    assert [u.id for u in await store.list_users(after=None, limit=10, role="R")] == ["c1", "c2"]
    assert rest[0].roles == ("R",)


async def test_erase_removes_personal_data_and_keeps_room_messages(store: Store) -> None:
    """erase_user removes profile, roles, notifications, preferences, memberships and blocks;
    it keeps authored room messages (counted) and the seq counter."""
    await store.put_user(user("eve", "STAFF", name="Eve", email="eve@example.org"), now=NOW)
    await store.remember_user("eve", ["STAFF"], now=NOW)
    await store.create(contract.note(), ["eve"], now=NOW)
    await store.create(contract.note(), ["eve", "bob"], now=NOW)
    await store.set_preferences("eve", {"MARKETING": False})
    assert await store.create_room("r1", name="R", ws_post=True, now=NOW)
    await store.set_member("r1", "eve", "member", now=NOW)
    assert await store.add_message("r1", "eve", "hello", now=NOW) is not None
    await store.block("eve", "bob", now=NOW)
    await store.block("bob", "eve", now=NOW)

    erased = await store.erase_user("eve")
    assert (erased.profile, erased.notifications, erased.preferences) == (True, 2, 1)
    assert (erased.room_memberships, erased.blocks, erased.kept_room_messages) == (1, 2, 1)
    assert await store.get_user("eve") is None
    assert await store.page("eve", include_archived=True) == []
    assert "eve" not in await store.users_with_role("STAFF")
    assert "eve" not in await store.all_users()
    assert await store.preferences("eve") == {}
    assert await store.rooms_of("eve") == []
    assert await store.unread_count("bob", now=NOW) == 1  # others keep theirs
    # The counter survives: eve's next notification continues the sequence.
    again = await store.create(contract.note(), ["eve"], now=NOW)
    assert again.notifications[0].seq == 3
    nothing = await store.erase_user("nobody")
    assert (nothing.profile, nothing.notifications) == (False, 0)
    # Connecting again with the same token records eve again.
    await store.remember_user("eve", ["STAFF"], now=NOW + 1)
    assert "eve" in await store.users_with_role("STAFF")
    assert "eve" in await store.all_users()


async def test_concurrent_puts_of_one_user_leave_one_consistent_record(store: Store) -> None:
    """Concurrent replaces of one user end with one of them whole (roles match fields)."""
    await asyncio.gather(
        *(store.put_user(user("zed", f"R{i}", name=f"n{i}"), now=NOW + i) for i in range(20))
    )
    got = await store.get_user("zed")
    assert got is not None
    assert got.name is not None
    assert got.roles == (f"R{got.name[1:]}",)
