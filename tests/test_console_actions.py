"""The console's operations view acts, as an operator would use it in headless Chromium:
find a user and see their connections, unsubscribe and disconnect them, publish, send and
broadcast, look at a room's members, and follow it all in the event log. Every action is
a call of the HTTP API with the operator's key; real WebSocket clients are on the other
end. Screenshots go to ``test-artifacts/console-actions-*.png``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playwright.async_api import Browser, Page
from websockets.asyncio.client import ClientConnection

from .browser import browser, page_errors, screenshot  # noqa: F401 (browser is a fixture)
from .conftest import TIMEOUT, ServerFactory, request
from .test_browser_inbox import AXE, check_axe
from .test_console import console
from .test_js_client import JS, npm_ci

WAIT_MS = TIMEOUT * 1000


async def next_message(ws: ClientConnection, type_: str) -> dict[str, Any]:
    """The next message of ``type_`` the connection receives (others are skipped)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == type_:
                return dict(msg)


async def logged(page: Page, text: str) -> None:
    """Wait for an event-log line containing ``text``."""
    await page.locator("#event-log li", has_text=text).first.wait_for(timeout=WAIT_MS)


async def test_operator_acts_on_a_user_and_sends(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """Find a user: their connections with address, age and subscriptions; unsubscribe
    one channel, publish, send to the user and broadcast (each arrives), disconnect one
    connection with a chosen code; the event log records the actions and the changes."""
    h = await make_server(dev=True)
    page = await console(browser, h, "#operations")
    errors = page_errors(page)
    await page.locator("#ops").wait_for(timeout=WAIT_MS)
    async with h.client("una") as first, h.client("una") as second, h.client("otto") as otto:
        await request(first, {"type": "subscribe", "channel": "news"})
        await request(first, {"type": "subscribe", "channel": "sport"})
        await page.fill("#find-user-id", "una")
        await page.click("#find-user button[type=submit]")
        rows = page.locator("#connections tbody tr")
        await rows.nth(1).wait_for(timeout=WAIT_MS)
        assert await page.locator("#user-unread").text_content() == "0"
        with_subs = rows.filter(has_text="news")
        assert "127.0.0.1" in (await with_subs.text_content() or "")
        assert "sport" in (await with_subs.text_content() or "")
        await screenshot(page, "console-actions-user")

        # Unsubscribe una from "sport": her connection hears it came from the server.
        await with_subs.get_by_role("button", name="Unsubscribe una from sport").click()
        gone = await next_message(first, "unsubscribed")
        assert gone["data"] == {"channel": "sport", "byServer": True}
        await logged(page, "unsubscribe una from sport: 200")
        await page.wait_for_function(
            "() => ![...document.querySelectorAll('#connections .sub')]"
            ".some((s) => s.textContent.startsWith('sport'))",
            timeout=WAIT_MS,
        )

        # Publish to "news", send to una, broadcast: each arrives where it should.
        await page.select_option("#send-target", "channel")
        await page.fill("#send-name", "news")
        await page.fill("#send-form input[name=type]", "headline")
        await page.fill("#send-form textarea[name=data]", '{"text": "extra"}')
        await page.click("#send-form button[type=submit]")
        published = await next_message(first, "headline")
        assert published["channel"] == "news"
        assert published["data"] == {"text": "extra"}
        await logged(page, '"delivered":1')
        await page.select_option("#send-target", "user")
        await page.fill("#send-name", "una")
        await page.fill("#send-form input[name=type]", "direct")
        await page.click("#send-form button[type=submit]")
        assert (await next_message(second, "direct"))["data"] == {"text": "extra"}
        await page.select_option("#send-target", "all")
        await page.fill("#send-form input[name=type]", "everyone")
        await page.click("#send-form button[type=submit]")
        assert (await next_message(otto, "everyone"))["data"] == {"text": "extra"}
        await logged(page, "broadcast: 200")

        # Disconnect the second connection with 4010: it closes with that code, the table
        # and the event log follow.
        second_id = (await rows.filter(has_not_text="news").get_attribute("data-client")) or ""
        await page.select_option("#close-code", "4010")
        await rows.filter(has_not_text="news").get_by_role("button", name="Disconnect").click()
        async with asyncio.timeout(TIMEOUT):
            await second.wait_closed()
        assert second.close_code == 4010
        await logged(page, f"disconnect {second_id} (4010): 200")
        await page.wait_for_function(
            "() => document.querySelectorAll('#connections tbody tr').length === 1",
            timeout=WAIT_MS,
        )
        await logged(page, f"una: {second_id} closed")
        await screenshot(page, "console-actions-log")
    assert errors == []


async def test_operator_looks_at_a_room(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """A room's details and members, from the API; removing a member is logged."""
    h = await make_server(dev=True)
    status, _ = await h.api("POST", "/api/rooms", {"id": "lobby", "name": "Lobby"})
    assert status == 201
    status, _ = await h.api("PUT", "/api/rooms/lobby/members", {"userIds": ["ann", "ben"]})
    assert status == 200
    page = await console(browser, h, "#operations")
    await page.locator("#ops").wait_for(timeout=WAIT_MS)
    await page.fill("#room-id", "lobby")
    await page.click("#room-form button[type=submit]")
    members = page.locator("#members tbody tr")
    await members.nth(1).wait_for(timeout=WAIT_MS)
    assert "Lobby" in (await page.locator("#room-info").text_content() or "")
    await members.filter(has_text="ben").get_by_role("button", name="Remove").click()
    await logged(page, "remove ben from lobby: 200")
    await page.wait_for_function(
        "() => document.querySelectorAll('#members tbody tr').length === 1", timeout=WAIT_MS
    )
    status, body = await h.api("GET", "/api/rooms/lobby/members")
    assert [m["userId"] for m in body["members"]] == ["ann"]
    await screenshot(page, "console-actions-room")


async def test_console_passes_axe(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """axe-core finds no WCAG 2.1 A/AA violation in the console's views (signed in, with a
    notification; operations with a user found)."""
    npm_ci(JS)
    h = await make_server(dev=True)
    await h.api(
        "POST", "/api/notifications", {"userId": "ari", "title": "Hello", "priority": "HIGH"}
    )
    page = await console(browser, h, "?user=ari", bypass_csp=True)
    await page.locator("#inbox-list li.item").wait_for(timeout=WAIT_MS)
    await check_axe(page, AXE, "the console's notification centre")
    await page.evaluate("location.hash = '#operations'")
    await page.locator("#ops").wait_for(timeout=WAIT_MS)
    await page.fill("#find-user-id", "ari")
    await page.click("#find-user button[type=submit]")
    await page.locator("#connections tbody tr").wait_for(timeout=WAIT_MS)
    await check_axe(page, AXE, "the console's operations view")
