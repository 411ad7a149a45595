"""Subscription filters: equality or one-of on fields of a publication's ``data``.

A filter is ``{"field": value}`` (equality) or ``{"field": [v1, v2]}`` (one of); every
field must match. A publication whose ``data`` is not an object, or lacks a field, does
not match. Filters are compiled once per distinct filter so fan-out evaluates each
distinct filter once per publication, whatever the number of subscribers sharing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

MAX_FILTER_FIELDS: Final = 16
MAX_FILTER_VALUES: Final = 64

_MISSING: Final = object()


class FilterError(ValueError):
    """A filter that is not of the documented form."""


def _typed(value: Any) -> tuple[str, Any]:
    """A JSON-typed key: 1 matches 1.0 (one JSON number), True never matches 1."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    return (type(value).__name__, value)


class Filter:
    """A compiled filter; ``key`` is its canonical form, used to group subscribers."""

    __slots__ = ("_fields", "key")

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if not spec:
            raise FilterError("a filter needs at least one field")
        if len(spec) > MAX_FILTER_FIELDS:
            raise FilterError(f"at most {MAX_FILTER_FIELDS} filter fields")
        fields: list[tuple[str, frozenset[tuple[str, Any]]]] = []
        for name, wanted in spec.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            if not values:
                raise FilterError(f"filter field {name!r} has an empty list")
            if len(values) > MAX_FILTER_VALUES:
                raise FilterError(f"at most {MAX_FILTER_VALUES} values per filter field")
            for v in values:
                if isinstance(v, dict | list):
                    raise FilterError(f"filter field {name!r}: values must be scalars")
            fields.append((name, frozenset(_typed(v) for v in values)))
        fields.sort(key=lambda f: f[0])
        self._fields = tuple(fields)
        canonical = {name: sorted(map(repr, allowed)) for name, allowed in self._fields}
        self.key = msgspec.json.encode(canonical).decode()

    def matches(self, data: Any) -> bool:
        """True if every field of the filter matches ``data``."""
        if not isinstance(data, dict):
            return False
        for name, allowed in self._fields:
            value = data.get(name, _MISSING)
            if value is _MISSING or isinstance(value, dict | list):
                return False
            if _typed(value) not in allowed:
                return False
        return True
