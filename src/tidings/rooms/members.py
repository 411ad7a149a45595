"""A member's read markers and blocks, and the management of rooms and their members
(the server API), mixed into ``Rooms``."""

from __future__ import annotations

import logging
from typing import Any

from .. import cluster, protocol
from ..broker import BrokerError
from ..publication import iso_timestamp
from ..store import Store
from ..store.rooms import Member
from . import rules as r
from .host import Host
from .live import RoomConnections
from .rules import Role, RoomError

log = logging.getLogger("tidings.rooms")


class RoomMembers:
    """Read-marker, block and management methods of ``Rooms``, which supplies ``node``,
    ``store``, ``live`` and ``member``."""

    node: Host
    store: Store
    live: RoomConnections

    async def member(self, room_id: str, user_id: str) -> Member:
        raise NotImplementedError  # pragma: no cover - Rooms' own

    # --- read markers and blocks -----------------------------------------------------------

    async def mark_read(
        self,
        room_id: str,
        user_id: str,
        *,
        seq: int | None = None,
        message_id: str | None = None,
    ) -> protocol.RoomReadEvent:
        """Move the member's read marker; tells their other connections (``ROOM_READ``)."""
        if (seq is None) == (message_id is None):
            raise RoomError(422, "give either seq or messageId")
        await self.member(room_id, user_id)
        if message_id is not None:
            msg = await self.store.get_message(room_id, message_id)
            if msg is None:
                raise RoomError(404, "no such message")
            seq = msg.seq
        assert seq is not None
        if seq < 0:
            raise RoomError(422, "seq must not be negative")
        marker = await self.store.mark_room_read(room_id, user_id, seq)
        if marker is None:
            raise r.not_member()
        unread = (await self.store.unread_counts(user_id)).get(room_id, 0)
        data = protocol.RoomReadEvent(roomId=room_id, lastReadSeq=marker, unreadCount=unread)
        try:
            # Every connection of the user, on every instance (the asking one gets it too,
            # after its reply: the same state twice is harmless, a tab left stale is not).
            await self.node.send_to_user(user_id, data.kind, data)
        except BrokerError as exc:
            log.warning("ROOM_READ for %r not sent: %s", user_id, exc)
        return data

    async def unread(self, user_id: str) -> dict[str, Any]:
        """Every room of the user with its unread count and read marker."""
        counts = await self.store.unread_counts(user_id)
        rooms = await self.store.rooms_of(user_id)
        return {
            "rooms": [
                {
                    "roomId": m.room_id,
                    "role": m.role,
                    "lastReadSeq": m.last_read_seq,
                    "unreadCount": counts.get(m.room_id, 0),
                }
                for m in rooms
            ]
        }

    async def block(self, user_id: str, blocked_id: str, *, on: bool) -> bool:
        """Block or unblock; the user's room subscriptions here get the new filter at once."""
        r.check_user_id(blocked_id)
        if blocked_id == user_id:
            raise RoomError(422, "one cannot block oneself")
        if on:
            changed = await self.store.block(user_id, blocked_id, now=self.node.clock())
        else:
            changed = await self.store.unblock(user_id, blocked_id)
        blocked = sorted(await self.store.blocked(user_id))
        op = cluster.RoomBlocks(user=user_id, blocked=blocked)
        try:
            # Every instance holding the user's connections refilters them
            # (control.ControlPlane.apply).
            await self.node.control(op)
        except BrokerError as exc:
            log.warning("block list of %r not sent to other instances: %s", user_id, exc)
            self.live.refilter(self.node.local_sessions(user_id), blocked)
        return changed

    # --- management (server API) -----------------------------------------------------------

    async def create_room(self, room_id: str, name: str | None, ws_post: bool) -> bool:
        r.check_room_id(room_id)
        r.check_name(name)
        return await self.store.create_room(
            room_id, name=name, ws_post=ws_post, now=self.node.clock()
        )

    async def set_members(self, room_id: str, user_ids: list[str], role: Role) -> list[str]:
        """Add members (or change their role); returns those who were new."""
        if len(user_ids) > r.MAX_MEMBERS_PER_CALL:
            raise RoomError(422, f"at most {r.MAX_MEMBERS_PER_CALL} users per call")
        for user in user_ids:
            r.check_user_id(user)
        if await self.store.get_room(room_id) is None:
            raise RoomError(404, "no such room")
        now = self.node.clock()
        added = []
        for user in dict.fromkeys(user_ids):
            if await self.store.set_member(room_id, user, role.value, now=now):
                added.append(user)
        return added

    async def remove_member(self, room_id: str, user_id: str) -> bool:
        """Remove a member; their connections, on every instance, lose the room's channels."""
        removed = await self.store.remove_member(room_id, user_id)
        await self._evict_everywhere(room_id, [user_id])
        return removed

    async def delete_room(self, room_id: str) -> bool:
        members = [m.user_id for m in await self.store.members(room_id)]
        deleted = await self.store.delete_room(room_id)
        await self._evict_everywhere(room_id, members)
        return deleted

    async def _evict_everywhere(self, room_id: str, user_ids: list[str]) -> None:
        for user_id in user_ids:
            op = cluster.RoomEvict(user=user_id, room=room_id)
            try:
                await self.node.control(op)
            except BrokerError as exc:
                log.warning("eviction of %r from %r not sent: %s", user_id, room_id, exc)
                self.live.evict(self.node.local_sessions(user_id), room_id)

    async def members(self, room_id: str) -> list[dict[str, Any]]:
        if await self.store.get_room(room_id) is None:
            raise RoomError(404, "no such room")
        return [
            {
                "userId": m.user_id,
                "role": m.role,
                "joinedAt": iso_timestamp(m.joined_at),
                "lastReadSeq": m.last_read_seq,
            }
            for m in await self.store.members(room_id)
        ]
