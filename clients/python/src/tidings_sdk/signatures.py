"""Check the signature tidings puts on the requests it sends your backend (inbox webhooks
and backend hooks): ``X-Tidings-Signature: sha256=<hex>``, the HMAC-SHA256 of
``"<X-Tidings-Timestamp>.<body>"`` with the shared secret.

Pure standard library, so it works in any web framework::

    if not verify_signature(SECRET, request.headers, request.get_data()):
        abort(401)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Tidings-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    max_age: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether a request from tidings is genuine and fresh.

    Args:
        secret: the shared secret (``hook_secret`` or ``webhook_secret``).
        headers: the request's headers (any mapping; looked up as tidings sends them,
            then in lower case).
        body: the raw request body, exactly as received.
        max_age: seconds a timestamp stays acceptable (replays older than this fail).
        now: the current Unix time (default: the clock).
    """

    def header(name: str) -> str:
        return headers.get(name) or headers.get(name.lower()) or ""

    timestamp = header("X-Tidings-Timestamp")
    presented = header("X-Tidings-Signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > max_age:
        return False
    return hmac.compare_digest(presented, sign(secret, timestamp, body))
