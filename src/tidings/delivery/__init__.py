"""Delivery beyond the app: the channel interface every outbound adapter implements.

A notification reaches a user's open tabs through the inbox. When nobody looked, the
escalation worker (``delivery.escalation``) hands it to a ``Sender`` for another
channel: email, Web Push, SMS or a chat webhook. This module holds what they share:
what is sent (``Message``), to whom (``Contact``), and what came of it (``Outcome``).

Adapters: ``email.SmtpSender``, ``push.WebPushSender``, ``sms.WebhookSmsSender`` and
``sms.TwilioSmsSender``; ``webhook`` signs requests with the Standard Webhooks scheme.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

import msgspec

from ..store.deliveries import Contact

__all__ = ["SENT", "Channel", "Contact", "Message", "Outcome", "Sender", "failed"]


class Channel(enum.StrEnum):
    """A way to reach a user; ``IN_APP`` is the inbox itself (never a ``Sender``)."""

    IN_APP = "in_app"
    PUSH = "push"
    EMAIL = "email"
    SMS = "sms"


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One notification for one user on one channel, ready to send.

    ``key`` is ``"<notification id>:<channel>"``: the same for every attempt, so a peer
    that deduplicates (an SMTP ``Message-ID``, a ``webhook-id``, Twilio's idempotency
    token, a push ``Topic``) sees a retry as the message it already has.
    """

    key: str
    notification_id: str
    user_id: str
    title: str
    text: str
    html: str | None = None
    # Where the notification opens (an action URL, or the app's inbox).
    url: str | None = None
    priority: str = "MEDIUM"
    category: str | None = None
    data: Any = None


class Outcome(msgspec.Struct, frozen=True):
    """What one attempt came to.

    ``sent``: the next hop accepted the message. Otherwise ``reason`` says why, and
    ``retry`` whether trying again later may help (a timeout, a 5xx, a 429) or not (no
    address, a 4xx that will not change, a push subscription that is gone).
    """

    sent: bool
    reason: str | None = None
    retry: bool = False


SENT = Outcome(True)


def failed(reason: str, *, retry: bool) -> Outcome:
    """A failed attempt."""
    return Outcome(False, reason, retry)


class Sender(Protocol):
    """One outbound channel.

    Contract, for every implementation:

    * **"Sent" means accepted by the next hop**: the SMTP server answered 250 to the
      message, the push service 201, the SMS provider or webhook receiver 2xx. Nothing
      is known about the user's device after that.
    * **One attempt per call.** ``send`` never retries and never raises for a failure of
      the peer or the network: it returns ``failed(reason, retry=...)`` and the caller
      (the escalation worker) decides when to try again, with backoff, up to a limit.
      Programming errors may raise; the worker logs them and counts a failure.
    * **Idempotency per notification and channel.** ``message.key`` is stable across
      attempts and instances and is passed to the peer wherever its protocol has a
      place for it. The worker sends a key again only when no attempt is recorded as
      sent (at least once; a crash between the peer's answer and the record can repeat
      one attempt, which the key lets the peer drop).
    * **Bounded.** Each attempt has a timeout; ``close`` releases connections and may be
      called once, after the last ``send``.
    """

    channel: Channel

    async def send(self, message: Message, contact: Contact) -> Outcome:
        """Make one attempt to deliver ``message`` to ``contact``."""
        ...

    async def close(self) -> None:
        """Release connections (shutdown)."""
        ...
