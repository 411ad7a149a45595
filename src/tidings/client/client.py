"""``Client``: one reconnecting WebSocket to a tidings server, for an application."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from tidings.protocol import should_reconnect

from .backoff import backoff_delay
from .errors import ClientClosed, ConnectionLost, QueueFull, error_from
from .events import Callback, Events, Message
from .handshake import (
    ABNORMAL_CLOSURE,
    CLIENT_CLOSED,
    TokenSource,
    close_code,
    connect_url,
    open_welcomed,
    parse,
    token_value,
)
from .recovery import Position, Recovery

log = logging.getLogger("tidings.client")


class _Pending:
    """An outstanding request: a future for a caller, or an internal fire-and-forget one."""

    __slots__ = ("channel", "future")

    def __init__(self, future: asyncio.Future[Message] | None, channel: str | None) -> None:
        self.future = future
        self.channel = channel  # set for automatic resubscriptions


class Client:
    """A reconnecting tidings WebSocket client (use with ``async with``).

    Args:
        url: the WebSocket endpoint, e.g. ``ws://127.0.0.1:8000/ws``.
        token: a JWT, or a callable (sync or async) returning one; a callable is called
            for every connection, so it can hand out a fresh token each time.
        reconnect: reconnect after an unexpected close. Close codes that
            ``tidings.protocol.should_reconnect`` calls terminal always end the client.
        backoff_initial, backoff_max: the backoff before reconnection attempt ``n``
            (from 0) is uniform in ``[0, min(backoff_max, backoff_initial * 2**n)]``.
        queue_limit: messages ``send()`` may queue while offline; beyond it ``QueueFull``.
        ack: connect in ack mode (``&ack=1``) and ``ack`` every notification once it has
            been handed to the application.
        resume: reconnect with ``?lastSeq=`` (the highest notification ``seq`` seen) and
            resubscribe with ``since`` (each channel's last position), so exactly what was
            missed is sent. Without it the server's default catch-up applies.
        last_seq: a notification resume point saved from an earlier run (``last_seq``).
        positions: channel positions saved from an earlier run (``positions``).
        event_buffer: messages buffered for ``async for``; when full, reading from the
            server waits for the application. ``0`` buffers nothing (callbacks only).
        open_timeout: seconds allowed for the handshake and the ``welcome`` message.
        max_size: the largest server message accepted, in bytes.
    """

    def __init__(
        self,
        url: str,
        token: TokenSource,
        *,
        reconnect: bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        queue_limit: int = 1000,
        ack: bool = False,
        resume: bool = True,
        last_seq: int | None = None,
        positions: Mapping[str, Position] | None = None,
        event_buffer: int = 10_000,
        open_timeout: float = 10.0,
        max_size: int = 2**24,
    ) -> None:
        if backoff_initial < 0 or backoff_max < 0:
            raise ValueError("backoff_initial and backoff_max must not be negative")
        if queue_limit < 0 or event_buffer < 0:
            raise ValueError("queue_limit and event_buffer must not be negative")
        self.url = url
        self._token = token
        self._reconnect = reconnect
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._queue_limit = queue_limit
        self._ack = ack
        self._resume = resume
        self._open_timeout = open_timeout
        self._max_size = max_size

        self.welcome: dict[str, Any] | None = None
        """The ``data`` of the latest ``welcome`` message."""
        self.connections = 0
        """Connections that reached ``welcome``."""
        self.close_code: int | None = None
        self.close_reason: str | None = None

        self._recovery = Recovery(last_seq, dict(positions or {}))
        self._events = Events(event_buffer)
        self._subscriptions: dict[str, Mapping[str, Any] | None] = {}
        self._outbox: deque[Message] = deque()
        self._pending: dict[str, _Pending] = {}
        self._ws: ClientConnection | None = None  # set while connected and flushed
        self._current: ClientConnection | None = None  # the open socket, if any
        self._connected = asyncio.Event()  # also set once finished, to wake waiters
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_session = False
        self._closed: ClientClosed | None = None
        self._counter = 0

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the first connection and wait for ``welcome``.

        The first connection fails fast (so a wrong URL or token shows at once): it raises
        ``ClientClosed`` if the server closes before ``welcome`` and the network error
        (``OSError``, ``TimeoutError``, ``websockets.InvalidHandshake``) otherwise.
        Reconnections later are automatic.
        """
        if self._task is not None or self._closed is not None:
            raise RuntimeError("connect() may be called once")
        try:
            ws, welcome = await self._open()
        except ClientClosed as exc:
            self._finish(exc)
            raise
        except BaseException:
            self._finish(ClientClosed(ABNORMAL_CLOSURE, "could not connect"))
            raise
        self._task = asyncio.create_task(self._run(ws, welcome), name="tidings-client")
        await self._wait_connected()

    async def close(self) -> None:
        """Close the connection (code 1000) and stop reconnecting; idempotent."""
        self._stopping.set()
        self._events.stop()  # a reader waiting for buffer space must see the close
        task = self._task
        if task is not None and not task.done():
            current = self._current
            if self._in_session and current is not None:
                await current.close()
            else:
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if _cancelling():
                    raise  # close() itself was cancelled
        self._finish(ClientClosed(CLIENT_CLOSED, "closed by the client"))

    @property
    def connected(self) -> bool:
        """Whether a connection is open, welcomed, resubscribed and flushed."""
        return self._ws is not None

    @property
    def subscriptions(self) -> dict[str, Mapping[str, Any] | None]:
        """The channels this client keeps subscribed, with their filters."""
        return dict(self._subscriptions)

    @property
    def last_seq(self) -> int | None:
        """The highest notification ``seq`` seen (the notification resume point)."""
        return self._recovery.last_seq

    @property
    def positions(self) -> dict[str, Position]:
        """Each channel's last ``(offset, epoch)`` seen (channels with history only)."""
        return dict(self._recovery.positions)

    @property
    def duplicates(self) -> int:
        """Notifications and publications dropped because they were already delivered."""
        return self._recovery.duplicates

    @property
    def queued(self) -> int:
        """Messages waiting for a connection."""
        return len(self._outbox)

    # --- events -----------------------------------------------------------------------

    def on(self, kind: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(msg)`` for every message of type ``kind`` (``"*"``: all).

        The callback may be sync or async; it runs in the client's reader, so a slow one
        delays later messages. Returns a function that removes the callback.
        """
        return self._events.on(kind, callback)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        """The next message; the iteration ends once the client is closed for good."""
        return await self._events.next()

    # --- requests ---------------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        filters: Mapping[str, Any] | None = None,
        *,
        since: Position | None = None,
    ) -> Message:
        """Subscribe (or replace the filter) and return the ``subscribed`` data.

        Waits for a connection if offline. The channel is subscribed again after every
        reconnection, from the last position seen when the channel keeps history.

        Args:
            since: resume from this ``(offset, epoch)`` (a position saved earlier): the
                publications after it are sent first, marked ``"recovered": true``.

        Raises:
            ClientError: the server refused (``FORBIDDEN``, ``INVALID_MESSAGE``, ...).
            ClientClosed: the client closed for good first.
        """
        msg: Message = {"type": "subscribe", "channel": channel}
        if filters is not None:
            msg["filters"] = dict(filters)
        if since is not None:
            msg["since"] = {"offset": since[0], "epoch": since[1]}
            self._recovery.positions[channel] = since
        reply = await self.request(msg)
        self._subscriptions[channel] = dict(filters) if filters is not None else None
        data: Message = reply.get("data") or {}
        self._recovery.subscribed(channel, data)
        return data

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving a channel, now and after reconnections."""
        self._subscriptions.pop(channel, None)
        self._recovery.forget(channel)
        if self._ws is None:
            return  # the next connection will not subscribe to it
        with contextlib.suppress(ConnectionLost):
            await self._request_once({"type": "unsubscribe", "channel": channel})

    async def mark_read(self, ids: list[str] | None = None, all: bool = False) -> Message:
        """Mark notifications read (or ``all=True``); returns ``{"ids", "unreadCount"}``."""
        msg: Message = {"type": "mark_read"}
        if all:
            msg["all"] = True
        else:
            msg["notificationIds"] = list(ids or [])
        reply = await self.request(msg)
        data: Message = reply.get("data") or {}
        return data

    async def request(self, msg: Mapping[str, Any]) -> Message:
        """Send a message with a fresh ``id`` and return the reply naming it.

        Waits for a connection if offline, and sends again if the connection drops before
        the reply (so use it for idempotent requests). The reply is not yielded by the
        iterator.

        Raises:
            ClientError: the reply is an ``error``.
            ClientClosed: the client closed for good first.
        """
        while True:
            try:
                return await self._request_once(msg)
            except ConnectionLost:
                continue

    async def send(self, msg: Mapping[str, Any]) -> None:
        """Send a message now, or queue it (in order) until the next connection.

        Raises:
            QueueFull: offline with ``queue_limit`` messages already queued.
            ClientClosed: the client is closed for good.
        """
        if self._closed is not None:
            raise self._closed
        message = dict(msg)
        ws = self._ws
        if ws is not None:
            try:
                await ws.send(json.dumps(message))
                return
            except websockets.ConnectionClosed:
                pass  # not sent: queue it for the next connection
        if len(self._outbox) >= self._queue_limit:
            raise QueueFull(f"{len(self._outbox)} messages already queued")
        self._outbox.append(message)

    # --- internals --------------------------------------------------------------------

    def _next_id(self) -> str:
        self._counter += 1
        return f"tc-{self._counter}"

    async def _wait_connected(self) -> ClientConnection:
        while True:
            if self._closed is not None:
                raise self._closed
            if self._ws is not None:
                return self._ws
            await self._connected.wait()

    async def _request_once(self, msg: Mapping[str, Any]) -> Message:
        ws = await self._wait_connected()
        request_id = self._next_id()
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, None)
        try:
            try:
                await ws.send(json.dumps({**msg, "id": request_id}))
            except websockets.ConnectionClosed:
                raise ConnectionLost from None
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def _open(self) -> tuple[ClientConnection, Message]:
        """One attempt: connect and read ``welcome``."""
        token = await token_value(self._token)
        url = connect_url(
            self.url, token, self._recovery.last_seq if self._resume else None, ack=self._ack
        )
        return await open_welcomed(url, self._open_timeout, self._max_size)

    async def _run(self, ws: ClientConnection, welcome: Message) -> None:
        attempt = 0
        final: ClientClosed | None = None
        try:
            while True:
                code, reason = await self._session(ws, welcome)
                again = self._reconnect and should_reconnect(code)
                if self._stopping.is_set():
                    again = False
                await self._disconnected(code, reason, again)
                if not again:
                    final = ClientClosed(code, reason)
                    return
                log.info("tidings connection closed (%s %s); reconnecting", code, reason)
                while True:
                    if await self._backoff(attempt):
                        return  # close() was called
                    attempt += 1
                    try:
                        ws, welcome = await self._open()
                    except ClientClosed as exc:
                        again = should_reconnect(exc.code)
                        await self._disconnected(exc.code, exc.reason, again)
                        if not again:
                            final = exc
                            return
                    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                        log.info("tidings reconnection failed: %r", exc)
                    except Exception as exc:  # e.g. the token callable failed: retry
                        log.warning("tidings reconnection failed: %r", exc)
                    else:
                        attempt = 0
                        break
        except Exception:
            log.exception("tidings client failed")
            final = ClientClosed(ABNORMAL_CLOSURE, "the client failed")
            raise
        finally:
            self._finish(final or ClientClosed(CLIENT_CLOSED, "closed by the client"))

    async def _disconnected(self, code: int, reason: str, again: bool) -> None:
        await self._events.emit(
            {"type": "_disconnected", "code": code, "reason": reason, "reconnect": again}
        )

    async def _backoff(self, attempt: int) -> bool:
        """Sleep a full-jitter backoff; ``True`` if ``close()`` was called meanwhile."""
        delay = backoff_delay(attempt, self._backoff_initial, self._backoff_max)
        try:
            async with asyncio.timeout(delay):
                await self._stopping.wait()
        except TimeoutError:
            return False
        return True

    async def _session(self, ws: ClientConnection, welcome: Message) -> tuple[int, str]:
        """Run one welcomed connection until it closes; return the close code and reason."""
        self._current = ws
        self._in_session = True
        try:
            self.connections += 1
            self.welcome = welcome.get("data") or {}
            await self._events.emit(welcome)
            for channel, filters in self._subscriptions.items():
                await ws.send(json.dumps(self._resubscription(channel, filters)))
            while self._outbox:
                await ws.send(json.dumps(self._outbox[0]))
                self._outbox.popleft()
            self._ws = ws
            self._connected.set()
            await self._events.emit({"type": "_connected", "welcome": self.welcome})
            async for raw in ws:
                incoming = parse(raw)
                if incoming is not None:
                    await self._handle(ws, incoming)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._ws = None
            self._current = None
            self._in_session = False
            if self._closed is None:
                self._connected.clear()
            pending, self._pending = self._pending, {}
            for p in pending.values():
                if p.future is not None and not p.future.done():
                    p.future.set_exception(ConnectionLost())
        return close_code(ws), ws.close_reason or ""

    def _resubscription(self, channel: str, filters: Mapping[str, Any] | None) -> Message:
        request_id = self._next_id()
        self._pending[request_id] = _Pending(None, channel)
        msg: Message = {"type": "subscribe", "channel": channel, "id": request_id}
        if filters is not None:
            msg["filters"] = dict(filters)
        since = self._recovery.since(channel) if self._resume else None
        if since is not None:
            msg["since"] = since
        return msg

    async def _handle(self, ws: ClientConnection, msg: Message) -> None:
        reply_to = msg.get("replyTo")
        if isinstance(reply_to, str) and reply_to in self._pending:
            p = self._pending.pop(reply_to)
            is_error = msg.get("type") == "error"
            if p.future is not None:
                if not p.future.done():
                    if is_error:
                        p.future.set_exception(error_from(msg))
                    else:
                        p.future.set_result(msg)
                return
            if p.channel is None:
                if is_error:
                    await self._events.emit(msg)  # a failed ack: the application should know
                return
            if is_error:
                # Refused now (a role removed, say): stop retrying it, and say so.
                self._subscriptions.pop(p.channel, None)
                self._recovery.forget(p.channel)
                await self._events.emit(msg)
                return
            data = msg.get("data")
            data = data if isinstance(data, dict) else {}
            self._recovery.subscribed(p.channel, data)
            await self._events.emit({"type": "_resubscribed", "channel": p.channel, "data": data})
            return
        kind = msg.get("type")
        if kind == "notification" and "channel" not in msg:
            # Only the server's inbox sends channel-less notifications: a publication of
            # that type (anyone allowed to publish can make one) must not move lastSeq
            # or pass for a real notification's id.
            await self._notification(ws, msg)
            return
        if "offset" in msg and not self._recovery.publication(msg):
            return  # a publication already delivered (a recovery overlapping live ones)
        await self._events.emit(msg)

    async def _notification(self, ws: ClientConnection, msg: Message) -> None:
        nid = msg.get("id")
        if not self._recovery.notification(msg):
            if isinstance(nid, str):
                await self._send_ack(ws, nid)  # the server may not have our first ack
            return
        await self._events.emit(msg)
        if isinstance(nid, str):
            await self._send_ack(ws, nid)

    async def _send_ack(self, ws: ClientConnection, nid: str) -> None:
        if not self._ack:
            return
        request_id = self._next_id()
        self._pending[request_id] = _Pending(None, None)
        await ws.send(json.dumps({"type": "ack", "notificationId": nid, "id": request_id}))

    def _finish(self, exc: ClientClosed) -> None:
        if self._closed is not None:
            return
        self._closed = exc
        self.close_code = exc.code
        self.close_reason = exc.reason
        self._ws = None
        self._connected.set()  # wake waiters: they see _closed and raise
        self._events.end()
        for p in self._pending.values():
            if p.future is not None and not p.future.done():
                p.future.set_exception(exc)
        self._pending.clear()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
