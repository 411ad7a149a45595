"""Subscription filters: equality, one-of, and their canonical keys."""

from __future__ import annotations

import pytest

from tidings.filters import Filter, FilterError

GUIDE_002 = {"activityType": ["CHECK_IN", "CHECK_OUT"], "location": "Main Library"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"activityType": "CHECK_IN", "location": "Main Library", "x": 1}, True),
        ({"activityType": "CHECK_OUT", "location": "Main Library"}, True),
        ({"activityType": "BOOK_BORROW", "location": "Main Library"}, False),
        ({"activityType": "CHECK_IN", "location": "AVR Room"}, False),
        ({"activityType": "CHECK_IN"}, False),
        ({"activityType": ["CHECK_IN"], "location": "Main Library"}, False),
        ("CHECK_IN", False),
        (None, False),
    ],
)
def test_guide_002_filter(data: object, expected: bool) -> None:
    """Guide 002's example filter matches exactly the publications it describes."""
    assert Filter(GUIDE_002).matches(data) is expected


def test_types_are_not_confused() -> None:
    """True does not match 1, and 1 does not match "1"."""
    assert not Filter({"n": 1}).matches({"n": True})
    assert not Filter({"n": True}).matches({"n": 1})
    assert not Filter({"n": "1"}).matches({"n": 1})
    assert Filter({"n": 1}).matches({"n": 1.0})  # one JSON number
    assert Filter({"n": [1, None]}).matches({"n": None})


def test_key_is_canonical() -> None:
    """Equal filters written differently share a key (so they share a fan-out group)."""
    a = Filter({"b": ["y", "x"], "a": 1})
    b = Filter({"a": [1], "b": ["x", "y"]})
    assert a.key == b.key
    assert a.key != Filter({"a": 2}).key


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"a": []},
        {"a": {"b": 1}},
        {"a": [[1]]},
        {f"f{i}": 1 for i in range(17)},
        {"a": list(range(65))},
    ],
)
def test_bad_filters_are_refused(spec: dict) -> None:
    """Empty, nested or oversized filters raise FilterError."""
    with pytest.raises(FilterError):
        Filter(spec)
