"""A user's read state and queries: mark read, archive, unarchive, delete, acknowledge,
list and get, each change told to every connection of the user on every instance.
Mixed into ``Inbox``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from .. import cluster, protocol
from ..broker import BrokerError
from ..session import Session
from ..store import Store
from .host import Host
from .push import Pusher
from .requests import MAX_PAGE, InboxError, decode_cursor, encode_cursor, view

log = logging.getLogger("tidings.inbox")


class InboxState:
    """Read-state and query methods of ``Inbox``, which supplies ``node``, ``store``,
    ``pusher`` and ``receive``."""

    node: Host
    store: Store
    pusher: Pusher

    def receive(
        self,
        event: cluster.Committed | cluster.CommittedMany | cluster.Told | cluster.Acknowledged,
    ) -> int:
        raise NotImplementedError  # pragma: no cover - Inbox's own

    async def unread_count(self, user_id: str) -> int:
        return await self.store.unread_count(user_id, now=self.node.clock())

    async def mark_read(
        self,
        user_id: str,
        ids: Sequence[str] | None,
        *,
        reply: Session | None = None,
        reply_to: str | None = None,
    ) -> tuple[list[str], int]:
        """Mark read and tell every connection of the user; returns (changed ids, unread).

        ``reply`` (the asking connection) gets its copy with ``replyTo`` even when
        nothing changed; the user's other connections hear only of changes.
        """
        changed = await self.store.mark_read(user_id, ids, now=self.node.clock())
        unread = await self.unread_count(user_id)
        data = protocol.NotificationRead(ids=changed, unreadCount=unread)
        await self._tell_user(user_id, data, changed, reply, reply_to)
        return changed, unread

    async def remove(
        self,
        user_id: str,
        ids: Sequence[str],
        *,
        delete: bool,
        reply: Session | None = None,
        reply_to: str | None = None,
    ) -> tuple[list[str], int]:
        """Archive (or delete) and tell every connection of the user, as ``mark_read`` does:
        ``notification_archived`` / ``notification_deleted`` with the ids and unread count."""
        if delete:
            changed = await self.store.delete(user_id, ids)
        else:
            changed = await self.store.archive(user_id, ids, now=self.node.clock())
        unread = await self.unread_count(user_id)
        told = protocol.NotificationDeleted if delete else protocol.NotificationArchived
        # Gone from the inbox: no tab on any instance redelivers them.
        await self._tell_user(
            user_id,
            told(ids=changed, unreadCount=unread),
            changed,
            reply,
            reply_to,
            pop=True,
        )
        return changed, unread

    async def unarchive(
        self,
        user_id: str,
        ids: Sequence[str],
        *,
        reply: Session | None = None,
        reply_to: str | None = None,
    ) -> tuple[list[str], int]:
        """Bring archived notifications back and tell every connection of the user
        (``notification_unarchived``), as ``mark_read`` does. They are not pushed again:
        a list that wants them fetches its first page."""
        changed = await self.store.unarchive(user_id, ids)
        unread = await self.unread_count(user_id)
        data = protocol.NotificationUnarchived(ids=changed, unreadCount=unread)
        await self._tell_user(user_id, data, changed, reply, reply_to)
        return changed, unread

    async def _tell_user(
        self,
        user_id: str,
        data: protocol.NotificationRead,
        changed: list[str],
        reply: Session | None,
        reply_to: str | None,
        *,
        pop: bool = False,
    ) -> None:
        """Tell the user's connections on every instance (but ``reply``, which gets its
        own copy with ``replyTo``) of a change; ``pop`` ends redelivery of ``changed``."""
        if reply is not None:
            if pop:
                awaiting = self.pusher.reader(reply).awaiting
                for nid in changed:
                    awaiting.pop(nid, None)
            reply.send(data, reply_to=reply_to)
        if not changed:
            return
        envelope = self.node.envelope(self.node.new_id(), data.kind, data)
        told = cluster.Told(
            user=user_id,
            skip=reply.client_id if reply else None,
            pop=changed if pop else [],
            envelope=msgspec.Raw(envelope),
        )
        await self._to_user(told)

    async def _to_user(self, event: cluster.Told | cluster.Acknowledged) -> None:
        """An inbox event for the user's connections on every instance (``receive`` on
        each); when the cluster cannot be reached, this instance's get it at least."""
        try:
            await self.node.send(cluster.topic("user", event.user), event)
        except BrokerError as exc:
            log.warning("inbox event for %s not sent over the cluster: %s", event.user, exc)
            self.receive(event)

    async def ack(self, user_id: str, ids: Sequence[str]) -> list[str]:
        """Record acknowledgements; no tab of the user, on any instance, gets these again."""
        await self._to_user(cluster.Acknowledged(user=user_id, pop=list(ids)))
        return await self.store.ack(user_id, ids, now=self.node.clock())

    async def list(
        self,
        user_id: str,
        *,
        unread_only: bool,
        limit: int,
        cursor: str | None,
        archived: bool = False,
    ) -> protocol.Notifications:
        """One page, newest first: ``{items, unreadCount, nextCursor}``; the inbox, or
        with ``archived`` the archived notifications (newest seq first, as the inbox)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InboxError(f"limit must be 1 to {MAX_PAGE}")
        before = None if cursor is None else decode_cursor(cursor)
        rows = await self.store.page(
            user_id,
            unread_only=unread_only,
            archived_only=archived,
            before_seq=before,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return protocol.Notifications(
            items=[view(n) for n in rows],
            unreadCount=await self.unread_count(user_id),
            nextCursor=encode_cursor(rows[-1].seq) if more and rows else None,
        )

    async def get(self, user_id: str, notification_id: str) -> protocol.Notification | None:
        n = await self.store.get(user_id, notification_id)
        return None if n is None else view(n)
