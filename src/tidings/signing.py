"""The HMAC signature on tidings' outgoing requests (inbox webhooks, backend hooks).

``X-Tidings-Signature: sha256=<hex>`` is the HMAC-SHA256 of ``"<timestamp>.<body>"`` with
the shared secret, ``<timestamp>`` being ``X-Tidings-Timestamp``; a receiver recomputes it
and rejects stale timestamps, which stops forgeries and replays.
"""

from __future__ import annotations

import hashlib
import hmac


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value of ``X-Tidings-Signature`` for a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()
