"""Channel grammar and namespace rules."""

from __future__ import annotations

import pytest

from tidings.channels import Access, NamespacePolicy, is_valid_channel, namespace_of


@pytest.mark.parametrize(
    "name", ["notifications", "room:abc", "user:42", "group:x:typing", "a.b-c_d@e=f", "x" * 255]
)
def test_valid_names(name: str) -> None:
    """Names from the guides follow the grammar."""
    assert is_valid_channel(name)


@pytest.mark.parametrize(
    "name", ["", "room:", ":x", "a::b", "has space", "x" * 256, "é", "a/b", "a\nb"]
)
def test_invalid_names(name: str) -> None:
    """Empty segments, spaces, non-ASCII and over-long names are refused."""
    assert not is_valid_channel(name)


def test_namespace_is_first_segment() -> None:
    """The namespace is the part before the first colon."""
    assert namespace_of("room:abc:typing") == "room"
    assert namespace_of("notifications") == "notifications"


def test_rules() -> None:
    """Roles, private user channels, client publishing and the default namespace."""
    access = Access(
        {
            "activities": NamespacePolicy(allowed_roles=frozenset({"LIBRARIAN"})),
            "room": NamespacePolicy(publish=True),
            "*": NamespacePolicy(subscribe=False),
        }
    )
    assert access.can_subscribe("activities", "u", ["LIBRARIAN"]) is None
    assert access.can_subscribe("activities", "u", ["STUDENT"]) is not None
    assert access.can_subscribe("user:u", "u", []) is None
    assert access.can_subscribe("user:u:inbox", "u", []) is None
    assert access.can_subscribe("user:v", "u", []) is not None
    assert access.can_subscribe("user", "u", []) is not None
    assert access.can_subscribe("unknown", "u", []) is not None
    assert access.can_publish("room:1", "u", []) is None
    assert access.can_publish("activities", "u", ["LIBRARIAN"]) is not None
    assert access.available("u", ["STUDENT"]) == ["room", "user:u"]
    assert access.available("u", ["LIBRARIAN"]) == ["activities", "room", "user:u"]
