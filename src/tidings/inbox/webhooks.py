"""Outbound webhooks: signed POSTs telling a backend a notification went unacknowledged.

Each request is signed with the Standard Webhooks scheme (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``; see ``delivery.webhook``), so a receiver
checks it with an off-the-shelf verifier; ``webhook-id`` is the same on every retry of
one event. The headers of the first release (``X-Tidings-Timestamp`` and
``X-Tidings-Signature: sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<body>"``) are
still sent for one more release. Any 2xx answer counts as delivered.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import msgspec

from ..delivery.webhook import Signer
from ..signing import signature

log = logging.getLogger("tidings.webhooks")


class WebhookSender:
    """POSTs events to one URL; one HTTP session, reused.

    Args:
        url: where to POST.
        secret: the HMAC key.
        timeout: seconds for one attempt.
    """

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._secret = secret
        self._signer = Signer(secret)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    async def send(self, event: str, payload: dict[str, Any], *, now: float, msg_id: str) -> bool:
        """One attempt; True on a 2xx answer. ``msg_id`` names the event (retries too)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        body = msgspec.json.encode({"event": event, **payload})
        timestamp = str(int(now))
        headers = {
            "Content-Type": "application/json",
            "X-Tidings-Event": event,
            "X-Tidings-Timestamp": timestamp,
            "X-Tidings-Signature": signature(self._secret, timestamp, body),
            **self._signer.headers(msg_id, now, body),
        }
        try:
            async with self._http.post(self.url, data=body, headers=headers) as response:
                ok = 200 <= response.status < 300
                if not ok:
                    log.warning("webhook answered %d", response.status)
                return ok
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("webhook failed: %s", exc.__class__.__name__)
            return False

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
