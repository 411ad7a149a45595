"""What the inbox accepts and how it shows notifications: the create request and its
validation, what renders its text per recipient, page cursors, and the client's view of
a stored notification.

Pure: no store, no clock read here (``now`` is passed in).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

import msgspec

from .. import protocol
from ..delivery.rules import Step, check_steps
from ..publication import iso_timestamp
from ..store import Action, NewNotification, Notification, Priority
from ..store.deliveries import Contact, Planned

# Recipients of one request named by id (``userIds``), and of a batch in all.
MAX_RECIPIENTS: Final = 10_000
# Notifications in one ``POST /api/notifications/batch``.
MAX_BATCH: Final = 1000
MAX_TITLE: Final = 500
MAX_MESSAGE: Final = 10_000
MAX_PAGE: Final = 100


class InboxError(ValueError):
    """A request the inbox refuses; the message says why."""


class CreateRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /api/notifications``: exactly one target, then the content."""

    userId: str | None = None
    userIds: list[str] | None = None
    role: str | None = None
    all: bool = False
    type: str = "notification"
    title: str | None = None
    message: str | None = None
    priority: Priority = Priority.MEDIUM
    category: str | None = None
    data: Any = None
    actions: list[Action] = msgspec.field(default_factory=list)
    expiresAt: str | None = None
    # Overrides the category's escalation rule for this notification ([]: none at all).
    escalation: list[Step] | None = None


class BatchItem(CreateRequest, forbid_unknown_fields=True, kw_only=True):
    """One notification of a batch: a create request and its own idempotency key (what
    the ``Idempotency-Key`` header is to a single create)."""

    idempotencyKey: str | None = None


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /api/notifications/batch``: up to ``MAX_BATCH`` creates, committed together."""

    notifications: list[BatchItem]


class Localizer(Protocol):
    """Renders the stored title and message per recipient (``delivery.templates``)."""

    def covers(self, kind: str) -> bool:
        """Whether type ``kind`` has templates at all (else nothing is looked up)."""
        ...

    def in_app(
        self, content: NewNotification, user_id: str, contact: Contact
    ) -> tuple[str | None, str | None] | None:
        """(title, message) for this recipient, or None to keep the content's own."""
        ...


# What a create plans beyond the app: (category, priority, the request's own steps).
Planner = Callable[[str | None, Priority, Sequence[Step] | None], tuple[Planned, ...]]


def no_plan(
    category: str | None, priority: Priority, steps: Sequence[Step] | None
) -> tuple[Planned, ...]:
    return ()


def content(req: CreateRequest, *, now: float, plan: Planner) -> NewNotification:
    """The notification a request asks for, once checked.

    Raises:
        InboxError: what is wrong with it.
    """
    # PostgreSQL text cannot hold NUL; refuse it everywhere so both stores agree.
    for name in ("type", "title", "message", "category", "userId", "role"):
        value = getattr(req, name)
        if isinstance(value, str) and "\x00" in value:
            raise InboxError(f"{name} contains a NUL character")
    if req.userIds is not None and any("\x00" in u for u in req.userIds):
        raise InboxError("userIds contains a NUL character")
    if not req.type or len(req.type) > 64:
        raise InboxError("type must be 1 to 64 characters")
    if req.title is not None and len(req.title) > MAX_TITLE:
        raise InboxError(f"title longer than {MAX_TITLE} characters")
    if req.message is not None and len(req.message) > MAX_MESSAGE:
        raise InboxError(f"message longer than {MAX_MESSAGE} characters")
    if req.category is not None and not 0 < len(req.category) <= 64:
        raise InboxError("category must be 1 to 64 characters")
    for action in req.actions:
        url = action.url
        # A link a client renders must not run script: http(s) or a path on your site.
        if url is not None and not (
            url.lower().startswith(("https://", "http://"))
            or (url.startswith("/") and not url.startswith("//"))
        ):
            raise InboxError("actions[].url must be an http(s) URL or a path starting with /")
    expires_at = None
    if req.expiresAt is not None:
        try:
            expires_at = datetime.fromisoformat(req.expiresAt.replace("Z", "+00:00"))
        except ValueError:
            raise InboxError("expiresAt is not an ISO 8601 date-time") from None
        if expires_at.tzinfo is None:
            raise InboxError("expiresAt needs a time zone (e.g. Z)")
        if expires_at.timestamp() <= now:
            raise InboxError("expiresAt is in the past")
    if req.escalation is not None:
        try:
            check_steps(req.escalation, "escalation")
        except ValueError as exc:
            raise InboxError(str(exc)) from None
    return NewNotification(
        type=req.type,
        title=req.title,
        message=req.message,
        priority=req.priority,
        category=req.category,
        data=req.data,
        actions=tuple(req.actions),
        expires_at=None if expires_at is None else expires_at.timestamp(),
        escalation=plan(req.category, req.priority, req.escalation),
    )


def check_target(req: CreateRequest) -> None:
    """Exactly one target, and named users that can be stored.

    Raises:
        InboxError: no target, several, or a bad user id.
    """
    targets = [req.userId is not None, req.userIds is not None, req.role is not None, req.all]
    if sum(targets) != 1:
        raise InboxError("give exactly one target: userId, userIds, role or all")
    named = [req.userId] if req.userId is not None else req.userIds
    if named is None:
        if req.role is not None and not 0 < len(req.role) <= 255:
            raise InboxError("role must be 1 to 255 characters")
        return
    if any(not u or len(u) > 255 for u in named):
        raise InboxError("user ids must be 1 to 255 characters")
    if not named:
        raise InboxError("userIds is empty")
    if len(named) > MAX_RECIPIENTS:
        raise InboxError(f"at most {MAX_RECIPIENTS} recipients per request")


def fingerprint(req: CreateRequest) -> str:
    """What an idempotency key is checked against: the request, whatever its key order."""
    fields = msgspec.structs.asdict(req)
    # A batch item's key is not part of the request it stands for: the same item sent
    # alone with that key as its header replays it.
    fields.pop("idempotencyKey", None)
    if fields["escalation"] is None:  # keys stored before it existed still match
        del fields["escalation"]
    body = msgspec.json.encode(fields, order="sorted")
    return hashlib.sha256(body).hexdigest()


# A pure function of its argument, called for every push: the notifications of one
# batch or fan-out share their created_at, and formatting one costs more than a lookup.
_iso = functools.lru_cache(maxsize=256)(iso_timestamp)


def view(n: Notification) -> protocol.Notification:
    """A notification as clients see it (guide 002's shape, plus seq and read state)."""
    created = _iso(n.created_at)  # twice below: formatting it is not free
    return protocol.Notification(
        id=n.id,
        seq=n.seq,
        type=n.type,
        title=n.title,
        message=n.message,
        priority=n.priority.value,
        category=n.category,
        data=n.data,
        actionable=bool(n.actions),
        actions=[msgspec.structs.asdict(a) for a in n.actions],
        expiresAt=None if n.expires_at is None else iso_timestamp(n.expires_at),
        createdAt=created,
        readAt=None if n.read_at is None else iso_timestamp(n.read_at),
        timestamp=created,
        archivedAt=msgspec.UNSET if n.archived_at is None else iso_timestamp(n.archived_at),
    )


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The seq a cursor stands for; InboxError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        seq = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InboxError("malformed cursor") from None
    if kind != "seq" or seq < 1:
        raise InboxError("malformed cursor")
    return seq
