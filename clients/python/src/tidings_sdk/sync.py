"""The synchronous client, for Flask, Django and scripts.

:class:`Client` and :class:`~tidings_sdk.aio.AsyncClient` have the same methods with the
same arguments; only ``await`` differs. Both are thread-safe as httpx's clients are, and
meant to be created once per process and shared.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, cast

import httpx

from . import calls
from .calls import Call
from .retry import Retry
from .sending import USER_AGENT, decode, on_status, on_transport_error, request_kwargs
from .types import (
    BatchCreated,
    Changed,
    Connection,
    Created,
    DeletedMessage,
    Erased,
    Imported,
    Member,
    MessagePage,
    MyRoom,
    Notification,
    NotificationPage,
    Room,
    RoomMessage,
    RoomRead,
    Sent,
    User,
    UserPage,
)

Role = Literal["member", "moderator"]


class Client:
    """A tidings server's HTTP API with a server API key.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: one of the server's ``api_keys``.
        timeout: seconds for each try (connect, read, write, pool), or an ``httpx.Timeout``.
        retry: the retry policy (:class:`~tidings_sdk.retry.Retry`); ``Retry(attempts=0)``
            never retries.
        transport: an httpx transport, e.g. ``httpx.HTTPTransport(uds=...)`` or one with
            its own TLS settings.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout: float | httpx.Timeout = 10.0,
        retry: Retry | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._api_key = api_key
        self._retry = retry if retry is not None else Retry()
        self._http = httpx.Client(
            base_url=url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _run(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, **request_kwargs(call, self._api_key)
                )
            except httpx.TransportError as exc:
                outcome = on_transport_error(call, exc, self._retry, attempt)
                if not isinstance(outcome, float):
                    raise outcome from exc
            else:
                if response.status_code < 400:
                    return decode(call, response)
                outcome = on_status(call, response, self._retry, attempt)
                if not isinstance(outcome, float):
                    raise outcome
            attempt += 1
            time.sleep(outcome)

    def as_user(self, token: str) -> UserClient:
        """The routes a user calls with their own JWT (their inbox, rooms, blocks), over
        this client's connections."""
        return UserClient(self, token)

    # --- sends ----------------------------------------------------------------------------

    def publish(self, channel: str, data: Any = None, *, type: str = "message") -> Sent:
        """Publish to a channel's subscribers (``POST /api/publish``). Not retried once it
        may have reached the server: a publish carries no idempotency key."""
        return cast(Sent, self._run(calls.publish(channel, data, type)))

    def send_to_user(self, user_id: str, data: Any = None, *, type: str = "message") -> Sent:
        """Send to every connection of one user (not stored: see ``send_notification``)."""
        return cast(Sent, self._run(calls.send_to_user(user_id, data, type)))

    def send_to_role(self, role: str, data: Any = None, *, type: str = "message") -> Sent:
        """Send to every connection whose token holds ``role``."""
        return cast(Sent, self._run(calls.send_to_role(role, data, type)))

    def broadcast(
        self, data: Any = None, *, type: str = "message", exclude_user_id: str | None = None
    ) -> Sent:
        """Send to every connection, optionally except one user's."""
        return cast(Sent, self._run(calls.broadcast(data, type, exclude_user_id)))

    def stats(self, *, cluster: bool = False) -> dict[str, Any]:
        """``GET /api/stats``; ``cluster=True`` sums every instance's."""
        return cast(dict[str, Any], self._run(calls.stats(cluster)))

    def health(self) -> dict[str, Any]:
        """``GET /health`` (raises :class:`~tidings_sdk.errors.Unavailable` while draining)."""
        return cast(dict[str, Any], self._run(calls.health()))

    # --- notifications --------------------------------------------------------------------

    def send_notification(
        self, user_id: str, payload: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Created:
        """Store a notification for one user and push it to their connections.

        ``payload`` is your own dict: ``type``, ``title``, ``message``, ``priority`` (any
        case), ``category``, ``actions`` and ``expiresAt``/``expires_at`` are mapped; every
        other key is kept in ``data``. See :func:`tidings_sdk.payload.notification_body`.
        Retried safely: every try carries the same Idempotency-Key (``idempotency_key``,
        or a generated one).
        """
        return cast(Created, self._run(calls.send_notification(user_id, payload, idempotency_key)))

    def create_notification(
        self,
        *,
        user_id: str | None = None,
        user_ids: Iterable[str] | None = None,
        role: str | None = None,
        everyone: bool = False,
        type: str | None = None,
        title: str | None = None,
        message: str | None = None,
        priority: str | None = None,
        category: str | None = None,
        data: Any = None,
        actions: Iterable[Mapping[str, Any]] | None = None,
        expires_at: Any = None,
        idempotency_key: str | None = None,
    ) -> Created:
        """``POST /api/notifications`` for exactly one of ``user_id``, ``user_ids``,
        ``role``, ``everyone=True``. ``expires_at``: a ``datetime`` or an ISO 8601 string."""
        body = calls.content(
            type=type,
            title=title,
            message=message,
            priority=priority,
            category=category,
            data=data,
            actions=actions,
            expires_at=expires_at,
        )
        call = calls.create_notification(
            user_id=user_id,
            user_ids=user_ids,
            role=role,
            everyone=everyone,
            content=body,
            idempotency_key=idempotency_key,
        )
        return cast(Created, self._run(call))

    def create_notifications(self, notifications: Iterable[Mapping[str, Any]]) -> BatchCreated:
        """``POST /api/notifications/batch``: up to 1,000 notifications in one request and
        one transaction. Each item: a target (``user_id``, ``user_ids``, ``role``,
        ``all``, or their API spellings ``userId``, ...), its content as
        ``send_notification`` takes it, and an optional ``idempotency_key`` (a fresh one
        otherwise, so the whole batch is retried safely). Returns ``{"results": [...]}``,
        one per item in order, each with the ``status`` a single create would have had;
        an invalid item fails alone."""
        call = calls.create_notifications(notifications)
        return cast(BatchCreated, self._run(call))

    def list_notifications(
        self,
        user_id: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        unread_only: bool = False,
        archived: bool = False,
    ) -> NotificationPage:
        """A page of a user's inbox, newest first; pass ``nextCursor`` as ``cursor``;
        ``archived``: the archived notifications instead (each with ``archivedAt``)."""
        call = calls.list_notifications(
            calls.user_base(user_id), limit, cursor, unread_only, archived=archived
        )
        return cast(NotificationPage, self._run(call))

    def iter_notifications(
        self, user_id: str, *, unread_only: bool = False, page_size: int = 100
    ) -> Iterator[Notification]:
        """Every notification of a user's inbox, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            page = self.list_notifications(
                user_id, limit=page_size, cursor=cursor, unread_only=unread_only
            )
            yield from page["items"]
            cursor = page["nextCursor"]
            if cursor is None:
                return

    def get_notification(self, user_id: str, notification_id: str) -> Notification:
        """One notification (:class:`~tidings_sdk.errors.NotFound` if not this user's)."""
        call = calls.get_notification(calls.user_base(user_id), notification_id)
        return cast(Notification, self._run(call))

    def mark_read(self, user_id: str, ids: Iterable[str]) -> Changed:
        """Mark these notifications read."""
        return cast(Changed, self._run(calls.mark_read(calls.user_base(user_id), ids)))

    def mark_all_read(self, user_id: str) -> Changed:
        """Mark every unread notification of the user read."""
        return cast(Changed, self._run(calls.mark_read(calls.user_base(user_id), None)))

    def archive_notifications(self, user_id: str, ids: Iterable[str]) -> Changed:
        """Archive: kept, but out of the list, the count and redelivery."""
        return cast(Changed, self._run(calls.archive(calls.user_base(user_id), ids)))

    def unarchive_notifications(self, user_id: str, ids: Iterable[str]) -> Changed:
        """Bring archived notifications back into the inbox (read state kept)."""
        return cast(Changed, self._run(calls.unarchive(calls.user_base(user_id), ids)))

    def get_deliveries(self, user_id: str, notification_id: str) -> dict[str, Any]:
        """The notification's email, push and SMS deliveries with their logs
        (docs/delivery.md); :class:`~tidings_sdk.errors.NotFound` if not this user's."""
        call = calls.get_deliveries(calls.user_base(user_id), notification_id)
        return cast(dict[str, Any], self._run(call))

    def delete_notification(self, user_id: str, notification_id: str) -> Changed:
        """Delete for good. A retry after a dropped answer may raise NotFound: it is gone."""
        call = calls.delete_notification(calls.user_base(user_id), notification_id)
        return cast(Changed, self._run(call))

    def get_preferences(self, user_id: str) -> dict[str, bool]:
        """The user's in-app switches by category (``*``: the default)."""
        return cast(dict[str, bool], self._run(calls.get_preferences(calls.user_base(user_id))))

    def set_preferences(self, user_id: str, in_app: Mapping[str, bool]) -> dict[str, bool]:
        """Replace every in-app switch of the user; answers what was stored."""
        call = calls.set_preferences(calls.user_base(user_id), in_app)
        return cast(dict[str, bool], self._run(call))

    # --- the user directory -----------------------------------------------------------

    def put_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        avatar_url: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        locale: str | None = None,
        time_zone: str | None = None,
        roles: Iterable[str] = (),
        data: Mapping[str, Any] | None = None,
    ) -> User:
        """Register or replace a user (the whole record): role and ``everyone``
        notifications then reach them whether or not they ever connected."""
        fields = calls.user_fields(
            name=name,
            avatar_url=avatar_url,
            email=email,
            phone=phone,
            locale=locale,
            time_zone=time_zone,
            roles=roles,
            data=data,
        )
        return cast(User, self._run(calls.put_user(user_id, fields)))

    def get_user(self, user_id: str) -> User:
        """A registered user (:class:`~tidings_sdk.errors.NotFound` if not registered)."""
        return cast(User, self._run(calls.get_user(user_id)))

    def list_users(
        self, *, role: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> UserPage:
        """Registered users in id order, optionally with a directory role."""
        return cast(UserPage, self._run(calls.list_users(role, limit, cursor)))

    def iter_users(self, *, role: str | None = None, page_size: int = 200) -> Iterator[User]:
        """Every registered user (with ``role``), a page at a time."""
        cursor: str | None = None
        while True:
            page = self.list_users(role=role, limit=page_size, cursor=cursor)
            yield from page["items"]
            cursor = page["nextCursor"]
            if cursor is None:
                return

    def import_users(self, users: Iterable[Mapping[str, Any]]) -> Imported:
        """Register or replace up to 1,000 users in one transaction; each is a dict in the
        wire's names (``{"id": ..., "name": ..., "roles": [...]}``)."""
        return cast(Imported, self._run(calls.import_users(users)))

    def erase_user(self, user_id: str) -> Erased:
        """Erase a user's personal data; answers what was erased and what was kept."""
        return cast(Erased, self._run(calls.erase_user(user_id)))

    # --- rooms ----------------------------------------------------------------------------

    def create_room(self, room_id: str, *, name: str | None = None, ws_post: bool = True) -> Room:
        """Create a room (:class:`~tidings_sdk.errors.Conflict` if the id exists)."""
        return cast(Room, self._run(calls.create_room(room_id, name, ws_post)))

    def get_room(self, room_id: str) -> Room:
        return cast(Room, self._run(calls.get_room(room_id)))

    def delete_room(self, room_id: str) -> None:
        """Delete a room with its members and messages."""
        self._run(calls.delete_room(room_id))

    def set_members(
        self, room_id: str, user_ids: Iterable[str], *, role: Role = "member"
    ) -> list[str]:
        """Add members or change their role; answers the users newly added."""
        return cast(list[str], self._run(calls.set_members(room_id, user_ids, role)))

    def list_members(self, room_id: str) -> list[Member]:
        return cast(list[Member], self._run(calls.list_members(room_id)))

    def remove_member(self, room_id: str, user_id: str) -> None:
        """Remove a member; their connections lose the room's channels at once."""
        self._run(calls.remove_member(room_id, user_id))

    # --- connection control ---------------------------------------------------------------

    def connections(self, user_id: str) -> list[Connection]:
        """A user's live connections."""
        return cast(list[Connection], self._run(calls.connections(user_id)))

    def disconnect(
        self,
        user_id: str,
        *,
        code: int = 4010,
        reason: str = "disconnected by the server",
        client_id: str | None = None,
    ) -> int:
        """Close a user's connections (or one, by ``client_id``); answers how many."""
        return cast(int, self._run(calls.disconnect(user_id, code, reason, client_id)))

    def unsubscribe(self, user_id: str, channel: str) -> int:
        """Take a channel away from every connection of a user; answers how many had it."""
        return cast(int, self._run(calls.unsubscribe(user_id, channel)))


class UserClient:
    """The routes a user calls with their own JWT: ``/api/me/...`` and a member's room
    routes. Made by :meth:`Client.as_user`; shares that client's connections and retries."""

    def __init__(self, client: Client, token: str) -> None:
        self._client = client
        self._token = token

    def _run(self, call: Call) -> Any:
        return self._client._run(call)

    def list_notifications(
        self,
        *,
        limit: int = 20,
        cursor: str | None = None,
        unread_only: bool = False,
        archived: bool = False,
    ) -> NotificationPage:
        call = calls.list_notifications(
            calls.ME, limit, cursor, unread_only, self._token, archived=archived
        )
        return cast(NotificationPage, self._run(call))

    def get_notification(self, notification_id: str) -> Notification:
        call = calls.get_notification(calls.ME, notification_id, self._token)
        return cast(Notification, self._run(call))

    def mark_read(self, ids: Iterable[str]) -> Changed:
        return cast(Changed, self._run(calls.mark_read(calls.ME, ids, self._token)))

    def mark_all_read(self) -> Changed:
        return cast(Changed, self._run(calls.mark_read(calls.ME, None, self._token)))

    def archive_notifications(self, ids: Iterable[str]) -> Changed:
        return cast(Changed, self._run(calls.archive(calls.ME, ids, self._token)))

    def unarchive_notifications(self, ids: Iterable[str]) -> Changed:
        return cast(Changed, self._run(calls.unarchive(calls.ME, ids, self._token)))

    def get_deliveries(self, notification_id: str) -> dict[str, Any]:
        call = calls.get_deliveries(calls.ME, notification_id, self._token)
        return cast(dict[str, Any], self._run(call))

    def delete_notification(self, notification_id: str) -> Changed:
        call = calls.delete_notification(calls.ME, notification_id, self._token)
        return cast(Changed, self._run(call))

    def get_preferences(self) -> dict[str, bool]:
        return cast(dict[str, bool], self._run(calls.get_preferences(calls.ME, self._token)))

    def set_preferences(self, in_app: Mapping[str, bool]) -> dict[str, bool]:
        call = calls.set_preferences(calls.ME, in_app, self._token)
        return cast(dict[str, bool], self._run(call))

    def post_message(self, room_id: str, content: str) -> RoomMessage:
        """Post to a room this user is a member of (not retried once it may have arrived)."""
        return cast(RoomMessage, self._run(calls.post_message(room_id, content, self._token)))

    def list_messages(
        self, room_id: str, *, limit: int = 50, before_seq: int | None = None
    ) -> MessagePage:
        """A room's history, newest first; pass ``nextBeforeSeq`` as ``before_seq``."""
        call = calls.list_messages(room_id, limit, before_seq, self._token)
        return cast(MessagePage, self._run(call))

    def edit_message(self, room_id: str, message_id: str, content: str) -> RoomMessage:
        call = calls.edit_message(room_id, message_id, content, self._token)
        return cast(RoomMessage, self._run(call))

    def delete_message(self, room_id: str, message_id: str) -> DeletedMessage:
        call = calls.delete_message(room_id, message_id, self._token)
        return cast(DeletedMessage, self._run(call))

    def room_presence(self, room_id: str) -> list[str]:
        """The members of the room online now."""
        return cast(list[str], self._run(calls.room_presence(room_id, self._token)))

    def mark_room_read(
        self, room_id: str, *, seq: int | None = None, message_id: str | None = None
    ) -> RoomRead:
        call = calls.mark_room_read(room_id, seq, message_id, self._token)
        return cast(RoomRead, self._run(call))

    def rooms(self) -> list[MyRoom]:
        """The user's rooms with unread counts."""
        return cast(list[MyRoom], self._run(calls.my_rooms(self._token)))

    def blocks(self) -> list[str]:
        return cast(list[str], self._run(calls.blocks(self._token)))

    def block(self, user_id: str) -> bool:
        """Block a user; answers whether that changed anything."""
        answer = cast(dict[str, Any], self._run(calls.block(user_id, True, self._token)))
        return bool(answer["changed"])

    def unblock(self, user_id: str) -> bool:
        answer = cast(dict[str, Any], self._run(calls.block(user_id, False, self._token)))
        return bool(answer["changed"])
