"""The connections' side of chat rooms: room subscriptions, presence, typing, commands.

``RoomConnections`` belongs to one ``rooms.Rooms`` and keeps what is per
connection on this instance: which room channels each connection subscribed to (checked
against the store's membership first), the hub filters that carry each subscriber's block
list, which rooms each connection counts in for presence, the presence checks waiting for
their grace period, who is typing, and the queue that runs each connection's room
operations one at a time in the order it sent them. ``Rooms`` keeps the operations
themselves (posting, history, markers, blocks, management), which HTTP and the
WebSocket share.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from .. import cluster, protocol
from ..protocol import ErrorCode
from ..session import Session, State
from . import rules as r
from .rules import RoomError

if TYPE_CHECKING:
    from ..directory import Profiles
    from ..hub import Hub
    from ..presence import Presence
    from ..store import Store
    from ..store.rooms import Member

log = logging.getLogger("tidings.rooms")


class Node(Protocol):
    """What the per-connection side needs of the node."""

    @property
    def hub(self) -> Hub: ...
    @property
    def monotonic(self) -> Callable[[], float]: ...


class Service(Protocol):
    """What the per-connection side needs of the rooms service (``rooms.Rooms`` is one)."""

    @property
    def node(self) -> Node: ...
    @property
    def store(self) -> Store: ...
    @property
    def presence(self) -> Presence: ...
    @property
    def grace(self) -> float: ...
    @property
    def profiles(self) -> Profiles: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    async def emit(self, channel: str, event: protocol.ServerMessage) -> None: ...

    async def member(self, room_id: str, user_id: str) -> Member: ...

    async def post(
        self, room_id: str, user_id: str, content: Any, *, websocket: bool = False
    ) -> protocol.RoomMessage: ...

    async def edit(
        self, room_id: str, user_id: str, message_id: str, content: Any
    ) -> protocol.RoomMessage: ...

    async def delete(
        self, room_id: str, user_id: str, message_id: str
    ) -> protocol.MessageDeleteEvent: ...

    async def mark_read(
        self, room_id: str, user_id: str, *, seq: int | None = None, message_id: str | None = None
    ) -> protocol.RoomReadEvent: ...

    async def online(self, room_id: str, user_id: str) -> list[str]: ...

    async def is_online(self, room_id: str, user_id: str, who: str) -> bool: ...

    async def history(
        self, room_id: str, user_id: str, *, before_seq: int | None, limit: int
    ) -> protocol.RoomHistoryPage: ...


class RoomConnections:
    """Per-connection room state of one node (see the module docstring).

    Args:
        rooms: the node's rooms, whose store, presence and operations this uses.
        typing_ttl, typing_throttle: see ``rooms.TypingTracker``.
    """

    def __init__(self, rooms: Service, *, typing_ttl: float, typing_throttle: float) -> None:
        self.rooms = rooms
        self.node = rooms.node
        self.typing = r.TypingTracker(ttl=typing_ttl, throttle=typing_throttle)
        # The last queued room operation of each connection: the next one waits for it.
        self._chains: dict[Session, asyncio.Task[Any]] = {}
        # Room channels each connection subscribed through here: channel -> (room, kind).
        self._subs: dict[Session, dict[str, tuple[str, str]]] = {}
        # Rooms each connection counts in (subscribed to ``room:{id}``).
        self._present: dict[Session, set[str]] = {}
        # Block lists of users with room subscriptions here, for their hub filters.
        self._blocked: dict[str, frozenset[str]] = {}
        # (due on node.monotonic, room, user): presence checks after the grace period.
        self.settles: list[tuple[float, str, str]] = []
        # Set by the server before it closes every connection on shutdown: presence entries
        # are then left to expire with this instance's liveness, and the survivors settle
        # them (a client that reconnects elsewhere in time never leaves).
        self.draining = False

    def _queue(self, session: Session, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` after the connection's earlier room operations."""
        previous = self._chains.get(session)

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await coro

        task = self._chains[session] = self.rooms.spawn(run())

        def forget(_: asyncio.Task[Any]) -> None:
            if self._chains.get(session) is task:
                del self._chains[session]

        task.add_done_callback(forget)

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
        member = await self.rooms.store.get_member(room_id, session.user_id)
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
            blocked = self._blocked[user_id] = frozenset(await self.rooms.store.blocked(user_id))
        return blocked

    async def _arrive(self, session: Session, room_id: str) -> None:
        rooms = self._present.setdefault(session, set())
        if room_id in rooms:
            return
        rooms.add(room_id)
        if await self.rooms.presence.connect(room_id, session.user_id, session.client_id):
            await self._publish_online(room_id, protocol.UserJoined, session.user_id)

    async def _depart(self, session: Session, room_id: str) -> None:
        await self.rooms.presence.disconnect(room_id, session.user_id, session.client_id)
        due = self.node.monotonic() + self.rooms.grace
        heapq.heappush(self.settles, (due, room_id, session.user_id))

    async def _publish_online(
        self, room_id: str, event: type[protocol.UserJoined], user_id: str
    ) -> None:
        name, image = await self.rooms.profiles.get(user_id)
        await self.rooms.emit(
            r.channels(room_id).online,
            event(userId=user_id, roomId=room_id, userName=name, userImage=image),
        )

    async def tick(self) -> None:
        """Expire typing and settle presence whose grace period is over (node.monotonic)."""
        now = self.node.monotonic()
        for room_id, user_id in self.typing.expired(now):
            await self.publish_typing(room_id, user_id, False)
        while self.settles and self.settles[0][0] <= now:
            _, room_id, user_id = heapq.heappop(self.settles)
            if await self.rooms.presence.settle(room_id, user_id):
                await self._publish_online(room_id, protocol.UserLeft, user_id)

    async def beat(self) -> None:
        """Refresh this instance's presence and clean up after dead instances."""
        await self.rooms.presence.heartbeat()
        for room_id, user_id in await self.rooms.presence.sweep():
            await self._publish_online(room_id, protocol.UserLeft, user_id)

    async def publish_typing(self, room_id: str, user_id: str, is_typing: bool) -> None:
        name, _ = await self.rooms.profiles.get(user_id)
        await self.rooms.emit(
            r.channels(room_id).typing, r.typing_event(room_id, user_id, is_typing, name)
        )

    def _subscribed_to(self, session: Session, room_id: str) -> bool:
        return any(room == room_id for room, _ in self._subs.get(session, {}).values())

    async def set_typing(self, session: Session, room_id: str, is_typing: bool) -> None:
        """A client's ``TYPING``: throttled per user and room, never stored."""
        if not self._subscribed_to(session, room_id):
            # Subscribed connections were checked when they subscribed; others ask once.
            await self.rooms.member(room_id, session.user_id)
        user_id = session.user_id
        if is_typing:
            if self.typing.start(room_id, user_id, self.node.monotonic()):
                await self.publish_typing(room_id, user_id, True)
        elif self.typing.stop(room_id, user_id):
            await self.publish_typing(room_id, user_id, False)

    def control(self, sessions: list[Session], op: cluster.RoomBlocks | cluster.RoomEvict) -> int:
        """A room operation sent to every instance holding a user's connections
        (``Node.control``): a new block list, or removal from a room. Returns how many
        subscriptions it changed."""
        if isinstance(op, cluster.RoomBlocks):
            return self.refilter(sessions, op.blocked)
        return self.evict(sessions, op.room)

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
            session.send(reply, reply_to=cmd.id)

    async def _run(
        self, session: Session, cmd: protocol.RoomCommand
    ) -> protocol.ServerMessage | None:
        user = session.user_id
        if isinstance(cmd, protocol.ChatMessage):
            view = await self.rooms.post(cmd.roomId, user, cmd.content, websocket=True)
            return protocol.MessagePosted(**msgspec.structs.asdict(view))
        if isinstance(cmd, protocol.MessageEdit):
            edited = await self.rooms.edit(cmd.roomId, user, cmd.messageId, cmd.content)
            return protocol.MessageEdited(**msgspec.structs.asdict(edited))
        if isinstance(cmd, protocol.MessageDelete):
            gone = await self.rooms.delete(cmd.roomId, user, cmd.messageId)
            return protocol.MessageDeleted(**msgspec.structs.asdict(gone))
        if isinstance(cmd, protocol.Typing):
            await self.set_typing(session, cmd.roomId, cmd.isTyping)
            # Typing is high-rate: a reply only when the client asked for one (an id).
            return None if cmd.id is None else protocol.TypingSent(roomId=cmd.roomId)
        if isinstance(cmd, protocol.RoomRead):
            data = await self.rooms.mark_read(
                cmd.roomId, user, seq=cmd.seq, message_id=cmd.messageId
            )
            return protocol.RoomReadReply(**msgspec.structs.asdict(data))
        if isinstance(cmd, protocol.RoomPresence):
            if cmd.userId is not None:
                online = await self.rooms.is_online(cmd.roomId, user, cmd.userId)
                return protocol.RoomPresenceReply(
                    roomId=cmd.roomId, userId=cmd.userId, online=online
                )
            users = await self.rooms.online(cmd.roomId, user)
            return protocol.RoomPresenceReply(roomId=cmd.roomId, online=users)
        if isinstance(cmd, protocol.RoomHistory):
            page = await self.rooms.history(
                cmd.roomId, user, before_seq=cmd.beforeSeq, limit=cmd.limit
            )
            return page
        raise AssertionError(cmd)  # pragma: no cover - RoomCommand and this are kept in step
