"""The shapes the server answers, as TypedDicts: the keys are the wire's (camelCase), as
docs/http-api.md shows them, so a result prints and serialises like the documentation."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

Priority = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]


class Sent(TypedDict):
    """A publish or a send: the message id and the connections it was queued to
    (``None`` in a cluster, where no instance knows)."""

    id: str
    delivered: int | None
    channel: NotRequired[str]
    offset: NotRequired[int]
    epoch: NotRequired[str]


class Action(TypedDict):
    """A notification's button."""

    id: str
    label: str
    url: NotRequired[str | None]


class CreatedItem(TypedDict):
    id: str
    userId: str
    seq: int


class Created(TypedDict):
    """``POST /api/notifications``: one item per notification; ``replayed`` when the
    server answered an earlier request with the same Idempotency-Key."""

    notifications: list[CreatedItem]
    replayed: bool
    # In-app off for the category, nothing planned: nothing stored for them.
    skipped: list[str]
    # In-app off, escalation planned: stored for the other channels only, never in the app.
    inAppOff: list[str]


class ItemError(TypedDict):
    code: str
    message: str


class BatchResult(Created):
    """One item of a batch: ``status`` is what a single create of it would have
    answered (201, 200 replayed, 409, 422); ``error`` says why when it is not 2xx."""

    status: int
    error: ItemError | None


class BatchCreated(TypedDict):
    """``POST /api/notifications/batch``: one result per item, in order."""

    results: list[BatchResult]


class Notification(TypedDict):
    id: str
    seq: int
    type: str
    title: str | None
    message: str | None
    priority: Priority
    category: str | None
    data: Any
    actionable: bool
    actions: list[Action]
    expiresAt: str | None
    createdAt: str
    readAt: str | None
    timestamp: str


class NotificationPage(TypedDict):
    items: list[Notification]
    unreadCount: int
    nextCursor: str | None


class Changed(TypedDict):
    """Read, archive, delete: the ids this call changed, and the unread count after."""

    ids: list[str]
    unreadCount: int


class Preferences(TypedDict):
    inApp: dict[str, bool]


class User(TypedDict):
    """A user of the directory (``PUT /api/users/{userId}``)."""

    id: str
    name: str | None
    avatarUrl: str | None
    email: str | None
    phone: str | None
    locale: str | None
    timeZone: str | None
    roles: list[str]
    data: dict[str, Any] | None
    createdAt: str
    updatedAt: str


class UserPage(TypedDict):
    items: list[User]
    nextCursor: str | None


class Imported(TypedDict):
    created: int
    updated: int


class Erased(TypedDict):
    """What ``DELETE /api/users/{userId}`` erased, and what it kept and why."""

    id: str
    erased: dict[str, Any]
    kept: dict[str, Any]


class Room(TypedDict):
    id: str
    name: str | None
    wsPost: bool
    lastSeq: int
    createdAt: str


class Member(TypedDict):
    userId: str
    role: Literal["member", "moderator"]
    joinedAt: str
    lastReadSeq: int


class RoomMessage(TypedDict):
    id: str
    roomId: str
    seq: int
    authorId: str
    content: str | None
    isEdited: bool
    isDeleted: bool
    createdAt: str
    editedAt: str | None


class MessagePage(TypedDict):
    roomId: str
    messages: list[RoomMessage]
    nextBeforeSeq: int | None


class DeletedMessage(TypedDict):
    messageId: str
    roomId: str
    seq: int
    authorId: str
    deletedBy: str


class RoomRead(TypedDict):
    roomId: str
    lastReadSeq: int
    unreadCount: int


class MyRoom(TypedDict):
    roomId: str
    role: Literal["member", "moderator"]
    lastReadSeq: int
    unreadCount: int


class Subscription(TypedDict):
    channel: str
    filters: Any


class Connection(TypedDict):
    clientId: str
    userId: str
    roles: list[str]
    connectedAt: str | None
    expiresAt: str | None
    subscriptions: list[Subscription]
    remoteAddress: str | None
    transport: NotRequired[str]  # "websocket" or "sse" (servers since the operator console)
    instance: NotRequired[str]
