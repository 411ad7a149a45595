"""Backend hooks: ask the backend, at the moment it happens, whether a connection may open,
a client may subscribe to a channel, or a client's publication may go out.

Each hook is an optional URL (``hook_connect_url``, ``hook_subscribe_url``,
``hook_publish_url``). tidings POSTs a JSON event to it, signed as the inbox webhooks are
(Standard Webhooks ``webhook-*`` headers, and ``X-Tidings-Signature``), and reads back a
:class:`Decision`: allow, or deny with a reason; on allow, optionally data to attach
(``info`` in the welcome or the ``subscribed`` reply; the published ``data`` replaced)
and, on connect, channels to subscribe the connection to.

Failure policy: an answer that is not ``200`` with a decision, or no answer within
``hook_timeout``, counts as ``hook_failure`` (``deny`` by default: fail closed; ``allow``
to keep working while the backend is down). Either way it is logged at WARNING and counted.

Caching: a decision may be kept ``cacheSeconds`` (its own, else ``hook_cache_seconds``;
0: not kept) per event, user and channel, so a client that resubscribes in a loop does not
call the backend each time. Publish decisions are never cached (they depend on the data).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import msgspec

from .channels import namespace_of
from .delivery.webhook import Signer
from .signing import signature

log = logging.getLogger("tidings.hooks")

MAX_REASON: Final = 200
MAX_ANSWER_BYTES: Final = 1 << 20


class Decision(msgspec.Struct, kw_only=True):
    """The backend's answer. Unknown fields are ignored (a backend may say more)."""

    allow: bool
    reason: str | None = None
    # On allow: connect → the welcome's ``info``; subscribe → the reply's ``info``;
    # publish → replaces the publication's data (when the key is present).
    data: Any = msgspec.UNSET
    # Connect only: channels the connection is subscribed to at once, by the server.
    channels: list[str] = msgspec.field(default_factory=list)
    cacheSeconds: float | None = None

    @property
    def why(self) -> str:
        """The reason to give the client for a denial (bounded)."""
        return (self.reason or "denied by the application")[:MAX_REASON]


ALLOWED: Final = Decision(allow=True)


def decide_on_failure(policy: str, what: str) -> Decision:
    """The decision ``hook_failure`` takes for an unanswered hook."""
    if policy == "allow":
        return ALLOWED
    return Decision(allow=False, reason=f"the application could not be asked ({what})")


@dataclass(slots=True)
class DecisionCache:
    """Decisions by key until their expiry (monotonic seconds, injected)."""

    monotonic: Callable[[], float]
    entries: dict[tuple[str, ...], tuple[float, Decision]] = field(default_factory=dict)

    def get(self, key: tuple[str, ...]) -> Decision | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.monotonic():
            del self.entries[key]
            return None
        return entry[1]

    def put(self, key: tuple[str, ...], decision: Decision, seconds: float) -> None:
        if seconds <= 0:
            return
        if len(self.entries) >= 100_000:  # bounded: drop the oldest-inserted half
            for stale in list(self.entries)[: len(self.entries) // 2]:
                del self.entries[stale]
        self.entries[key] = (self.monotonic() + seconds, decision)


class BackendHooks:
    """The configured hooks of one node.

    Args:
        connect_url, subscribe_url, publish_url: where to POST each event (None: no hook).
        subscribe_namespaces, publish_namespaces: the namespaces those hooks decide
            (empty: every namespace).
        secret: signs each request (``X-Tidings-Signature``); None sends no signature.
        timeout: seconds for one call.
        failure: ``deny`` or ``allow``: the decision when the backend cannot answer.
        cache_seconds: how long a decision is kept when it does not say.
        clock: Unix time (the signature's timestamp); monotonic: for the cache.
    """

    def __init__(
        self,
        *,
        connect_url: str | None = None,
        subscribe_url: str | None = None,
        publish_url: str | None = None,
        subscribe_namespaces: Sequence[str] = (),
        publish_namespaces: Sequence[str] = (),
        secret: str | None = None,
        timeout: float = 2.0,
        failure: str = "deny",
        cache_seconds: float = 0.0,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self.connect_url = connect_url
        self.subscribe_url = subscribe_url
        self.publish_url = publish_url
        self._subscribe_namespaces = frozenset(subscribe_namespaces)
        self._publish_namespaces = frozenset(publish_namespaces)
        self._secret = secret
        self._signer = Signer(secret) if secret is not None else None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._failure = failure
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache = DecisionCache(monotonic)
        self._http: aiohttp.ClientSession | None = None
        self.calls = 0  # made, for tests and metrics
        self.failures = 0

    def decides_subscribe(self, channel: str) -> bool:
        """Whether the subscribe hook is asked about ``channel``."""
        if self.subscribe_url is None:
            return False
        names = self._subscribe_namespaces
        return not names or namespace_of(channel) in names

    def decides_publish(self, channel: str) -> bool:
        """Whether the publish hook is asked about a client publication to ``channel``."""
        if self.publish_url is None:
            return False
        names = self._publish_namespaces
        return not names or namespace_of(channel) in names

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def connect(
        self,
        user: str,
        roles: tuple[str, ...],
        client: str,
        transport: str,
        claims: dict[str, Any],
        *,
        refresh: bool = False,
    ) -> Decision:
        """May this connection open, or (``refresh``) stay open on a new token whose
        ``claims`` are given? (Allowed at once when no connect hook is set.)"""
        if self.connect_url is None:
            return ALLOWED
        event: dict[str, Any] = {
            "event": "connect",
            "userId": user,
            "roles": list(roles),
            "clientId": client,
            "transport": transport,
            "claims": claims,
        }
        if refresh:
            event["refresh"] = True
        return await self._ask(self.connect_url, event, ("connect", user))

    async def subscribe(
        self, user: str, roles: tuple[str, ...], client: str, channel: str
    ) -> Decision:
        """May this connection subscribe to ``channel``?"""
        if self.subscribe_url is None:
            return ALLOWED
        event = {
            "event": "subscribe",
            "userId": user,
            "roles": list(roles),
            "clientId": client,
            "channel": channel,
        }
        return await self._ask(self.subscribe_url, event, ("subscribe", user, channel))

    async def publish(
        self, user: str, roles: tuple[str, ...], client: str, channel: str, kind: str, data: Any
    ) -> Decision:
        """May this client publication go out (and with which data)?"""
        if self.publish_url is None:
            return ALLOWED
        event = {
            "event": "publish",
            "userId": user,
            "roles": list(roles),
            "clientId": client,
            "channel": channel,
            "type": kind,
            "data": data,
        }
        return await self._ask(self.publish_url, event, None)

    async def _ask(
        self, url: str, event: dict[str, Any], cache_key: tuple[str, ...] | None
    ) -> Decision:
        if cache_key is not None:
            cached = self._cache.get(cache_key)
            if cached is not None:
                return cached
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        body = msgspec.json.encode(event)
        headers = {"Content-Type": "application/json", "X-Tidings-Event": event["event"]}
        if self._secret is not None and self._signer is not None:
            now = self._clock()
            timestamp = str(int(now))
            headers["X-Tidings-Timestamp"] = timestamp
            headers["X-Tidings-Signature"] = signature(self._secret, timestamp, body)
            # And the Standard Webhooks headers, as the inbox webhooks send.
            headers.update(self._signer.headers(f"hook_{uuid.uuid4().hex}", now, body))
        self.calls += 1
        try:
            async with self._http.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    raise _Unanswered(f"HTTP {response.status}")
                raw = await response.content.read(MAX_ANSWER_BYTES + 1)
            if len(raw) > MAX_ANSWER_BYTES:
                raise _Unanswered("answer too large")
            decision = msgspec.json.decode(raw, type=Decision)
        except (aiohttp.ClientError, TimeoutError, _Unanswered, msgspec.DecodeError) as exc:
            self.failures += 1
            what = str(exc) or type(exc).__name__
            log.warning("%s hook %s failed (%s): %s", event["event"], url, self._failure, what)
            return decide_on_failure(self._failure, what)
        if cache_key is not None:
            seconds = (
                self._cache_seconds if decision.cacheSeconds is None else decision.cacheSeconds
            )
            self._cache.put(cache_key, decision, seconds)
        return decision


class _Unanswered(Exception):
    """The backend answered, but not with a decision."""
