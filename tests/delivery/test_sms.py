"""The SMS channel against local HTTP peers: the generic signed webhook (checked with the
Standard Webhooks reference verifier) and Twilio's Messages API request format."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook

from tidings.delivery import Contact, Message
from tidings.delivery.sms import TwilioSmsSender, WebhookSmsSender
from tidings.delivery.webhook import verifier_secret

from .peers import http_peer

PHONE = Contact(phone="+15005550006")
MESSAGE = Message(
    key="ntf_1:sms",
    notification_id="ntf_1",
    user_id="alice",
    title="Server down",
    text="db-1 is not answering",
    url="https://status.example/db-1",
    priority="CRITICAL",
)


async def test_generic_webhook_is_signed_and_keyed() -> None:
    """The receiver verifies the signature with the reference verifier; a retry carries
    the same webhook-id; 503 is retried, 400 is not, and no phone sends nothing."""
    received: list[tuple[str, Any]] = []
    answers = [503, 200, 400]
    verifier = Webhook(verifier_secret("sms-secret"))

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((request.headers["webhook-id"], verifier.verify(body, request.headers)))
        return web.Response(status=answers.pop(0))

    async with http_peer({"/sms": receive}) as url:
        sender = WebhookSmsSender(url + "/sms", "sms-secret")
        try:
            assert (await sender.send(MESSAGE, Contact())).retry is False
            first = await sender.send(MESSAGE, PHONE)
            assert (first.sent, first.retry) == (False, True)
            assert (await sender.send(MESSAGE, PHONE)).sent
            bad = await sender.send(MESSAGE, PHONE)
            assert (bad.sent, bad.retry) == (False, False)
        finally:
            await sender.close()
    assert [key for key, _ in received] == ["ntf_1:sms"] * 3
    body = received[0][1]
    assert body["to"] == "+15005550006"
    assert body["text"] == "Server down: db-1 is not answering https://status.example/db-1"
    assert (body["userId"], body["notificationId"], body["priority"]) == (
        "alice",
        "ntf_1",
        "CRITICAL",
    )


async def test_twilio_messages_api_format() -> None:
    """A form-encoded POST to /2010-04-01/Accounts/{Sid}/Messages.json with Basic auth,
    To/From/Body and the idempotency token; Twilio's JSON error reason is kept."""
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = []

    async def messages(request: web.Request) -> web.Response:
        form = dict(await request.post())
        seen.append((request.path, {k: str(v) for k, v in form.items()}, dict(request.headers)))
        if form["To"] == "+15005550001":  # Twilio's magic "invalid number"
            error = {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}
            return web.json_response(error, status=400)
        return web.json_response({"sid": "SM123", "status": "queued"}, status=201)

    route = "/2010-04-01/Accounts/AC123/Messages.json"
    async with http_peer({route: messages}) as url:
        sender = TwilioSmsSender("AC123", "token-xyz", "+15005550006", base_url=url)
        try:
            assert (await sender.send(MESSAGE, Contact(phone="+15551234567"))).sent
            bad = await sender.send(MESSAGE, Contact(phone="+15005550001"))
        finally:
            await sender.close()
    assert (bad.sent, bad.retry) == (False, False)
    assert "21211" in (bad.reason or "")
    path, form, headers = seen[0]
    assert path == route
    assert form == {
        "To": "+15551234567",
        "From": "+15005550006",
        "Body": "Server down: db-1 is not answering https://status.example/db-1",
    }
    assert headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"AC123:token-xyz").decode()
    assert headers["I-Twilio-Idempotency-Token"] == "ntf_1:sms"
