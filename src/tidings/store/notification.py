"""The notification records every store reads and writes (re-exported by ``store``).

They live apart from the ``Store`` interface so that the interface's parts
(``deliveries``, ``rooms``, ``users``) can name them without importing the package that
imports them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec


class Unless(enum.StrEnum):
    """What cancels a planned delivery before it is due: the notification reached a
    connection, was acknowledged, or was read (being read always cancels)."""

    DELIVERED = "delivered"
    ACKED = "acked"
    READ = "read"


class Planned(msgspec.Struct, frozen=True):
    """One escalation step planned at create: ``channel`` after ``delay`` seconds, unless."""

    channel: str
    delay: float
    unless: Unless = Unless.READ


class Priority(enum.StrEnum):
    """A notification's priority; any case is accepted (``high``, ``High``)."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @classmethod
    def _missing_(cls, value: object) -> Priority | None:
        # msgspec calls this for a value that is not a member, as Enum(value) does: the CLI
        # took `--priority high` and guide 003 sends 'high', so the API takes it too.
        if isinstance(value, str):
            return cls.__members__.get(value.upper())
        return None


class Action(msgspec.Struct, frozen=True, omit_defaults=True):
    """A button on a notification (guide 002)."""

    id: str
    label: str
    url: str | None = None


class NewNotification(msgspec.Struct, frozen=True, kw_only=True):
    """What a create request asks for, once per recipient."""

    type: str
    title: str | None = None
    message: str | None = None
    priority: Priority = Priority.MEDIUM
    category: str | None = None
    data: Any = None
    actions: tuple[Action, ...] = ()
    expires_at: float | None = None
    # Deliveries on other channels, planned for every recipient in the create's transaction.
    escalation: tuple[Planned, ...] = ()
    # {user_id: (title, message)} for recipients whose text was rendered from a template
    # in their own locale; the others get ``title`` and ``message``.
    texts: dict[str, tuple[str | None, str | None]] = msgspec.field(default_factory=dict)


class Notification(msgspec.Struct, kw_only=True):
    """One stored notification of one user. Times are Unix seconds."""

    id: str
    user_id: str
    seq: int
    type: str
    title: str | None
    message: str | None
    priority: Priority
    category: str | None
    data: Any
    actions: tuple[Action, ...]
    expires_at: float | None
    created_at: float
    delivered_at: float | None = None
    acked_at: float | None = None
    read_at: float | None = None
    archived_at: float | None = None
    attempts: int = 0
    # False: the user switched in-app off for the category; the row exists only for the
    # other channels (escalation and its log): never pushed, listed or counted unread.
    in_app: bool = True


class Creation(NamedTuple):
    """One create of ``Store.create_many``: what ``Store.create`` takes."""

    content: NewNotification
    user_ids: Sequence[str]
    now: float
    idempotency_key: str | None = None
    fingerprint: str = ""


class Created(msgspec.Struct, frozen=True):
    """The result of ``Store.create``.

    ``replayed`` is True when the idempotency key had already been used with the same
    request: ``notifications`` are then the rows that first request created.
    """

    notifications: tuple[Notification, ...]
    replayed: bool
    # Recipients left out because they switched in-app off for the category and nothing
    # else was planned for it.
    skipped: tuple[str, ...] = ()
    # Recipients who switched in-app off but get the other channels planned: their rows
    # (in ``notifications``, ``in_app`` False) are never live in the app.
    in_app_off: tuple[str, ...] = ()
