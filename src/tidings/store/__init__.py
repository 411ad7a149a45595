"""Notification storage: the ``Store`` interface and its records (``backends.open_store``
builds one).

Implementations: ``sqlite.SQLiteStore`` (the default, a file or ``:memory:``) and
``postgres.PostgresStore`` (a ``postgresql://`` URL). Both pass one contract suite
(``tests/test_store_contract.py``); the contract is the ``Store`` docstring below.

``inbox.Inbox`` is the only user of a store; ``tidings serve`` always opens one.
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Protocol

from .deliveries import DeliveryStore
from .notification import (
    Action,
    Created,
    Creation,
    NewNotification,
    Notification,
    Planned,
    Priority,
)
from .rooms import RoomStore
from .users import UserStore

__all__ = [
    "Action",
    "Created",
    "Creation",
    "DeliveryStore",
    "IdempotencyConflict",
    "NewNotification",
    "Notification",
    "Planned",
    "Priority",
    "Store",
    "StoreError",
    "failure_status",
]


class StoreError(Exception):
    """A store operation that failed for a reason other than the caller's input."""


def failure_status(exc: BaseException) -> int | None:
    """The HTTP status for a store that failed under a request: 507 when its disk is full,
    503 when it is otherwise unavailable (locked past its busy timeout, unreachable,
    closing); None when ``exc`` is not a store failure (a bug: let it be one).

    Callers answer with ``Retry-After``: the request may succeed once the store recovers.
    """
    name = type(exc).__name__
    module = type(exc).__module__
    full = (
        name == "DiskFullError"  # asyncpg
        or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
        or "disk is full" in str(exc)  # SQLITE_FULL, also inside a StoreError
    )
    if isinstance(exc, StoreError | sqlite3.Error | OSError | TimeoutError) or module.startswith(
        "asyncpg"
    ):
        return 507 if full else 503
    return None


async def settled(futures: Sequence[asyncio.Future[Created]]) -> list[Created | Exception]:
    """The outcome of each of a group commit's futures, in order: its result, or the
    exception it was settled with. Cancelled while waiting, it cancels those not settled
    yet (a group commit skips a request whose caller is gone)."""
    outcomes: list[Created | Exception] = []
    try:
        for future in futures:
            try:
                outcomes.append(await future)
            except Exception as exc:
                outcomes.append(exc)
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return outcomes


class IdempotencyConflict(Exception):
    """An idempotency key reused with a different request."""


class Store(RoomStore, UserStore, DeliveryStore, Protocol):
    """Durable per-user notification inboxes (and chat rooms: see ``RoomStore``; the user
    directory: ``UserStore``; delivery on other channels: ``DeliveryStore``).

    Contract, for every implementation:

    * **Commit before return.** ``create`` returns only once every recipient's row and the
      idempotency record are committed, in one transaction: all of them or none. Several
      concurrent ``create`` calls may share one transaction (group commit); each still
      returns only after that commit, and a failing request fails only itself.
    * **Per-user order.** Each user's notifications get ``seq`` 1, 2, 3, … with no gaps and
      no repeats, in commit order, whatever the concurrency.
    * **Preferences.** Recipients whose in-app switch for the content's category is off
      (see ``in_app_disabled``) get no row, and ``Created.skipped`` names them; unless the
      content plans escalation steps: then they get a row with ``in_app`` False (its seq
      taken, its deliveries planned) that no method returning live rows returns and
      ``page`` leaves out unless ``include_archived``, and ``Created.in_app_off`` names
      them. The check runs in the create's own transaction.
    * **Idempotency.** ``create`` with a key already used by an identical request (same
      ``fingerprint``) creates nothing and returns the first request's rows with
      ``replayed=True``; with a different fingerprint it raises ``IdempotencyConflict``.
      Keys are kept at least as long as the rows they created.
    * **Isolation.** Every method that reads or changes notifications takes the owner's
      ``user_id`` and touches only that user's rows: another user's id behaves exactly
      like an id that does not exist.
    * **Time is passed in** (``now``); the store never reads a clock.
    * **Expired** rows (``expires_at <= now``) are never returned by ``since``,
      ``unacked`` or counted unread; ``page`` still lists them for history.
    * **Deleted** rows are gone from every method; **archived** rows are left out of
      ``page`` (unless asked for), ``since``, ``unacked`` and the unread count, and so are
      rows with in-app off.
    * Methods that change state return the ids they actually changed, oldest (lowest
      ``seq``) first (already-read rows are not "changed" by ``mark_read``), so callers
      can tell other tabs exactly what moved.
    * ``close`` waits for work in flight. After a crash, everything a returned ``create``
      committed is there.
    """

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""
        ...

    async def close(self) -> None:
        """Finish in-flight work and release connections."""
        ...

    async def create(
        self,
        content: NewNotification,
        user_ids: Sequence[str],
        *,
        now: float,
        idempotency_key: str | None = None,
        fingerprint: str = "",
    ) -> Created:
        """Store one notification for each user (deduplicated, in the given order)."""
        ...

    async def create_many(self, creations: Sequence[Creation]) -> list[Created | Exception]:
        """``create`` for each of ``creations``, with the same guarantees, started
        together (a store that group-commits takes them in one transaction, where it has
        room). One result per creation, in order: its ``Created``, or the exception that
        failed it alone (``IdempotencyConflict``, a value the database refused; a
        ``StoreError`` for each when their commit failed). Cheaper than as many ``create``
        calls at once: no task per creation."""
        ...

    async def create_for_role(
        self,
        content: NewNotification,
        role: str | None,
        *,
        now: float,
        idempotency_key: str | None = None,
        fingerprint: str = "",
    ) -> Created:
        """``create`` for every user of ``role`` (``users_with_role``), or for everyone
        (``all_users``) when ``role`` is None, with the same guarantees, in user id order.

        Built for wide audiences (100,000 users committed within 2 s on SQLite): an
        implementation resolves the recipients and writes their rows set-wise rather
        than one request at a time.
        """
        ...

    async def get(self, user_id: str, notification_id: str) -> Notification | None:
        """One notification of this user, or None."""
        ...

    async def page(
        self,
        user_id: str,
        *,
        unread_only: bool = False,
        include_archived: bool = False,
        archived_only: bool = False,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> list[Notification]:
        """Newest first: notifications with ``seq < before_seq`` (all when None); archived
        ones only with ``include_archived``, and nothing else with ``archived_only``."""
        ...

    async def since(
        self, user_id: str, after_seq: int, *, now: float, limit: int = 500
    ) -> list[Notification]:
        """Oldest first: live (unexpired, unarchived) notifications with ``seq > after_seq``."""
        ...

    async def unacked(
        self, user_id: str, *, now: float, after_seq: int = 0, limit: int = 500
    ) -> list[Notification]:
        """Oldest first: live notifications with ``seq > after_seq`` not yet acknowledged."""
        ...

    async def unread(
        self, user_id: str, *, now: float, after_seq: int = 0, limit: int = 500
    ) -> list[Notification]:
        """Oldest first: live, unread notifications with ``seq > after_seq``."""
        ...

    async def unread_count(self, user_id: str, *, now: float) -> int:
        """Live, unread notifications of this user."""
        ...

    async def backlog(self, *, now: float) -> tuple[int, int]:
        """Live notifications of every user not yet acknowledged, and not yet delivered
        to any connection (for the operator's metrics; it may scan the table)."""
        ...

    async def mark_delivered(self, deliveries: Mapping[str, Sequence[str]], *, now: float) -> None:
        """Count a delivery attempt for each ``{user_id: [ids]}``, in one transaction; set
        ``delivered_at`` on the first one."""
        ...

    async def ack(self, user_id: str, ids: Sequence[str], *, now: float) -> list[str]:
        """Set ``acked_at`` where unset; returns the ids changed."""
        ...

    async def mark_read(self, user_id: str, ids: Sequence[str] | None, *, now: float) -> list[str]:
        """Set ``read_at`` where unset (``ids=None``: every unread one); ids changed."""
        ...

    async def archive(self, user_id: str, ids: Sequence[str], *, now: float) -> list[str]:
        """Set ``archived_at`` where unset; returns the ids changed."""
        ...

    async def unarchive(self, user_id: str, ids: Sequence[str]) -> list[str]:
        """Clear ``archived_at`` where set (the rows are live again, read state kept);
        returns the ids changed."""
        ...

    async def delete(self, user_id: str, ids: Sequence[str]) -> list[str]:
        """Remove rows for good; returns the ids removed."""
        ...

    async def remember_user(self, user_id: str, roles: Sequence[str], *, now: float) -> None:
        """Record a user and the roles of their latest token (role and ``all`` targets)."""
        ...

    async def users_with_role(self, role: str) -> list[str]:
        """Users whose latest token's roles, or whose directory roles, include ``role``
        (once each, in id order)."""
        ...

    async def all_users(self) -> list[str]:
        """Every user who connected (and was not erased) or is in the directory, once each,
        in id order."""
        ...

    async def preferences(self, user_id: str) -> dict[str, bool]:
        """The user's in-app switches by category (``*``: the default for every category)."""
        ...

    async def set_preferences(self, user_id: str, in_app: Mapping[str, bool]) -> None:
        """Replace the user's in-app switches."""
        ...

    async def in_app_disabled(self, user_ids: Sequence[str], category: str | None) -> set[str]:
        """Those of ``user_ids`` who switched in-app off for ``category``: the category's own
        switch wins; without one, the ``*`` switch decides; without either, in-app is on."""
        ...

    async def webhook_due(
        self, *, created_before: float, now: float, limit: int, lease: float = 0.0
    ) -> list[tuple[Notification, int]]:
        """Live, unacknowledged, unread notifications created before ``created_before`` whose
        webhook is neither sent nor given up, and whose next attempt is due by ``now``;
        each with the number of attempts made so far, oldest first.

        With ``lease > 0`` the rows are claimed in the same atomic step: they are not due
        again before ``now + lease`` (unless ``webhook_result`` says otherwise), so the
        instances of a cluster sharing one store never send the same webhook at once.
        """
        ...

    async def webhook_result(
        self, user_id: str, notification_id: str, *, sent: bool, next_at: float | None
    ) -> None:
        """Record a webhook attempt: sent; or failed, retried at ``next_at`` (None: give up)."""
        ...

    async def purge(self, *, created_before: float, now: float, limit: int) -> int:
        """Delete up to ``limit`` rows created before ``created_before`` or expired by
        ``now``, with the idempotency records they leave orphaned; returns rows deleted."""
        ...
