"""The channels a server's settings turn on (the server calls ``senders`` at start)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Settings
from . import Sender

if TYPE_CHECKING:  # the extras' libraries load only when their feature is configured
    from .push import Subscriptions
    from .templates import Templates


def templates(s: Settings) -> Templates | None:
    """The compiled ``[templates]`` of the config file, if it has any."""
    if not s.templates:
        return None
    from .templates import Templates

    return Templates(s.templates, s.default_locale)


def senders(
    s: Settings, subscriptions: Subscriptions, clock: Callable[[], float] = time.time
) -> dict[str, Sender]:
    """One ``Sender`` per configured channel; the libraries of the ``email`` and ``push``
    extras are imported only when their channel is configured."""
    out: dict[str, Sender] = {}
    if s.smtp_host:
        from .email import SmtpSender

        context = None
        if s.smtp_ca_file:
            context = ssl.create_default_context(cafile=s.smtp_ca_file)
        out["email"] = SmtpSender(
            s.smtp_host,
            s.smtp_port,
            s.email_from,
            tls=s.smtp_tls,
            username=s.smtp_username,
            password=s.smtp_password,
            unsubscribe_url=s.email_unsubscribe_url,
            tls_context=context,
            connections=s.smtp_connections,
        )
    if s.push_vapid_private_key:
        from .push import WebPushSender

        out["push"] = WebPushSender(
            subscriptions,
            s.push_vapid_private_key,
            s.push_vapid_subject,
            ttl=s.push_ttl,
            clock=clock,
        )
    if s.sms_webhook_url:
        from .sms import WebhookSmsSender

        out["sms"] = WebhookSmsSender(s.sms_webhook_url, s.sms_webhook_secret, clock=clock)
    elif s.twilio_account_sid:
        from .sms import TwilioSmsSender

        out["sms"] = TwilioSmsSender(
            s.twilio_account_sid, s.twilio_auth_token, s.twilio_from, base_url=s.twilio_base_url
        )
    return out
