"""Turn a backend's own notification dict into a ``POST /api/notifications`` body.

Backends ported to tidings already call something like guide 003's
``send_notification(user_id, {'message': ..., 'type': 'info', 'case_id': '12345',
'priority': 'high', 'category': 'immigration'})``. The server refuses unknown fields, so
this maps the fields it knows, accepts their common spellings, and keeps everything else
in ``data``, where the client receives it unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

PRIORITIES: Final = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
# Spellings other systems use for the same levels.
PRIORITY_ALIASES: Final = {"NORMAL": "MEDIUM", "URGENT": "CRITICAL"}

# The body's own fields, by every spelling accepted for each.
FIELDS: Final = {
    "type": "type",
    "title": "title",
    "message": "message",
    "priority": "priority",
    "category": "category",
    "actions": "actions",
    "expiresAt": "expiresAt",
    "expires_at": "expiresAt",
}
# Targets are given by the method's arguments, never inside the payload.
TARGETS: Final = frozenset({"userId", "userIds", "role", "all"})


def priority(value: Any) -> str:
    """``high``, ``High``, ``HIGH`` → ``HIGH``; ``normal`` → ``MEDIUM``; ``urgent`` →
    ``CRITICAL``.

    Raises:
        ValueError: anything else (the server would answer 422).
    """
    if not isinstance(value, str):
        raise ValueError(f"priority must be a string, not {type(value).__name__}")
    name = value.strip().upper()
    name = PRIORITY_ALIASES.get(name, name)
    if name not in PRIORITIES:
        raise ValueError(f"priority must be one of low, medium, high, critical (got {value!r})")
    return name


def expires_at(value: Any) -> Any:
    """A ``datetime`` as ISO 8601 in UTC (a naive one is taken as UTC); a string as is."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def notification_body(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The create body's content fields for ``payload`` (no target).

    Known fields (``type``, ``title``, ``message``, ``priority``, ``category``,
    ``actions``, ``expiresAt`` or ``expires_at``) are mapped; every other key goes into
    ``data``. An explicit ``data`` mapping is kept, and the other keys are added to it.

    Raises:
        ValueError: a bad priority; a target key (``userId``, ...) inside the payload; a
            key that is both in ``data`` and beside it; extra keys beside a ``data`` that
            is not a mapping.
    """
    body: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in payload.items():
        if key in TARGETS:
            raise ValueError(f"give the target as an argument, not as {key!r} in the payload")
        field = FIELDS.get(key)
        if field is None:
            if key != "data":
                rest[key] = value
            continue
        if field in body:
            raise ValueError(f"{field} is given twice")
        if field == "priority":
            value = priority(value)
        elif field == "expiresAt":
            value = expires_at(value)
        body[field] = value
    data = payload.get("data")
    if rest:
        if data is None:
            data = rest
        elif isinstance(data, Mapping):
            both = sorted(set(data) & set(rest))
            if both:
                raise ValueError(f"{both} are both in data and beside it")
            data = {**data, **rest}
        else:
            raise ValueError("data is not a mapping, so the other keys cannot join it")
    if data is not None:
        body["data"] = data
    return body
