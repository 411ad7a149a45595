"""The console's operations view acts, as an operator would use it in headless Chromium:
find a user and see their connections (with their transport), unsubscribe and disconnect
them, publish, send and broadcast, read a channel's history, look at a room (members, who
is online, recent messages), open a notification's delivery log, and follow the server's
live event log of connects and disconnects with close codes. Every action is a call of
the HTTP API with the operator's key; real WebSocket and SSE clients are on the other
end. Screenshots go to ``test-artifacts/console-*.png``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playwright.async_api import Browser, Page
from websockets.asyncio.client import ClientConnection

from tidings.channels import NamespacePolicy

from .browser import browser, page_errors, screenshot  # noqa: F401 (browser is a fixture)
from .conftest import API_KEY, TIMEOUT, ServerFactory, request, token
from .gateway.test_sse import stream
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
        assert "websocket" in (await with_subs.text_content() or "")
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
        await logged(page, f"una: {second_id} (websocket) from 127.0.0.1, code 4010")
        await screenshot(page, "console-actions-log")
    assert errors == []


async def test_operator_looks_at_a_room(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """A room's details, members with who is online, and recent messages, read with the
    API key; removing a member is logged."""
    h = await make_server(dev=True)
    status, _ = await h.api("POST", "/api/rooms", {"id": "lobby", "name": "Lobby"})
    assert status == 201
    status, _ = await h.api("PUT", "/api/rooms/lobby/members", {"userIds": ["ann", "ben"]})
    assert status == 200
    for user, text in (("ann", "Hello"), ("ben", "Hi, Ann")):
        status, _ = await h.api(
            "POST", "/api/rooms/lobby/messages", {"content": text}, key=token(user)
        )
        assert status == 201
    page = await console(browser, h, "#operations")
    await page.locator("#ops").wait_for(timeout=WAIT_MS)
    async with h.client("ben") as ben:
        reply = await request(ben, {"type": "subscribe", "channel": "room:lobby"})
        assert reply["type"] == "subscribed", reply
        await page.fill("#room-id", "lobby")
        await page.click("#room-form button[type=submit]")
        members = page.locator("#members tbody tr")
        await members.nth(1).wait_for(timeout=WAIT_MS)
        info = await page.locator("#room-info").text_content() or ""
        assert "Lobby" in info
        assert "1 online" in info
        assert await page.locator("#members tr[data-member=ben] td.online").count() == 1
        assert await page.locator("#members tr[data-member=ann] td.online").count() == 0
        messages = await page.locator("#room-messages li").all_text_contents()
        assert "Hi, Ann" in messages[0]
        assert "ben" in messages[0]
        assert "Hello" in messages[1]
        await screenshot(page, "console-room")
        # On a phone: nothing wider than the screen (wide tables scroll in their card).
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.fill("#history-channel", "news")  # an empty history table too
        await page.click("#history-form button[type=submit]")
        await page.locator("#history-result").wait_for(timeout=WAIT_MS)
        overflow = await page.evaluate(
            "() => document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0
        await screenshot(page, "console-room-phone")
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
    notification; operations with a user found, a delivery log, a room, a channel's
    history and the live event log open)."""
    npm_ci(JS)
    h = await make_server(
        dev=True, namespaces={"feed": NamespacePolicy(history_size=10, history_ttl=300.0)}
    )
    await h.api(
        "POST", "/api/notifications", {"userId": "ari", "title": "Hello", "priority": "HIGH"}
    )
    await h.api("POST", "/api/publish", {"channel": "feed:1", "data": {"p": 1}})
    await h.api("POST", "/api/rooms", {"id": "hall"})
    await h.api("PUT", "/api/rooms/hall/members", {"userIds": ["ari"]})
    await h.api("POST", "/api/rooms/hall/messages", {"content": "Hi"}, key=token("ari"))
    page = await console(browser, h, "?user=ari", bypass_csp=True)
    await page.locator("#inbox-list li.item").wait_for(timeout=WAIT_MS)
    await check_axe(page, AXE, "the console's notification centre")
    await page.evaluate("location.hash = '#operations'")
    await page.locator("#ops").wait_for(timeout=WAIT_MS)
    await page.fill("#find-user-id", "ari")
    await page.click("#find-user button[type=submit]")
    await page.locator("#connections tbody tr").wait_for(timeout=WAIT_MS)
    await logged(page, "ari: client_")  # the live event log has a line
    await page.get_by_role("button", name="Deliveries of Hello").click()
    await page.locator("#deliveries-empty").wait_for(timeout=WAIT_MS)
    await page.fill("#room-id", "hall")
    await page.click("#room-form button[type=submit]")
    await page.locator("#members tbody tr").wait_for(timeout=WAIT_MS)
    await page.locator("#room-messages li").wait_for(timeout=WAIT_MS)
    await page.fill("#history-channel", "feed:1")
    await page.click("#history-form button[type=submit]")
    await page.locator("#history tbody tr").wait_for(timeout=WAIT_MS)
    await check_axe(page, AXE, "the console's operations view")


async def test_operator_follows_the_live_log_and_sees_each_transport(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """The event log follows the server live: a WebSocket and an SSE connection of one
    user appear as they connect, the found user's table names each one's transport, and
    a disconnect from the console shows its close code; a client that leaves on its own
    shows 1000. The operator signs in with the API key (no --dev here)."""
    h = await make_server()
    page = await console(browser, h, "#operations")
    errors = page_errors(page)
    await page.fill("#apikey", API_KEY)
    await page.click("#watch")
    await page.locator("#events-state[data-state=live]").wait_for(timeout=WAIT_MS)
    async with h.client("sam") as ws, stream(h, f"?token={token('sam')}") as sse:
        ws_id = (await request(ws, {"type": "get_status"}))["data"]["clientId"]
        sse_id = (await sse.until("welcome"))["data"]["clientId"]
        await logged(page, f"sam: {ws_id} (websocket) from 127.0.0.1")
        await logged(page, f"sam: {sse_id} (sse) from 127.0.0.1")
        # The user's name in the log finds them.
        await page.get_by_role("button", name="Find user sam").first.click()
        rows = page.locator("#connections tbody tr")
        await rows.nth(1).wait_for(timeout=WAIT_MS)
        ws_row = page.locator(f"#connections tr[data-client='{ws_id}'] td").nth(1)
        sse_row = page.locator(f"#connections tr[data-client='{sse_id}'] td").nth(1)
        assert await ws_row.text_content() == "websocket"
        assert await sse_row.text_content() == "sse"
        await screenshot(page, "console-transport")
        await page.select_option("#close-code", "4010")
        await (
            page.locator(f"#connections tr[data-client='{sse_id}']")
            .get_by_role("button", name="Disconnect")
            .click()
        )
        code, _ = await sse.close_event()
        assert code == 4010
        await logged(page, f"{sse_id} (sse) from 127.0.0.1, code 4010 (disconnected by the server)")
    await logged(page, f"{ws_id} (websocket) from 127.0.0.1, code 1000 (normal closure)")
    await screenshot(page, "console-live-log")
    assert errors == []


async def test_operator_reads_a_channel_history(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """A channel's kept publications, newest first with offset, type and data; a channel
    whose namespace keeps none says so."""
    h = await make_server(
        dev=True, namespaces={"feed": NamespacePolicy(history_size=10, history_ttl=300.0)}
    )
    for i in range(3):
        status, _ = await h.api(
            "POST", "/api/publish", {"channel": "feed:1", "type": "price", "data": {"p": i}}
        )
        assert status == 200
    page = await console(browser, h, "#operations")
    errors = page_errors(page)
    await page.locator("#ops").wait_for(timeout=WAIT_MS)
    await page.fill("#history-channel", "feed:1")
    await page.click("#history-form button[type=submit]")
    rows = page.locator("#history tbody tr")
    await rows.nth(2).wait_for(timeout=WAIT_MS)
    first = await rows.nth(0).locator("td").all_text_contents()
    assert (first[0], first[1], first[3]) == ("3", "price", '{"p":2}')
    assert "stream at offset 3" in (await page.locator("#history-info").text_content() or "")
    await screenshot(page, "console-channel-history")
    await page.fill("#history-channel", "news")
    await page.click("#history-form button[type=submit]")
    await page.locator("#history-info", has_text="keeps no history").wait_for(timeout=WAIT_MS)
    assert await rows.count() == 0
    # Chromium reports the API's 404 as a failed resource load; nothing else went wrong.
    assert [e for e in errors if "status of 404" not in e] == []


async def test_operator_opens_a_delivery_log(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """From a user's recent notifications, one's delivery log: each channel's state and
    its events (queued, then skipped with the reason)."""
    h = await make_server(dev=True)
    status, created = await h.api(
        "POST",
        "/api/notifications",
        {
            "userId": "dora",
            "title": "Invoice overdue",
            "escalation": [{"channel": "email", "after": 0}],
        },
    )
    assert status == 201, created
    escalation = h.server.escalation
    assert await escalation.run_due() == 1  # dora has no email address: skipped
    page = await console(browser, h, "#operations")
    errors = page_errors(page)
    await page.locator("#ops").wait_for(timeout=WAIT_MS)
    await page.fill("#find-user-id", "dora")
    await page.click("#find-user button[type=submit]")
    await page.get_by_role("button", name="Deliveries of Invoice overdue").click()
    email = page.locator("#deliveries-list .delivery[data-channel=email]")
    await email.wait_for(timeout=WAIT_MS)
    assert await email.locator(".state").text_content() == "skipped"
    events = await email.locator("li .log-kind").all_text_contents()
    assert events == ["queued", "skipped"]
    assert "skipped: no email address" in (await email.text_content() or "")
    await screenshot(page, "console-deliveries")
    assert errors == []
