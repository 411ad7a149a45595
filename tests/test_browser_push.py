"""Web Push in headless Chromium against a real server: the service worker served at
``/tidings-sw.js`` (built from the npm package's ``tidings/sw``) registered by
``subscribePush`` from ``/tidings.js``, and a push in the server's own payload format
delivered to it through the Chrome DevTools Protocol (``ServiceWorker.deliverPushMessage``)
shows a notification.

Headless Chromium here has no push service to subscribe with (its push service is Google's
FCM, out of reach of the test machine; in an incognito context it has no Push API at
all): ``pushManager.subscribe`` never answers, so
``subscribePush`` is checked up to that step (it never answers), its last step (the POST of
the subscription) with a subscription made by the test, and the push is delivered by CDP
instead of through a subscription. The server side of a subscription (the VAPID JWT, RFC 8291
encryption, 404/410 removal) is tested against a local RFC 8030 push service in
tests/delivery/test_push.py; the click handling in tests/js/sw.test.mjs.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, async_playwright

from tidings.delivery import Message
from tidings.delivery.push import generate_vapid_key, payload

from .browser import CHROMIUM, CHROMIUM_ARGS, page_errors
from .conftest import TIMEOUT, ServerFactory, token

WAIT_MS = TIMEOUT * 1000

# The push service is out of reach, so pushManager.subscribe() never answers: the page
# gives it `deadline` ms and reports which it was.
SUBSCRIBE = """async ([userToken, deadline]) => {
  const { Client, subscribePush, pushPublicKey } = await import("/tidings.js");
  const client = new Client(`ws://${location.host}/ws`, userToken);
  const key = await pushPublicKey(client);
  let outcome;
  const late = new Promise((resolve) => setTimeout(() => resolve("no answer"), deadline));
  try {
    const got = await Promise.race([subscribePush(client), late]);
    outcome = got === "no answer"
      ? { subscribed: false, error: "no answer from the push service" }
      : { subscribed: true, endpoint: got.subscription.endpoint };
  } catch (error) {
    outcome = { subscribed: false, error: `${error.name}: ${error.message}` };
  }
  const registration = await navigator.serviceWorker.getRegistration("/");
  return {
    key,
    outcome,
    script: registration?.active?.scriptURL ?? null,
    scope: registration?.scope ?? null,
    permission: Notification.permission,
  };
}"""

SHOWN = """async () => {
  const registration = await navigator.serviceWorker.getRegistration("/");
  const shown = await registration.getNotifications();
  return shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data,
    requireInteraction: n.requireInteraction }));
}"""


@pytest.fixture
async def profile(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """Headless Chromium with a profile on disk: Chromium has no Push API in an incognito
    context, which is what ``browser.new_context()`` makes."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 (one stat, before any I/O loop)
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or make test)")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield context
        finally:
            await context.close()


async def test_service_worker_shows_the_servers_push(
    profile: BrowserContext, make_server: ServerFactory
) -> None:
    """subscribePush registers /tidings-sw.js with the server's VAPID key in hand and the
    permission granted; a push in the server's payload format shows its notification
    (title, body, tag, the URL to open), and a second push of the same notification
    replaces it rather than adding one."""
    h = await make_server(
        push_vapid_private_key=generate_vapid_key(), push_vapid_subject="mailto:ops@tidings.test"
    )
    context = profile
    await context.grant_permissions(["notifications"], origin=h.url)
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto(f"{h.url}/health/live")
    got = await page.evaluate(SUBSCRIBE, [token("sam"), WAIT_MS / 4])
    status, listed = await h.api("GET", "/api/me/push-subscriptions", key=token("sam"))
    assert status == 200
    assert got["key"] == listed["publicKey"]
    assert got["script"] == f"{h.url}/tidings-sw.js"
    assert got["scope"] == f"{h.url}/"
    assert got["permission"] == "granted"
    if got["outcome"]["subscribed"]:  # a Chromium that reaches its push service
        assert [s["endpoint"] for s in listed["subscriptions"]] == [got["outcome"]["endpoint"]]
    else:  # here: it registered the worker, had the permission, then waited on FCM
        assert "push service" in got["outcome"]["error"], got["outcome"]
        assert listed["subscriptions"] == []

    cdp = await context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    found = asyncio.Event()

    def updated(event: dict[str, Any]) -> None:
        registrations.extend(event["registrations"])
        found.set()

    cdp.on("ServiceWorker.workerRegistrationUpdated", updated)
    await cdp.send("ServiceWorker.enable")
    async with asyncio.timeout(TIMEOUT):
        while not any(r["scopeURL"] == f"{h.url}/" for r in registrations):
            found.clear()
            await found.wait()
    registration = next(r for r in registrations if r["scopeURL"] == f"{h.url}/")

    message = Message(
        key="ntf_7:push",
        notification_id="ntf_7",
        user_id="sam",
        title="Invoice 7 paid",
        text="We got 12 €.",
        url=f"{h.url}/invoices/7",
        priority="CRITICAL",
        category="billing",
    )
    body = payload(message).decode()
    for _ in range(2):  # the same notification twice: one shown (the tag)
        await cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": h.url, "registrationId": registration["registrationId"], "data": body},
        )
    await page.wait_for_function(f"({SHOWN})().then((s) => s.length > 0)", timeout=WAIT_MS)
    shown = await page.evaluate(SHOWN)
    assert shown == [
        {
            "title": "Invoice 7 paid",
            "body": "We got 12 €.",
            "tag": "ntf_7",
            "data": {
                "id": "ntf_7",
                "url": f"{h.url}/invoices/7",
                "category": "billing",
                "priority": "CRITICAL",
            },
            "requireInteraction": True,
        }
    ], json.dumps(shown)
    assert errors == []


# subscribePush with a registration whose browser subscription the test made (the keys of
# a real P-256 pair, an FCM endpoint): what the helper sends is what the server stores.
SUBSCRIBE_WITH = """async ([userToken, sub]) => {
  const { Client, subscribePush, pushPublicKey } = await import("/tidings.js");
  const client = new Client(`ws://${location.host}/ws`, userToken);
  const key = await pushPublicKey(client);
  const b64 = key.replace(/-/g, "+").replace(/_/g, "/");
  const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const subscription = { endpoint: sub.endpoint, options: { applicationServerKey: raw.buffer },
    toJSON: () => sub };
  const registration = { active: {}, pushManager: { getSubscription: async () => subscription } };
  const first = await subscribePush(client, { registration });
  const again = await subscribePush(client, { registration });
  return [first.created, again.created];
}"""


async def test_subscribe_push_sends_the_subscription(
    profile: BrowserContext, make_server: ServerFactory
) -> None:
    """subscribePush POSTs the browser's subscription to /api/me/push-subscriptions with
    the user's token (201, then 200 for the same one), where the server lists it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from py_vapid import b64urlencode

    h = await make_server(
        push_vapid_private_key=generate_vapid_key(), push_vapid_subject="mailto:ops@tidings.test"
    )
    await profile.grant_permissions(["notifications"], origin=h.url)
    page = await profile.new_page()
    errors = page_errors(page)
    await page.goto(f"{h.url}/health/live")
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    sub = {
        "endpoint": "https://fcm.googleapis.com/fcm/send/test-endpoint",
        "expirationTime": None,
        "keys": {"p256dh": b64urlencode(point), "auth": b64urlencode(os.urandom(16))},
    }
    assert await page.evaluate(SUBSCRIBE_WITH, [token("tia"), sub]) == [True, False]
    status, listed = await h.api("GET", "/api/me/push-subscriptions", key=token("tia"))
    assert status == 200
    assert [s["endpoint"] for s in listed["subscriptions"]] == [sub["endpoint"]]
    assert errors == []
