"""Chat rooms of one node: the rules of ``rules.py`` applied around the store, the hub and
presence.

``Rooms`` is to chat what ``Inbox`` is to notifications: the HTTP routes (``api.rooms``)
and the WebSocket commands (through ``Session``'s hook, ``intercept``) both call it.
Every room event goes out with ``Node.publish`` on the room's channels, serialized once
for all subscribers; blocking rides the hub's filter groups (``rooms.BlockFilter``), so
the common case, a subscriber who blocks nobody, costs nothing extra per delivery.

Membership lives in the store. A subscription to a ``room:*`` channel is checked against
it before the session's normal subscribe runs, which is why those subscriptions (and the
room commands) are handled asynchronously, one at a time per connection, in the order
the client sent them: that per-connection side (subscriptions, presence, typing, command
dispatch) is ``rooms.live.RoomConnections``, kept in ``Rooms.live``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import msgspec

from .. import cluster, protocol
from ..broker import BrokerError
from ..directory import NOBODY, Profile, Profiles
from ..presence import Presence, open_presence
from ..publication import iso_timestamp
from ..ratelimit import TokenBucket
from ..session import Session
from ..store import Store, StoreError
from ..store.rooms import Member, RoomMessage
from ..tasks import TaskSet
from . import rules as r
from .host import Host
from .live import RoomConnections
from .members import RoomMembers
from .rules import Role, RoomError

log = logging.getLogger("tidings.rooms")

__all__ = ["Host", "Rooms"]

GRACE_SECONDS = 5.0
TICK_SECONDS = 0.25
MAX_BUCKETS = 100_000


class Rooms(RoomMembers):
    """Rooms, messages, blocks, read markers, typing and presence for one node.

    Args:
        node: the node whose hub delivers room events.
        store: where rooms, members and messages live.
        presence: the presence backend (shared by the cluster's instances).
        grace: seconds a user stays online after their last connection to a room closed.
        heartbeat: seconds between presence heartbeats and sweeps of dead instances.
        typing_ttl, typing_throttle: see ``rooms.TypingTracker``.
    """

    def __init__(
        self,
        node: Host,
        store: Store,
        presence: Presence,
        *,
        grace: float = GRACE_SECONDS,
        heartbeat: float = 5.0,
        typing_ttl: float = 5.0,
        typing_throttle: float = 1.0,
    ) -> None:
        self.node = node
        self.store = store
        self.presence = presence
        self.grace = grace
        self.heartbeat = heartbeat
        self._tasks = TaskSet(log, "rooms")
        self._loops: list[asyncio.Task[None]] = []
        # The connections' side: room subscriptions, presence, typing, commands.
        self.live = RoomConnections(self, typing_ttl=typing_ttl, typing_throttle=typing_throttle)
        # Posts per user (HTTP and WebSocket alike), on the client rate-limit settings.
        self._post_buckets: dict[str, TokenBucket] = {}
        # Authors' names and avatars for the events (the user directory), cached.
        self.profiles = Profiles(store, node.monotonic)

    @classmethod
    def from_settings(cls, node: Host, store: Store) -> Rooms:
        """Rooms as the node's settings describe: presence in Redis when clustered."""
        s = node.settings
        presence = open_presence(
            s.broker_url,
            prefix=s.broker_prefix,
            ttl=3 * s.cluster_heartbeat,
            command_timeout=s.redis_command_timeout,
        )
        return cls(
            node,
            store,
            presence,
            grace=s.presence_grace,
            heartbeat=s.cluster_heartbeat,
            typing_ttl=s.typing_timeout,
        )

    # --- what sessions, the node and the tests reach through ``node.rooms`` -----------------

    def intercept(self, session: Session, command: protocol.Command) -> bool:
        """Session hook: see ``RoomConnections.intercept``."""
        return self.live.intercept(session, command)

    def on_close(self, session: Session) -> None:
        """Session hook: see ``RoomConnections.on_close``."""
        self.live.on_close(session)

    def control(self, sessions: list[Session], op: cluster.RoomBlocks | cluster.RoomEvict) -> int:
        """Node hook for ``room_*`` control operations: see ``RoomConnections.control``."""
        return self.live.control(sessions, op)

    @property
    def draining(self) -> bool:
        return self.live.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.live.draining = value

    @property
    def typing(self) -> r.TypingTracker:
        return self.live.typing

    @property
    def pending_settles(self) -> int:
        """Presence checks waiting for their grace period to end."""
        return len(self.live.settles)

    async def tick(self) -> None:
        """Expire typing and settle presence whose grace period is over (node.monotonic)."""
        await self.live.tick()

    async def beat(self) -> None:
        """Refresh this instance's presence and clean up after dead instances."""
        await self.live.beat()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start presence, the typing/grace ticker and the presence heartbeat."""
        await self.presence.start()
        loop = asyncio.get_running_loop()
        self._loops.append(loop.create_task(self._every(TICK_SECONDS, self.tick)))
        self._loops.append(loop.create_task(self._every(self.heartbeat, self.beat)))

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except (BrokerError, StoreError) as exc:
                # Redis or the store unavailable (presence errors are BrokerErrors): the
                # job is retried next time; no traceback for a fault we expect.
                log.warning("rooms background job: %s; retrying next time", exc)
            except Exception:
                log.exception("rooms background job failed; retrying next time")

    async def stop(self) -> None:
        """Stop the loops, finish queued work, leave the presence cluster."""
        for task in self._loops:
            task.cancel()
        # A loop cancelled inside a Redis call can take long to unwind (seen under CPU
        # starvation: redis-py shields its connection release); they are only periodic
        # jobs, so do not wait for them past a moment.
        _, late = await asyncio.wait(self._loops, timeout=2.0)
        if late:
            log.warning("rooms: %d background loop(s) still unwinding at shutdown", len(late))
        self._loops.clear()
        log.debug("rooms: loops stopped")
        await self._tasks.drain(self.node.settings.shutdown_timeout)
        log.debug("rooms: background work done")
        await self.presence.close()
        log.debug("rooms: presence closed")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)

    # --- events, presence queries, messages ------------------------------------------------

    async def emit(self, channel: str, event: protocol.ServerMessage) -> None:
        """Publish a room event to every instance's subscribers. The store is the record:
        an event lost to a broker outage is found again in history, so it is logged, not
        raised."""
        # As plain data: subscription filters (blocks) read its fields.
        try:
            await self.node.publish(channel, event.kind, msgspec.to_builtins(event))
        except BrokerError as exc:
            log.warning("%s on %s not published: %s", event.kind, channel, exc)

    async def online(self, room_id: str, user_id: str | None) -> list[str]:
        """Who is online in the room, asked by ``user_id`` (who must be a member) or by
        an operator (None: the room must exist)."""
        await self.reader(room_id, user_id)
        return await self.presence.online(room_id)

    async def is_online(self, room_id: str, user_id: str | None, who: str) -> bool:
        await self.reader(room_id, user_id)
        return await self.presence.is_online(room_id, who)

    async def reader(self, room_id: str, user_id: str | None) -> None:
        """Check that ``user_id`` may read the room: a member; or, for an operator (None,
        a server API key), that the room exists (404 otherwise)."""
        if user_id is not None:
            await self.member(room_id, user_id)
        elif await self.store.get_room(room_id) is None:
            raise RoomError(404, "no such room")

    async def member(self, room_id: str, user_id: str) -> Member:
        member = await self.store.get_member(room_id, user_id)
        if member is None:
            raise r.not_member()
        return member

    def view(self, msg: RoomMessage, author: Profile = NOBODY) -> protocol.RoomMessage:
        return r.message_view(
            message_id=msg.id,
            room_id=msg.room_id,
            seq=msg.seq,
            author_id=msg.author_id,
            content=msg.body,
            created_at=iso_timestamp(msg.created_at),
            edited_at=None if msg.edited_at is None else iso_timestamp(msg.edited_at),
            deleted=msg.deleted_at is not None,
            author_name=author[0],
            author_image=author[1],
        )

    async def post(
        self, room_id: str, user_id: str, content: Any, *, websocket: bool = False
    ) -> protocol.RoomMessage:
        """Store a message and publish ``CHAT_MESSAGE``; returns its view."""
        text = r.check_content(content)
        self._check_rate(user_id)
        await self.member(room_id, user_id)
        if websocket:
            room = await self.store.get_room(room_id)
            if room is not None and not room.ws_post:
                raise RoomError(403, "this room takes messages over HTTP only")
        msg = await self.store.add_message(room_id, user_id, text, now=self.node.clock())
        if msg is None:  # the room was deleted meanwhile
            raise r.not_member()
        view = self.view(msg, await self.profiles.get(user_id))
        channels = r.channels(room_id)
        if self.live.typing.stop(room_id, user_id):
            await self.live.publish_typing(room_id, user_id, False)
        await self.emit(channels.messages, view)
        return view

    def _check_rate(self, user_id: str) -> None:
        s = self.node.settings
        if not s.rate_limit_enabled:
            return
        bucket = self._post_buckets.get(user_id)
        if bucket is None:
            if len(self._post_buckets) >= MAX_BUCKETS:
                # A full bucket is what a forgotten user would get anyway: forgetting
                # everyone at once only ever lets through one extra burst.
                self._post_buckets.clear()
            bucket = self._post_buckets[user_id] = TokenBucket(
                s.rate_limit_per_second, s.rate_limit_burst, self.node.monotonic
            )
        if not bucket.take():
            raise RoomError(429, "posting too fast; slow down")

    async def edit(
        self, room_id: str, user_id: str, message_id: str, content: Any
    ) -> protocol.RoomMessage:
        """The author replaces the text; publishes ``MESSAGE_EDIT``."""
        text = r.check_content(content)
        await self.member(room_id, user_id)
        msg = await self.store.get_message(room_id, message_id)
        if msg is None:
            raise RoomError(404, "no such message")
        r.check_edit(msg.author_id, user_id, msg.deleted_at is not None)
        edited = await self.store.edit_message(room_id, message_id, text, now=self.node.clock())
        if edited is None:
            raise RoomError(404, "no such message")
        view = self.view(edited, await self.profiles.get(edited.author_id))
        await self.emit(r.channels(room_id).messages, r.edit_event(view))
        return view

    async def delete(
        self, room_id: str, user_id: str, message_id: str
    ) -> protocol.MessageDeleteEvent:
        """The author or a moderator deletes; publishes ``MESSAGE_DELETE``."""
        member = await self.member(room_id, user_id)
        msg = await self.store.get_message(room_id, message_id)
        if msg is None:
            raise RoomError(404, "no such message")
        r.check_delete(msg.author_id, user_id, Role(member.role), msg.deleted_at is not None)
        gone = await self.store.delete_message(
            room_id, message_id, by=user_id, now=self.node.clock()
        )
        if gone is None:
            raise RoomError(404, "no such message")
        event = r.delete_event(self.view(gone), user_id)
        await self.emit(r.channels(room_id).messages, event)
        return event

    async def history(
        self, room_id: str, user_id: str | None, *, before_seq: int | None, limit: int
    ) -> protocol.RoomHistoryPage:
        """A page of history, newest first, without the authors the reader blocked (an
        operator, ``user_id`` None, blocked nobody)."""
        r.check_limit(limit)
        await self.reader(room_id, user_id)
        blocked = set() if user_id is None else await self.store.blocked(user_id)
        rows = await self.store.messages(
            room_id, before_seq=before_seq, limit=limit, exclude_authors=blocked
        )
        more = len(rows) == limit and rows[-1].seq > 1
        authors = await self.profiles.many(m.author_id for m in rows)
        return protocol.RoomHistoryPage(
            roomId=room_id,
            messages=[self.view(m, authors[m.author_id]) for m in rows],
            nextBeforeSeq=rows[-1].seq if more else None,
        )
