"""The Web Push channel: RFC 8030 delivery, VAPID (RFC 8292), aes128gcm (RFC 8291).

Each of the user's browsers registered a subscription (``POST /api/me/push-subscriptions``):
an endpoint at its push service and two keys. A push is the JSON payload encrypted for
those keys (``http_ece``), POSTed to the endpoint with a VAPID ``Authorization`` header
(``py_vapid``) that proves the sender holds the key the browser subscribed with. The
service answers 201; 404 or 410 means the subscription is gone, and it is removed.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Final, Protocol
from urllib.parse import urlsplit

import aiohttp
import http_ece
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, b64urlencode

from ..store.deliveries import PushSubscription
from . import SENT, Channel, Contact, Message, Outcome, failed

log = logging.getLogger("tidings.delivery.push")

# The VAPID JWT is reused per push service origin until this long before it expires.
_JWT_LIFETIME: Final = 12 * 3600
_JWT_RENEW: Final = 3600
# RFC 8030 §5.3 Urgency, from the notification's priority.
URGENCY: Final = {"LOW": "low", "MEDIUM": "normal", "HIGH": "high", "CRITICAL": "high"}
# Push services accept at least 4096 bytes of encrypted payload; keep well under.
MAX_TEXT: Final = 1000


class Subscriptions(Protocol):
    """What the sender needs of the store: the user's subscriptions, and forgetting one."""

    async def push_subscriptions(self, user_id: str) -> list[PushSubscription]: ...

    async def remove_push_subscription(self, endpoint: str, user_id: str | None = None) -> bool: ...


def b64decode(value: str) -> bytes:
    """URL-safe base64 with or without padding (as browsers give subscription keys)."""
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def generate_vapid_key() -> str:
    """A new VAPID private key, base64url raw (for ``push_vapid_private_key``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    encoded: str = b64urlencode(key.private_numbers().private_value.to_bytes(32, "big"))
    return encoded


def payload(message: Message) -> bytes:
    """What the service worker receives (``event.data.json()``)."""
    return msgspec.json.encode(
        {
            "id": message.notification_id,
            "title": message.title,
            "body": message.text[:MAX_TEXT],
            "url": message.url,
            "priority": message.priority,
            "category": message.category,
            "tag": message.notification_id,
        }
    )


def encrypt(body: bytes, sub: PushSubscription) -> bytes:
    """The aes128gcm body for one subscription (a fresh sender key and salt each time)."""
    encrypted: bytes = http_ece.encrypt(
        body,
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=b64decode(sub.p256dh),
        auth_secret=b64decode(sub.auth),
        version="aes128gcm",
    )
    return encrypted


class WebPushSender:
    """Sends to every push subscription of the user.

    Args:
        subscriptions: where subscriptions are read and expired ones removed.
        private_key: the VAPID key, base64url raw or PEM.
        subject: the VAPID ``sub`` claim: ``mailto:ops@example.com`` or an https URL.
        ttl: seconds the push service keeps a message for an offline browser.
        timeout: seconds for one request.
        clock: Unix seconds (the JWT's expiry).
    """

    channel = Channel.PUSH

    def __init__(
        self,
        subscriptions: Subscriptions,
        private_key: str,
        subject: str,
        *,
        ttl: int = 86400,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._subscriptions = subscriptions
        self._vapid = Vapid02.from_string(private_key)
        self._subject = subject
        self._ttl = ttl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._http: aiohttp.ClientSession | None = None
        self._jwts: dict[str, tuple[float, str]] = {}

    @property
    def public_key(self) -> str:
        """The ``applicationServerKey`` browsers subscribe with (base64url, uncompressed)."""
        raw = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        encoded: str = b64urlencode(raw)
        return encoded

    def authorization(self, endpoint: str) -> str:
        """The VAPID header for an endpoint's push service, signed once per origin and hour."""
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = self._clock()
        cached = self._jwts.get(audience)
        if cached is not None and cached[0] - _JWT_RENEW > now:
            return cached[1]
        expires = int(now) + _JWT_LIFETIME
        claims = {"aud": audience, "exp": expires, "sub": self._subject}
        header: str = self._vapid.sign(claims)["Authorization"]
        self._jwts[audience] = (expires, header)
        return header

    async def send(self, message: Message, contact: Contact) -> Outcome:
        subs = await self._subscriptions.push_subscriptions(message.user_id)
        if not subs:
            return failed("no push subscription", retry=False)
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        body = payload(message)
        # RFC 8030 §5.4: a message with the same Topic replaces one still queued, so a
        # retry after a lost answer does not show twice on a device that was offline.
        topic = base64.urlsafe_b64encode(hashlib.sha256(message.key.encode()).digest()[:24])
        headers = {
            "TTL": str(self._ttl),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Urgency": URGENCY.get(message.priority, "normal"),
            "Topic": topic.decode(),
        }
        reasons: list[str] = []
        retry = False
        accepted = 0
        for sub in subs:
            outcome = await self._one(sub, body, headers)
            if outcome.sent:
                accepted += 1
            else:
                reasons.append(outcome.reason or "failed")
                retry = retry or outcome.retry
        if accepted:
            return SENT
        return failed("; ".join(reasons), retry=retry)

    async def _one(self, sub: PushSubscription, body: bytes, headers: dict[str, str]) -> Outcome:
        assert self._http is not None
        try:
            data = encrypt(body, sub)
        except (ValueError, TypeError, http_ece.ECEException) as exc:
            # Keys a browser would never give: the subscription is useless.
            await self._subscriptions.remove_push_subscription(sub.endpoint)
            return failed(f"bad subscription keys: {exc}", retry=False)
        try:
            auth = {"Authorization": self.authorization(sub.endpoint)}
            async with self._http.post(sub.endpoint, data=data, headers=headers | auth) as r:
                if r.status in (404, 410):
                    await self._subscriptions.remove_push_subscription(sub.endpoint)
                    log.info("push subscription gone (%d); removed", r.status)
                    return failed(f"subscription gone ({r.status})", retry=False)
                if 200 <= r.status < 300:
                    return SENT
                retry = r.status >= 500 or r.status == 429
                return failed(f"push service answered {r.status}", retry=retry)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return failed(f"push service: {exc.__class__.__name__}", retry=True)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
