"""Standard Webhooks signatures (https://www.standardwebhooks.com) for outbound POSTs.

Every signed request carries ``webhook-id`` (the same on every retry of one event),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">``, so a receiver can check it with any Standard Webhooks
verifier. The signing itself is the reference library's (``standardwebhooks``).

Secrets: a ``whsec_<base64>`` secret is decoded as the scheme says; any other string is
used as its UTF-8 bytes, so a receiver's verifier takes ``"whsec_" + base64(secret)``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from standardwebhooks import Webhook


def secret_bytes(secret: str) -> bytes:
    """The HMAC key a configured secret stands for."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_") + "==")
    return secret.encode()


def verifier_secret(secret: str) -> str:
    """The secret in the ``whsec_`` form a Standard Webhooks verifier takes."""
    return "whsec_" + base64.b64encode(secret_bytes(secret)).decode()


class Signer:
    """Signs request bodies with one secret."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret_bytes(secret))

    def headers(self, msg_id: str, timestamp: float, body: bytes) -> dict[str, str]:
        """The three ``webhook-*`` headers for ``body`` sent as message ``msg_id``."""
        when = datetime.fromtimestamp(int(timestamp), UTC)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(timestamp)),
            "webhook-signature": self._webhook.sign(msg_id, when, body),
        }
