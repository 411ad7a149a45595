"""The user directory over HTTP against a real server: register, read, list, import, erase,
and registered users as role and `all` targets (guide 002's librarians who never opened the
app)."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import Harness, recv, recv_type, request, token

ALICE: dict[str, Any] = {
    "name": "Alice Liddell",
    "avatarUrl": "https://img.example/alice.png",
    "email": "alice@example.org",
    "phone": "+44 20 7946 0000",
    "locale": "en-GB",
    "timeZone": "Europe/London",
    "roles": ["LIBRARIAN", "STAFF"],
    "data": {"branch": "Main"},
}


async def test_register_read_replace(harness: Harness) -> None:
    """PUT creates (201) then replaces (200) the whole record; GET reads it back."""
    status, body = await harness.api("PUT", "/api/users/alice", ALICE)
    assert status == 201, body
    assert {k: body[k] for k in ALICE} == ALICE
    assert body["createdAt"].endswith("Z")
    status, got = await harness.api("GET", "/api/users/alice")
    assert (status, got) == (200, body)
    status, body = await harness.api("PUT", "/api/users/alice", {"name": "Alice"})
    assert (status, body["name"], body["email"], body["roles"]) == (200, "Alice", None, [])
    status, err = await harness.api("GET", "/api/users/nobody")
    assert (status, err["error"]["code"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"timeZone": "Mars/Olympus"}, "timeZone"),
        ({"locale": "en_GB!"}, "locale"),
        ({"phone": "call me"}, "phone"),
        ({"avatarUrl": "javascript:alert(1)"}, "avatarUrl"),
        ({"roles": ["x" * 65]}, "roles"),
        ({"data": {"blob": "x" * 20000}}, "data"),
        ({"nickname": "al"}, "unknown field"),
        ({"name": "a\u0000b"}, "NUL"),
    ],
    ids=["email", "tz", "locale", "phone", "avatar", "role", "data", "unknown", "nul"],
)
async def test_invalid_users_are_refused(harness: Harness, body: dict, message: str) -> None:
    """Each invalid field gets a 422 naming it, and nothing is stored."""
    status, reply = await harness.api("PUT", "/api/users/bad", body)
    assert status == 422
    assert message in reply["error"]["message"]
    assert (await harness.api("GET", "/api/users/bad"))[0] == 404


async def test_directory_needs_a_server_key(harness: Harness) -> None:
    """A user's own token cannot read or write the directory."""
    for method in ("GET", "PUT", "DELETE"):
        status, _ = await harness.api(method, "/api/users/alice", {}, key=token("alice"))
        assert status == 403, method


async def test_registered_users_get_role_and_all_notifications(harness: Harness) -> None:
    """Librarians registered but never connected get a role notification; on connecting
    they find it in their inbox."""
    status, body = await harness.api(
        "POST",
        "/api/users/import",
        {
            "users": [
                {"id": "lib1", "roles": ["LIBRARIAN"], "name": "Lib One"},
                {"id": "lib2", "roles": ["LIBRARIAN"]},
                {"id": "stu1", "roles": ["STUDENT"]},
            ]
        },
    )
    assert (status, body) == (200, {"created": 3, "updated": 0})
    status, reply = await harness.api(
        "POST", "/api/notifications", {"role": "LIBRARIAN", "title": "Peak hours"}
    )
    assert status == 201
    assert sorted(n["userId"] for n in reply["notifications"]) == ["lib1", "lib2"]
    status, reply = await harness.api("POST", "/api/notifications", {"all": True, "title": "Hi"})
    assert sorted(n["userId"] for n in reply["notifications"]) == ["lib1", "lib2", "stu1"]
    async with harness.connect(f"?token={token('lib2')}") as ws:
        welcome = await recv(ws)
        assert welcome["data"]["unreadCount"] == 2
        assert (await recv_type(ws, "notification"))["data"]["title"] == "Peak hours"


async def test_import_is_validated_whole(harness: Harness) -> None:
    """One invalid user fails the whole import (422 naming its index); nothing is stored."""
    status, reply = await harness.api(
        "POST",
        "/api/users/import",
        {"users": [{"id": "ok1"}, {"id": "bad", "email": "nope"}]},
    )
    assert status == 422
    assert reply["error"]["message"].startswith("users[1]: email")
    assert (await harness.api("GET", "/api/users/ok1"))[0] == 404
    status, _ = await harness.api("POST", "/api/users/import", {"users": []})
    assert status == 422


async def test_list_pages_and_filters(harness: Harness) -> None:
    """GET /api/users pages in id order with a cursor and filters by role."""
    users = [{"id": f"u{i:02d}", "roles": ["EVEN" if i % 2 == 0 else "ODD"]} for i in range(7)]
    await harness.api("POST", "/api/users/import", {"users": users})
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = await harness.api("GET", "/api/users" + query)
        assert status == 200
        seen += [u["id"] for u in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [u["id"] for u in users]
    _, page = await harness.api("GET", "/api/users?role=ODD")
    assert [u["id"] for u in page["items"]] == ["u01", "u03", "u05"]
    assert (await harness.api("GET", "/api/users?cursor=%%%"))[0] == 400


async def test_erase_removes_personal_data_and_says_what_it_kept(harness: Harness) -> None:
    """DELETE erases profile, notifications, preferences and memberships; room messages are
    kept and counted, with the reason."""
    await harness.api("PUT", "/api/users/eve", {"name": "Eve", "roles": ["STAFF"]})
    await harness.api("POST", "/api/notifications", {"userId": "eve", "title": "x"})
    await harness.api("PUT", "/api/users/eve/preferences", {"inApp": {"NEWS": False}})
    assert (await harness.api("POST", "/api/rooms", {"id": "lobby"}))[0] == 201
    status, _ = await harness.api("PUT", "/api/rooms/lobby/members", {"userIds": ["eve"]})
    assert status == 200
    async with harness.client("eve") as ws:
        await recv_type(ws, "notification")
        posted = await request(ws, {"type": "CHAT_MESSAGE", "roomId": "lobby", "content": "hi"})
        assert posted["type"] != "error", posted
    status, body = await harness.api("DELETE", "/api/users/eve")
    assert status == 200
    assert body["erased"] == {
        "profile": True,
        "notifications": 1,
        "preferences": 1,
        "roomMemberships": 1,
        "blocks": 0,
    }
    assert body["kept"]["roomMessages"] == 1
    assert "rooms API" in body["kept"]["reason"]
    assert (await harness.api("GET", "/api/users/eve"))[0] == 404
    _, page = await harness.api("GET", "/api/users/eve/notifications")
    assert page["items"] == []
    status, reply = await harness.api("POST", "/api/notifications", {"role": "STAFF", "title": "y"})
    assert "eve" not in [n["userId"] for n in reply["notifications"]]
