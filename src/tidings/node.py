"""One tidings node: the hub, the access rules, the token verifier and the publish path.

This is also the embedding API: code in the same process calls ``publish``,
``send_to_user``, ``send_to_role`` and ``broadcast``. Each serializes its message once
and hands the bytes to the hub. Nothing here touches a socket or awaits.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import protocol
from .auth import Verifier
from .channels import Access, is_valid_channel
from .config import ConfigError, Settings
from .hub import Hub, Outbound
from .metrics import Metrics

if TYPE_CHECKING:
    from .inbox import Inbox


class PublishError(ValueError):
    """A publication the server refuses (bad channel name or type)."""


def iso_timestamp(unix: float) -> str:
    """ISO 8601 UTC with milliseconds, as the guides' ``timestamp`` fields."""
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def build_verifier(settings: Settings, clock: Callable[[], float]) -> Verifier:
    """The token verifier the settings describe."""
    public_key = None
    jwks = None
    try:
        if settings.jwt_public_key_file:
            public_key = Path(settings.jwt_public_key_file).read_text()
    except OSError as exc:
        raise ConfigError(f"setting 'jwt_public_key_file': {exc.strerror}") from None
    try:
        if settings.jwt_jwks_file:
            jwks = Verifier.load_jwks(settings.jwt_jwks_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"setting 'jwt_jwks_file': {exc}") from None
    try:
        return Verifier(
            algorithms=settings.jwt_algorithms,
            secret=settings.jwt_secret,
            public_key=public_key,
            jwks=jwks,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway,
            clock=clock,
        )
    except ValueError as exc:
        raise ConfigError(f"JWT settings (jwt_algorithms, jwt_secret, keys): {exc}") from None


class Node:
    """Routing state and the publish path of one server instance.

    Args:
        settings: effective settings.
        clock: Unix time in seconds (wall clock, for tokens and timestamps).
        monotonic: monotonic seconds (for rate limits).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic
        self.hub = Hub()
        self.access = Access(settings.namespaces)
        self.verifier = build_verifier(settings, clock)
        self.started_at = clock()
        self.messages_in = 0
        # Ids are unique per node run: a random prefix, then a counter (cheap, ordered).
        self._id_prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)
        # Set by the server once its store is open; None when running without one.
        self.inbox: Inbox | None = None
        self.metrics = Metrics()

    def new_id(self, kind: str = "msg") -> str:
        return f"{kind}_{self._id_prefix}-{next(self._ids):x}"

    def now_iso(self) -> str:
        return iso_timestamp(self.clock())

    def envelope(
        self,
        msg_id: str,
        kind: str,
        data: Any,
        *,
        channel: str | None = None,
        reply_to: str | None = None,
    ) -> bytes:
        """Serialize one server message with a given id."""
        return protocol.envelope(
            msg_id, kind, self.now_iso(), data, channel=channel, reply_to=reply_to
        )

    def message(
        self, kind: str, data: Any, *, channel: str | None = None, reply_to: str | None = None
    ) -> tuple[str, Outbound]:
        """Serialize one server message; returns its id and the shared bytes."""
        msg_id = self.new_id()
        payload = protocol.envelope(
            msg_id, kind, self.now_iso(), data, channel=channel, reply_to=reply_to
        )
        return msg_id, Outbound(payload)

    # --- publish path (also the embedding API) -----------------------------------------

    @staticmethod
    def _check_type(kind: str) -> None:
        if not kind or len(kind) > 64:
            raise PublishError("type must be 1 to 64 characters")

    def publish(self, channel: str, kind: str, data: Any) -> tuple[str, int]:
        """Publish to a channel's subscribers (their filters apply).

        Returns:
            The message id and how many connections it was queued to.
        Raises:
            PublishError: invalid channel name or type.
        """
        if not is_valid_channel(channel):
            raise PublishError(f"invalid channel name {channel[:80]!r}")
        self._check_type(kind)
        started = self.monotonic()
        msg_id, out = self.message(kind, data, channel=channel)
        count = self.hub.publish(channel, out, data)
        self.metrics.publish_seconds.observe(self.monotonic() - started)
        return msg_id, count

    def send_to_user(self, user_id: str, kind: str, data: Any) -> tuple[str, int]:
        """Send to every connection of one user."""
        self._check_type(kind)
        msg_id, out = self.message(kind, data)
        return msg_id, self.hub.send_to_user(user_id, out)

    def send_to_role(self, role: str, kind: str, data: Any) -> tuple[str, int]:
        """Send to every connection whose token holds ``role``."""
        self._check_type(kind)
        msg_id, out = self.message(kind, data)
        return msg_id, self.hub.send_to_role(role, out)

    def broadcast(
        self, kind: str, data: Any, *, exclude_user: str | None = None
    ) -> tuple[str, int]:
        """Send to every connection, optionally skipping one user's."""
        self._check_type(kind)
        msg_id, out = self.message(kind, data)
        return msg_id, self.hub.broadcast(out, exclude_user)

    # --- stats --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Guide 001's ``getStats`` plus message counters and uptime."""
        hub = self.hub
        return {
            "totalConnections": hub.connection_count(),
            "totalUsers": hub.user_count(),
            "channelCounts": hub.channel_counts(),
            "messagesIn": self.messages_in,
            "messagesOut": hub.messages_out,
            "uptimeSeconds": round(self.clock() - self.started_at, 3),
            "timestamp": self.now_iso(),
        }
