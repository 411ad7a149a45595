"""Two users in one room, each in headless Chromium: messages, typing, presence, an edit
and a delete appear on the other side (tests/pages/rooms.html, raw WebSocket)."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page, expect

from .browser import browser, page_errors, screenshot  # noqa: F401 (the fixture)
from .conftest import TIMEOUT, ServerFactory, token

PAGE = Path(__file__).parent / "pages" / "rooms.html"
WAIT = TIMEOUT * 1000  # Playwright counts in milliseconds


async def open_room(chromium: Browser, ws_url: str, user: str) -> tuple[Page, list[str]]:
    context = await chromium.new_context()
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto(f"{PAGE.as_uri()}?ws={ws_url}&token={token(user)}&room=r1")
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT)
    return page, errors


async def test_two_users_chat_in_a_room(browser: Browser, make_server: ServerFactory) -> None:  # noqa: F811
    """alice and bob see each other online, alice's typing and message reach bob, bob's
    reply reaches alice, alice's edit and delete show on bob's page, and bob leaving
    shows on alice's."""
    h = await make_server(presence_grace=0.2)
    status, _ = await h.api("POST", "/api/rooms", {"id": "r1"})
    assert status == 201
    status, _ = await h.api("PUT", "/api/rooms/r1/members", {"userIds": ["alice", "bob"]})
    assert status == 200

    alice, alice_errors = await open_room(browser, h.ws_url, "alice")
    bob, bob_errors = await open_room(browser, h.ws_url, "bob")
    try:
        await expect(alice.locator("#online li[data-user=bob]")).to_have_count(1, timeout=WAIT)
        await expect(bob.locator("#online li[data-user=alice]")).to_have_count(1, timeout=WAIT)

        await alice.locator("#compose").press_sequentially("hello bob")
        await expect(bob.locator("#typing")).to_have_text("alice is typing", timeout=WAIT)
        await alice.locator("#compose").press("Enter")
        said = bob.locator("#messages li[data-author=alice]")
        await expect(said).to_have_text("alice: hello bob", timeout=WAIT)
        await expect(bob.locator("#typing")).to_have_text("", timeout=WAIT)  # posting ends it

        await bob.locator("#compose").press_sequentially("hi alice")
        await bob.locator("#compose").press("Enter")
        await expect(alice.locator("#messages li[data-author=bob]")).to_have_text(
            "bob: hi alice", timeout=WAIT
        )

        message_id = await said.get_attribute("data-id")
        await alice.evaluate("([id]) => chat.edit(id, 'hello, bob')", [message_id])
        await expect(said).to_have_text("alice: hello, bob (edited)", timeout=WAIT)
        await alice.evaluate("([id]) => chat.remove(id)", [message_id])
        await expect(bob.locator("#messages li[data-author=alice]")).to_have_count(0, timeout=WAIT)
        await expect(bob.locator("#messages li")).to_have_count(1, timeout=WAIT)
        await screenshot(alice, "rooms-alice")
        await screenshot(bob, "rooms-bob")

        await bob.context.close()
        await expect(alice.locator("#online li[data-user=bob]")).to_have_count(0, timeout=WAIT)
        await expect(alice.locator("#online li")).to_have_text(["alice"], timeout=WAIT)
        assert alice_errors == []
        assert bob_errors == []
    finally:
        await alice.context.close()
