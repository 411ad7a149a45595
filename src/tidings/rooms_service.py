"""Chat rooms of one node: the rules of ``rooms.py`` applied around the store, the hub and
presence.

``Rooms`` is to chat what ``Inbox`` is to notifications: the HTTP routes (``rooms_api``)
and the WebSocket commands (through ``Session``'s hook, ``intercept``) both call it.
Every room event goes out with ``Node.publish`` on the room's channels, serialized once
for all subscribers; blocking rides the hub's filter groups (``rooms.BlockFilter``), so
the common case, a subscriber who blocks nobody, costs nothing extra per delivery.

Membership lives in the store. A subscription to a ``room:*`` channel is checked against
it before the session's normal subscribe runs, which is why those subscriptions (and the
room commands) are handled here, asynchronously, one at a time per connection, in the
order the client sent them.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Coroutine
from typing import Any

from . import protocol
from . import rooms as r
from .broker import BrokerError
from .node import Node, iso_timestamp
from .presence import Presence, open_presence
from .protocol import ErrorCode
from .ratelimit import TokenBucket
from .rooms import Role, RoomError
from .session import Session, State
from .store import Store
from .store.rooms import Member, RoomMessage

log = logging.getLogger("tidings.rooms")

GRACE_SECONDS = 5.0
TICK_SECONDS = 0.25
MAX_BUCKETS = 100_000


class Rooms:
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
        node: Node,
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
        self.typing = r.TypingTracker(ttl=typing_ttl, throttle=typing_throttle)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        # The last queued room operation of each connection: the next one waits for it.
        self._chains: dict[Session, asyncio.Task[Any]] = {}
        # Room channels each connection subscribed through here: channel -> (room, kind).
        self._subs: dict[Session, dict[str, tuple[str, str]]] = {}
        # Rooms each connection counts in (subscribed to ``room:{id}``).
        self._present: dict[Session, set[str]] = {}
        # Block lists of users with room subscriptions here, for their hub filters.
        self._blocked: dict[str, frozenset[str]] = {}
        # (due on node.monotonic, room, user): presence checks after the grace period.
        self._settles: list[tuple[float, str, str]] = []
        # Set by the server before it closes every connection on shutdown: presence entries
        # are then left to expire with this instance's liveness, and the survivors settle
        # them (a client that reconnects elsewhere in time never leaves).
        self.draining = False
        # Posts per user (HTTP and WebSocket alike), on the client rate-limit settings.
        self._post_buckets: dict[str, TokenBucket] = {}

    @classmethod
    def from_settings(cls, node: Node, store: Store) -> Rooms:
        """Rooms as the node's settings describe: presence in Redis when clustered."""
        s = node.settings
        presence = open_presence(s.broker_url, prefix=s.broker_prefix, ttl=3 * s.cluster_heartbeat)
        return cls(
            node,
            store,
            presence,
            grace=s.presence_grace,
            heartbeat=s.cluster_heartbeat,
            typing_ttl=s.typing_timeout,
        )

    @property
    def pending_settles(self) -> int:
        """Presence checks waiting for their grace period to end."""
        return len(self._settles)

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
            except Exception:
                log.exception("rooms background job failed; retrying next time")

    async def stop(self) -> None:
        """Stop the loops, finish queued work, leave the presence cluster."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.presence.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("rooms task failed", exc_info=task.exception())

    def _queue(self, session: Session, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` after the connection's earlier room operations."""
        previous = self._chains.get(session)

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await coro

        task = self._chains[session] = self.spawn(run())

        def forget(_: asyncio.Task[Any]) -> None:
            if self._chains.get(session) is task:
                del self._chains[session]

        task.add_done_callback(forget)

    # --- session hooks --------------------------------------------------------------------

    def intercept(self, session: Session, command: protocol.Command) -> bool:
        """Take the commands rooms handle (subscriptions to ``room:*`` channels and the room
        commands); False leaves the command to the session."""
        if isinstance(command, protocol.Subscribe | protocol.Unsubscribe):
            parsed = r.parse_channel(command.channel)
            if parsed is None:
                return False
            if isinstance(command, protocol.Subscribe):
                self._queue(session, self._subscribe(session, command, *parsed))
            else:
                self._queue(session, self._unsubscribe(session, command))
            return True
        if isinstance(command, protocol.RoomCommand):
            self._queue(session, self._command(session, command))
            return True
        if isinstance(command, protocol.Publish) and r.parse_channel(command.channel):
            # Whatever a namespace table says: a client-made CHAT_MESSAGE would be a forgery.
            session.error(
                ErrorCode.FORBIDDEN,
                "room channels carry room events only: post with chat_message or the HTTP API",
                reply_to=command.id,
                channel=command.channel[:255],
            )
            return True
        return False

    def on_close(self, session: Session) -> None:
        """The connection left the hub: its presence goes, after the grace period."""
        if session in self._subs or session in self._present or session in self._chains:
            self._queue(session, self._closed(session))

    async def _closed(self, session: Session) -> None:
        self._subs.pop(session, None)
        rooms = self._present.pop(session, set())
        if self.draining:
            rooms = set()
        for room_id in rooms:
            await self._depart(session, room_id)
        if not any(s.user_id == session.user_id for s in self._subs):
            self._blocked.pop(session.user_id, None)

    async def _subscribe(
        self, session: Session, cmd: protocol.Subscribe, room_id: str, kind: str
    ) -> None:
        channel = cmd.channel
        if kind == "other":
            session.error(
                ErrorCode.INVALID_MESSAGE,
                "room channels are room:{id}, room:{id}:typing and room:{id}:online",
                reply_to=cmd.id,
                channel=channel[:255],
            )
            return
        member = await self.store.get_member(room_id, session.user_id)
        blocked = await self._blocked_of(session.user_id) if member is not None else frozenset()
        if session.state is not State.OPEN:
            return
        if member is None:
            session.error(
                ErrorCode.FORBIDDEN, r.not_member().message, reply_to=cmd.id, channel=channel
            )
            return
        session._subscribe(cmd)  # the usual checks and reply: name, limits, filters
        if channel not in session.filters:
            return
        self._subs.setdefault(session, {})[channel] = (room_id, kind)
        self._apply_filter(session, channel, kind, blocked)
        if kind == "messages":
            await self._arrive(session, room_id)

    async def _unsubscribe(self, session: Session, cmd: protocol.Unsubscribe) -> None:
        session._unsubscribe(cmd)
        subs = self._subs.get(session, {})
        entry = subs.pop(cmd.channel, None)
        if entry is not None and entry[1] == "messages":
            await self._leave(session, entry[0])

    async def _leave(self, session: Session, room_id: str) -> None:
        rooms = self._present.get(session)
        if rooms is not None and room_id in rooms:
            rooms.discard(room_id)
            await self._depart(session, room_id)

    def _apply_filter(
        self, session: Session, channel: str, kind: str, blocked: frozenset[str]
    ) -> None:
        flt = r.subscription_filter(kind, blocked, session.filters.get(channel))
        if isinstance(flt, r.BlockFilter):
            self.node.hub.subscribe(session, channel, flt)

    async def _blocked_of(self, user_id: str) -> frozenset[str]:
        blocked = self._blocked.get(user_id)
        if blocked is None:
            blocked = self._blocked[user_id] = frozenset(await self.store.blocked(user_id))
        return blocked

    # --- presence -------------------------------------------------------------------------

    async def _arrive(self, session: Session, room_id: str) -> None:
        rooms = self._present.setdefault(session, set())
        if room_id in rooms:
            return
        rooms.add(room_id)
        if await self.presence.connect(room_id, session.user_id, session.client_id):
            await self._publish_online(room_id, r.USER_JOINED, session.user_id)

    async def _depart(self, session: Session, room_id: str) -> None:
        await self.presence.disconnect(room_id, session.user_id, session.client_id)
        due = self.node.monotonic() + self.grace
        heapq.heappush(self._settles, (due, room_id, session.user_id))

    async def _emit(self, channel: str, kind: str, data: dict[str, Any]) -> None:
        """Publish a room event to every instance's subscribers. The store is the record:
        an event lost to a broker outage is found again in history, so it is logged, not
        raised."""
        try:
            await self.node.publish(channel, kind, data)
        except BrokerError as exc:
            log.warning("%s on %s not published: %s", kind, channel, exc)

    async def _publish_online(self, room_id: str, kind: str, user_id: str) -> None:
        await self._emit(r.channels(room_id).online, kind, r.presence_event(room_id, user_id))

    async def tick(self) -> None:
        """Expire typing and settle presence whose grace period is over (node.monotonic)."""
        now = self.node.monotonic()
        for room_id, user_id in self.typing.expired(now):
            await self._publish_typing(room_id, user_id, False)
        while self._settles and self._settles[0][0] <= now:
            _, room_id, user_id = heapq.heappop(self._settles)
            if await self.presence.settle(room_id, user_id):
                await self._publish_online(room_id, r.USER_LEFT, user_id)

    async def beat(self) -> None:
        """Refresh this instance's presence and clean up after dead instances."""
        await self.presence.heartbeat()
        for room_id, user_id in await self.presence.sweep():
            await self._publish_online(room_id, r.USER_LEFT, user_id)

    async def online(self, room_id: str, user_id: str) -> list[str]:
        """Who is online in the room (asked by ``user_id``, who must be a member)."""
        await self._member(room_id, user_id)
        return await self.presence.online(room_id)

    async def is_online(self, room_id: str, user_id: str, who: str) -> bool:
        await self._member(room_id, user_id)
        return await self.presence.is_online(room_id, who)

    # --- messages -------------------------------------------------------------------------

    async def _member(self, room_id: str, user_id: str) -> Member:
        member = await self.store.get_member(room_id, user_id)
        if member is None:
            raise r.not_member()
        return member

    def view(self, msg: RoomMessage) -> dict[str, Any]:
        return r.message_view(
            message_id=msg.id,
            room_id=msg.room_id,
            seq=msg.seq,
            author_id=msg.author_id,
            content=msg.body,
            created_at=iso_timestamp(msg.created_at),
            edited_at=None if msg.edited_at is None else iso_timestamp(msg.edited_at),
            deleted=msg.deleted_at is not None,
        )

    async def post(
        self, room_id: str, user_id: str, content: Any, *, websocket: bool = False
    ) -> dict[str, Any]:
        """Store a message and publish ``CHAT_MESSAGE``; returns its view."""
        text = r.check_content(content)
        self._check_rate(user_id)
        await self._member(room_id, user_id)
        if websocket:
            room = await self.store.get_room(room_id)
            if room is not None and not room.ws_post:
                raise RoomError(403, "this room takes messages over HTTP only")
        msg = await self.store.add_message(room_id, user_id, text, now=self.node.clock())
        if msg is None:  # the room was deleted meanwhile
            raise r.not_member()
        view = self.view(msg)
        channels = r.channels(room_id)
        if self.typing.stop(room_id, user_id):
            await self._publish_typing(room_id, user_id, False)
        await self._emit(channels.messages, r.CHAT_MESSAGE, view)
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
    ) -> dict[str, Any]:
        """The author replaces the text; publishes ``MESSAGE_EDIT``."""
        text = r.check_content(content)
        await self._member(room_id, user_id)
        msg = await self.store.get_message(room_id, message_id)
        if msg is None:
            raise RoomError(404, "no such message")
        r.check_edit(msg.author_id, user_id, msg.deleted_at is not None)
        edited = await self.store.edit_message(room_id, message_id, text, now=self.node.clock())
        if edited is None:
            raise RoomError(404, "no such message")
        view = self.view(edited)
        await self._emit(r.channels(room_id).messages, r.MESSAGE_EDIT, r.edit_event(view))
        return view

    async def delete(self, room_id: str, user_id: str, message_id: str) -> dict[str, Any]:
        """The author or a moderator deletes; publishes ``MESSAGE_DELETE``."""
        member = await self._member(room_id, user_id)
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
        await self._emit(r.channels(room_id).messages, r.MESSAGE_DELETE, event)
        return event

    async def history(
        self, room_id: str, user_id: str, *, before_seq: int | None, limit: int
    ) -> dict[str, Any]:
        """A page of history, newest first, without the authors the reader blocked."""
        r.check_limit(limit)
        await self._member(room_id, user_id)
        blocked = await self.store.blocked(user_id)
        rows = await self.store.messages(
            room_id, before_seq=before_seq, limit=limit, exclude_authors=blocked
        )
        more = len(rows) == limit and rows[-1].seq > 1
        return {
            "roomId": room_id,
            "messages": [self.view(m) for m in rows],
            "nextBeforeSeq": rows[-1].seq if more else None,
        }

    # --- typing ---------------------------------------------------------------------------

    async def _publish_typing(self, room_id: str, user_id: str, is_typing: bool) -> None:
        await self._emit(
            r.channels(room_id).typing, r.TYPING, r.typing_event(room_id, user_id, is_typing)
        )

    def _subscribed_to(self, session: Session, room_id: str) -> bool:
        return any(room == room_id for room, _ in self._subs.get(session, {}).values())

    async def set_typing(self, session: Session, room_id: str, is_typing: bool) -> None:
        """A client's ``TYPING``: throttled per user and room, never stored."""
        if not self._subscribed_to(session, room_id):
            # Subscribed connections were checked when they subscribed; others ask once.
            await self._member(room_id, session.user_id)
        user_id = session.user_id
        if is_typing:
            if self.typing.start(room_id, user_id, self.node.monotonic()):
                await self._publish_typing(room_id, user_id, True)
        elif self.typing.stop(room_id, user_id):
            await self._publish_typing(room_id, user_id, False)

    # --- read markers ---------------------------------------------------------------------

    async def mark_read(
        self,
        room_id: str,
        user_id: str,
        *,
        seq: int | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """Move the member's read marker; tells their other connections (``ROOM_READ``)."""
        if (seq is None) == (message_id is None):
            raise RoomError(422, "give either seq or messageId")
        await self._member(room_id, user_id)
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
        data = {"roomId": room_id, "lastReadSeq": marker, "unreadCount": unread}
        try:
            # Every connection of the user, on every instance (the asking one gets it too,
            # after its reply: the same state twice is harmless, a tab left stale is not).
            await self.node.send_to_user(user_id, r.ROOM_READ, data)
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

    # --- blocks ---------------------------------------------------------------------------

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
        op = {"op": "room_blocks", "user": user_id, "blocked": blocked}
        try:
            # Every instance holding the user's connections refilters them (Node._apply).
            await self.node.control(op)
        except BrokerError as exc:
            log.warning("block list of %r not sent to other instances: %s", user_id, exc)
            self.refilter(self.node.local_sessions(user_id), blocked)
        return changed

    def control(self, sessions: list[Session], op: dict[str, Any]) -> int:
        """A room operation sent to every instance holding a user's connections
        (``Node.control``): ``room_blocks`` (new block list) or ``room_evict`` (removed
        from a room). Returns how many subscriptions it changed."""
        if op["op"] == "room_blocks":
            return self.refilter(sessions, op["blocked"])
        if op["op"] == "room_evict":
            return self.evict(sessions, op["room"])
        raise ValueError(f"unknown room operation {op['op']!r}")

    def refilter(self, sessions: list[Session], blocked: list[str]) -> int:
        """Give these connections (one user's) the hub filters of a new block list."""
        if not sessions:
            return 0
        user_id = sessions[0].user_id
        frozen = frozenset(blocked)
        if user_id in self._blocked or any(s.user_id == user_id for s in self._subs):
            self._blocked[user_id] = frozen
        count = 0
        for session in sessions:
            subs = self._subs.get(session, {})
            if session.state is not State.OPEN:
                continue
            for channel, (_, kind) in subs.items():
                flt = r.subscription_filter(kind, frozen, session.filters.get(channel))
                self.node.hub.subscribe(session, channel, flt)
                count += 1
        return count

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
            op = {"op": "room_evict", "user": user_id, "room": room_id}
            try:
                await self.node.control(op)
            except BrokerError as exc:
                log.warning("eviction of %r from %r not sent: %s", user_id, room_id, exc)
                self.evict(self.node.local_sessions(user_id), room_id)

    def evict(self, sessions: list[Session], room_id: str) -> int:
        """Drop these connections' subscriptions to the room's channels (telling them,
        ``unsubscribed`` with ``byServer``) and their presence there."""
        count = 0
        for session in sessions:
            subs = self._subs.get(session, {})
            for channel, (room, _) in list(subs.items()):
                if room == room_id:
                    del subs[channel]
                    session.unsubscribe(channel)
                    count += 1
            rooms = self._present.get(session)
            if rooms is not None and room_id in rooms:
                rooms.discard(room_id)
                self._queue(session, self._depart(session, room_id))
        return count

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

    # --- WebSocket commands ---------------------------------------------------------------

    async def _command(self, session: Session, cmd: protocol.RoomCommand) -> None:
        if session.state is not State.OPEN:
            return
        try:
            reply = await self._run(session, cmd)
        except RoomError as exc:
            code = {403: ErrorCode.FORBIDDEN, 429: ErrorCode.RATE_LIMIT}.get(
                exc.status, ErrorCode.INVALID_MESSAGE
            )
            session.error(code, exc.message, reply_to=cmd.id)
            return
        except Exception:
            log.exception("error handling %s from %s", cmd.name, session.client_id)
            session.error(ErrorCode.SERVER_ERROR, "internal error", reply_to=cmd.id)
            return
        if reply is not None and session.state is State.OPEN:
            session.send(reply[0], reply[1], reply_to=cmd.id)

    async def _run(
        self, session: Session, cmd: protocol.RoomCommand
    ) -> tuple[str, dict[str, Any]] | None:
        user = session.user_id
        if isinstance(cmd, protocol.ChatMessage):
            view = await self.post(cmd.roomId, user, cmd.content, websocket=True)
            return "message_posted", view
        if isinstance(cmd, protocol.MessageEdit):
            return "message_edited", await self.edit(cmd.roomId, user, cmd.messageId, cmd.content)
        if isinstance(cmd, protocol.MessageDelete):
            return "message_deleted", await self.delete(cmd.roomId, user, cmd.messageId)
        if isinstance(cmd, protocol.Typing):
            await self.set_typing(session, cmd.roomId, cmd.isTyping)
            # Typing is high-rate: a reply only when the client asked for one (an id).
            return None if cmd.id is None else ("typing_sent", {"roomId": cmd.roomId})
        if isinstance(cmd, protocol.RoomRead):
            data = await self.mark_read(cmd.roomId, user, seq=cmd.seq, message_id=cmd.messageId)
            return "room_read", data
        if isinstance(cmd, protocol.RoomPresence):
            if cmd.userId is not None:
                online = await self.is_online(cmd.roomId, user, cmd.userId)
                return "room_presence", {
                    "roomId": cmd.roomId,
                    "userId": cmd.userId,
                    "online": online,
                }
            users = await self.online(cmd.roomId, user)
            return "room_presence", {"roomId": cmd.roomId, "online": users}
        if isinstance(cmd, protocol.RoomHistory):
            page = await self.history(cmd.roomId, user, before_seq=cmd.beforeSeq, limit=cmd.limit)
            return "room_history", page
        raise AssertionError(cmd)  # pragma: no cover - RoomCommand and this are kept in step
