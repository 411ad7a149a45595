"""An asyncio client for a tidings server.

``Client`` keeps one WebSocket to a tidings server open for an application: it
reconnects with exponential backoff and full jitter (but never after a close code that
``tidings.protocol.should_reconnect`` calls terminal), subscribes again to every channel
after a reconnection, resumes the notification inbox with ``?lastSeq=``, drops
notifications it already delivered (by ``id``), queues what the application sends while
offline, and acknowledges notifications in ack mode.

    async with Client("ws://127.0.0.1:8000/ws", token=get_token) as client:
        await client.subscribe("news")
        async for msg in client:
            if msg["type"] == "notification":
                print(msg["data"]["title"])

See ``docs/client.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from tidings.protocol import should_reconnect

__all__ = [
    "Callback",
    "Client",
    "ClientClosed",
    "ClientError",
    "Message",
    "QueueFull",
    "TokenSource",
]

log = logging.getLogger("tidings.client")

Message: TypeAlias = dict[str, Any]
TokenSource: TypeAlias = str | Callable[[], str | Awaitable[str]]
Callback: TypeAlias = Callable[[Message], object]

ABNORMAL_CLOSURE: Final = 1006
CLIENT_CLOSED: Final = 1000
DEDUP_SIZE: Final = 10_000


class ClientError(Exception):
    """The server answered a request with an ``error`` message."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


class ClientClosed(Exception):
    """The client is closed for good: by ``close()``, or by a terminal close code.

    ``code`` is the WebSocket close code (``1000`` after ``close()``; ``1006`` when no
    close frame was received), ``reason`` the close reason the server sent.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}" if reason else f"closed ({code})")
        self.code = code
        self.reason = reason


class QueueFull(Exception):
    """``send()`` while offline, with ``queue_limit`` messages already queued."""


class _ConnectionLost(Exception):
    """A request's connection dropped before its reply came (internal: it is retried)."""


class _Pending:
    """An outstanding request: a future for a caller, or an internal fire-and-forget one."""

    __slots__ = ("channel", "future")

    def __init__(self, future: asyncio.Future[Message] | None, channel: str | None) -> None:
        self.future = future
        self.channel = channel  # set for automatic resubscriptions


_END: Final[Message] = {"type": "_end"}


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
        resume: reconnect with ``?lastSeq=`` (the highest notification ``seq`` seen) so
            exactly the missed notifications are sent. Without it the server's default
            catch-up applies (unread ones, or unacknowledged ones in ack mode).
        last_seq: a resume point saved from an earlier run (``client.last_seq``).
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
        self._event_buffer = event_buffer
        self._open_timeout = open_timeout
        self._max_size = max_size

        self.welcome: dict[str, Any] | None = None
        """The ``data`` of the latest ``welcome`` message."""
        self.last_seq: int | None = last_seq
        """The highest notification ``seq`` seen (the resume point)."""
        self.duplicates = 0
        """Notifications dropped because their ``id`` was already delivered."""
        self.connections = 0
        """Connections that reached ``welcome``."""
        self.close_code: int | None = None
        self.close_reason: str | None = None

        self._subscriptions: dict[str, Mapping[str, Any] | None] = {}
        self._outbox: deque[Message] = deque()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        self._callbacks: dict[str, list[Callback]] = {}
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._space = asyncio.Event()
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
        self._space.set()  # a reader waiting for buffer space must see the close
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

    # --- events -----------------------------------------------------------------------

    def on(self, kind: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(msg)`` for every message of type ``kind`` (``"*"``: all).

        The callback may be sync or async; it runs in the client's reader, so a slow one
        delays later messages. Returns a function that removes the callback.
        """
        self._callbacks.setdefault(kind, []).append(callback)

        def remove() -> None:
            callbacks = self._callbacks.get(kind, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return remove

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        """The next message; the iteration ends once the client is closed for good."""
        msg = await self._events.get()
        self._space.set()
        if msg is _END:
            self._events.put_nowait(_END)  # every later __anext__ ends too
            raise StopAsyncIteration
        return msg

    # --- requests ---------------------------------------------------------------------

    async def subscribe(self, channel: str, filters: Mapping[str, Any] | None = None) -> Message:
        """Subscribe (or replace the filter) and return the ``subscribed`` data.

        Waits for a connection if offline. The channel is subscribed again after every
        reconnection.

        Raises:
            ClientError: the server refused (``FORBIDDEN``, ``INVALID_MESSAGE``, ...).
            ClientClosed: the client closed for good first.
        """
        msg: Message = {"type": "subscribe", "channel": channel}
        if filters is not None:
            msg["filters"] = dict(filters)
        reply = await self.request(msg)
        self._subscriptions[channel] = dict(filters) if filters is not None else None
        data: Message = reply.get("data") or {}
        return data

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving a channel, now and after reconnections."""
        self._subscriptions.pop(channel, None)
        if self._ws is None:
            return  # the next connection will not subscribe to it
        with contextlib.suppress(_ConnectionLost):
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
            except _ConnectionLost:
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

    @property
    def queued(self) -> int:
        """Messages waiting for a connection."""
        return len(self._outbox)

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
                raise _ConnectionLost from None
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def _token_value(self) -> str:
        source = self._token
        if isinstance(source, str):
            return source
        value = source()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str):
            raise TypeError("the token callable must return a string")
        return value

    def _connect_url(self, token: str) -> str:
        parts = urlsplit(self.url)
        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in ("token", "lastSeq", "ack")
        ]
        query.append(("token", token))
        if self._resume and self.last_seq is not None:
            query.append(("lastSeq", str(self.last_seq)))
        if self._ack:
            query.append(("ack", "1"))
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def _open(self) -> tuple[ClientConnection, Message]:
        """One attempt: connect and read ``welcome``."""
        token = await self._token_value()
        ws = await websockets.connect(
            self._connect_url(token), open_timeout=self._open_timeout, max_size=self._max_size
        )
        try:
            async with asyncio.timeout(self._open_timeout):
                raw = await ws.recv()
        except websockets.ConnectionClosed:
            raise ClientClosed(_code(ws), ws.close_reason or "") from None
        except BaseException:
            await ws.close()
            raise
        msg = _parse(raw)
        if msg is None or msg.get("type") != "welcome":
            await ws.close()
            raise ClientClosed(ABNORMAL_CLOSURE, f"expected welcome, got {str(raw)[:100]!r}")
        return ws, msg

    async def _run(self, ws: ClientConnection, welcome: Message) -> None:
        attempt = 0
        final: ClientClosed | None = None
        try:
            while True:
                code, reason = await self._session(ws, welcome)
                again = self._reconnect and should_reconnect(code)
                if self._stopping.is_set():
                    again = False
                await self._emit(
                    {"type": "_disconnected", "code": code, "reason": reason, "reconnect": again}
                )
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
                        await self._emit(
                            {
                                "type": "_disconnected",
                                "code": exc.code,
                                "reason": exc.reason,
                                "reconnect": again,
                            }
                        )
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

    async def _backoff(self, attempt: int) -> bool:
        """Sleep a full-jitter backoff; ``True`` if ``close()`` was called meanwhile."""
        cap = min(self._backoff_max, self._backoff_initial * 2 ** min(attempt, 32))
        delay = random.uniform(0, cap)
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
            await self._emit(welcome)
            for channel, filters in self._subscriptions.items():
                request_id = self._next_id()
                self._pending[request_id] = _Pending(None, channel)
                msg: Message = {"type": "subscribe", "channel": channel, "id": request_id}
                if filters is not None:
                    msg["filters"] = dict(filters)
                await ws.send(json.dumps(msg))
            while self._outbox:
                await ws.send(json.dumps(self._outbox[0]))
                self._outbox.popleft()
            self._ws = ws
            self._connected.set()
            await self._emit({"type": "_connected", "welcome": self.welcome})
            async for raw in ws:
                incoming = _parse(raw)
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
                    p.future.set_exception(_ConnectionLost())
        return _code(ws), ws.close_reason or ""

    async def _handle(self, ws: ClientConnection, msg: Message) -> None:
        reply_to = msg.get("replyTo")
        if isinstance(reply_to, str) and reply_to in self._pending:
            p = self._pending.pop(reply_to)
            is_error = msg.get("type") == "error"
            if p.future is not None:
                if not p.future.done():
                    if is_error:
                        p.future.set_exception(_client_error(msg))
                    else:
                        p.future.set_result(msg)
                return
            if not is_error:
                return  # a resubscription or an ack went through
            if p.channel is not None:
                self._subscriptions.pop(p.channel, None)  # refused now: stop retrying it
            await self._emit(msg)  # the application should hear of it
            return
        if msg.get("type") == "notification":
            await self._notification(ws, msg)
            return
        await self._emit(msg)

    async def _notification(self, ws: ClientConnection, msg: Message) -> None:
        nid = msg.get("id")
        data = msg.get("data")
        seq = data.get("seq") if isinstance(data, dict) else None
        if isinstance(seq, int) and not isinstance(seq, bool):
            self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        if isinstance(nid, str):
            if nid in self._seen:
                self._seen.move_to_end(nid)
                self.duplicates += 1
                await self._send_ack(ws, nid)  # the server may not have our first ack
                return
            self._seen[nid] = None
            if len(self._seen) > DEDUP_SIZE:
                self._seen.popitem(last=False)
        await self._emit(msg)
        if isinstance(nid, str):
            await self._send_ack(ws, nid)

    async def _send_ack(self, ws: ClientConnection, nid: str) -> None:
        if not self._ack:
            return
        request_id = self._next_id()
        self._pending[request_id] = _Pending(None, None)
        await ws.send(json.dumps({"type": "ack", "notificationId": nid, "id": request_id}))

    async def _emit(self, msg: Message) -> None:
        for kind in (msg.get("type"), "*"):
            if not isinstance(kind, str):
                continue
            for callback in list(self._callbacks.get(kind, ())):
                try:
                    result = callback(msg)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("tidings client callback for %r failed", kind)
        if self._event_buffer == 0:
            return
        while self._events.qsize() >= self._event_buffer and not self._stopping.is_set():
            self._space.clear()
            await self._space.wait()
        self._events.put_nowait(msg)

    def _finish(self, exc: ClientClosed) -> None:
        if self._closed is not None:
            return
        self._closed = exc
        self.close_code = exc.code
        self.close_reason = exc.reason
        self._ws = None
        self._connected.set()  # wake waiters: they see _closed and raise
        self._events.put_nowait(_END)
        for p in self._pending.values():
            if p.future is not None and not p.future.done():
                p.future.set_exception(exc)
        self._pending.clear()


def _code(ws: ClientConnection) -> int:
    code = ws.close_code
    return ABNORMAL_CLOSURE if code is None else int(code)


def _parse(raw: str | bytes) -> Message | None:
    try:
        msg: object = json.loads(raw)
    except ValueError:
        log.warning("tidings client: a server message is not JSON")
        return None
    return msg if isinstance(msg, dict) else None


def _client_error(msg: Message) -> ClientError:
    data = msg.get("data")
    if not isinstance(data, dict):
        return ClientError("SERVER_ERROR", "malformed error message")
    return ClientError(
        str(data.get("code", "SERVER_ERROR")), str(data.get("message", "")), data.get("details")
    )


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
