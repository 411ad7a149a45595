"""The SMS (and chat) channel: outbound HTTP to a provider.

``WebhookSmsSender`` POSTs a JSON message signed with Standard Webhooks to any URL: a
small relay of your own, or a chat tool's incoming webhook behind one.
``TwilioSmsSender`` speaks Twilio's Messages API (form-encoded, HTTP Basic auth with the
account SID and auth token, ``I-Twilio-Idempotency-Token`` carrying the delivery key).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable

import aiohttp
import msgspec

from . import SENT, Channel, Contact, Message, Outcome, failed
from .webhook import Signer

log = logging.getLogger("tidings.delivery.sms")


def http_outcome(status: int, what: str) -> Outcome:
    """A provider's HTTP answer as an outcome: 2xx sent; 408, 425, 429 and 5xx worth
    retrying; any other 4xx not (the request itself is wrong)."""
    if 200 <= status < 300:
        return SENT
    return failed(f"{what} answered {status}", retry=status >= 500 or status in (408, 425, 429))


class _Http:
    """One aiohttp session, opened on first use."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def sms_text(message: Message) -> str:
    """Title and text in one short body (providers split what is longer)."""
    body = f"{message.title}: {message.text}" if message.text else message.title
    return body if message.url is None else f"{body} {message.url}"


class WebhookSmsSender:
    """A generic signed webhook: ``{"channel", "to", "text", "title", "url", "userId",
    "notificationId", "priority", "category"}`` POSTed as JSON, with the delivery key as
    ``webhook-id``.

    Args:
        url: where to POST.
        secret: the Standard Webhooks secret.
        timeout: seconds for one attempt.
    """

    channel = Channel.SMS

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._signer = Signer(secret)
        self._http = _Http(timeout)
        self._clock = clock

    async def send(self, message: Message, contact: Contact) -> Outcome:
        if not contact.phone:
            return failed("no phone number", retry=False)
        body = msgspec.json.encode(
            {
                "channel": "sms",
                "to": contact.phone,
                "text": sms_text(message),
                "title": message.title,
                "url": message.url,
                "userId": message.user_id,
                "notificationId": message.notification_id,
                "priority": message.priority,
                "category": message.category,
            }
        )
        signed = self._signer.headers(message.key, self._clock(), body)
        headers = {"Content-Type": "application/json", **signed}
        try:
            async with self._http.session().post(self.url, data=body, headers=headers) as r:
                return http_outcome(r.status, "SMS webhook")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return failed(f"SMS webhook: {exc.__class__.__name__}", retry=True)

    async def close(self) -> None:
        await self._http.close()


class TwilioSmsSender:
    """Twilio's Messages API.

    Args:
        account_sid, auth_token: the account's credentials (HTTP Basic auth).
        sender: the From number, or a Messaging Service SID (``MG…``).
        base_url: the API's origin (tests point it at a local peer).
        timeout: seconds for one attempt.
    """

    channel = Channel.SMS

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sender: str,
        *,
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        # Built here: aiohttp's BasicAuth is deprecated in newer releases, its replacement
        # missing from older ones we support.
        pair = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._auth = "Basic " + pair
        self._sender = sender
        self._http = _Http(timeout)

    async def send(self, message: Message, contact: Contact) -> Outcome:
        if not contact.phone:
            return failed("no phone number", retry=False)
        origin = "MessagingServiceSid" if self._sender.startswith("MG") else "From"
        form = {"To": contact.phone, origin: self._sender, "Body": sms_text(message)}
        headers = {"Authorization": self._auth, "I-Twilio-Idempotency-Token": message.key}
        try:
            async with self._http.session().post(self.url, data=form, headers=headers) as r:
                outcome = http_outcome(r.status, "Twilio")
                if not outcome.sent:
                    # Twilio explains a refusal in JSON: {"code": 21211, "message": ...}.
                    try:
                        detail = await r.json(content_type=None)
                        reason = f"{outcome.reason}: {detail.get('code')} {detail.get('message')}"
                        outcome = failed(reason, retry=outcome.retry)
                    except (ValueError, AttributeError, aiohttp.ClientError):
                        pass
                return outcome
        except (aiohttp.ClientError, TimeoutError) as exc:
            return failed(f"Twilio: {exc.__class__.__name__}", retry=True)

    async def close(self) -> None:
        await self._http.close()
