"""The drop-in inbox (``<tidings-bell>``, ``<tidings-inbox>`` from ``/inbox.js``) used as a
person would in headless Chromium against a real server: keyboard and mouse, tabs, load
more, read / archive / delete, preferences, empty and offline states, light and dark themes
on a desktop and a phone, with axe-core's accessibility check. Screenshots go to
``test-artifacts/inbox-*.png``.

The host page is put by the test into a document of the server's own origin, and loads the
client and the components from the server as any application page would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from .browser import browser, page_errors, screenshot  # noqa: F401 (browser is a fixture)
from .conftest import TIMEOUT, Harness, ServerFactory, token
from .test_js_client import JS, NODE, npm_ci

WAIT_MS = TIMEOUT * 1000
AXE = JS / "node_modules" / "axe-core" / "axe.min.js"

# The host page, put into a document the server sent (/health/live): Chromium's
# local-network checks look at where a document came from, and one a test routes in may
# not open a WebSocket to 127.0.0.1.
HOST_STYLE = """
  body { margin: 0; font-family: system-ui, sans-serif; }
  body.dark { background: #0b1220; color: #f9fafb; }
  header { display: flex; align-items: center; padding: 8px 16px; gap: 8px; }
  header h1 { font-size: 18px; margin: 0; flex: 1; }
  main { max-width: 720px; margin: 0 auto; padding: 8px; }
"""
HOST_BODY = """
  <header><h1>Acme Library</h1><tidings-bell></tidings-bell></header>
  <main><tidings-inbox></tidings-inbox></main>
"""
HOST_SCRIPT = """
  import { Client } from "/tidings.js";
  import { InboxStore } from "/inbox.js";
  const { token, theme } = window.hostOptions;
  document.body.classList.toggle("dark", theme === "dark");
  for (const el of document.querySelectorAll("tidings-bell, tidings-inbox")) {
    el.setAttribute("theme", theme);
  }
  const client = new Client(`ws://${location.host}/ws`, token, { backoffMax: 0.5 });
  const store = new InboxStore(client, { pageSize: 20 });
  window.client = client;
  window.store = store;
  window.actions = [];
  document.addEventListener("tidings-action", (event) => {
    window.actions.push({ id: event.detail.action.id, notification: event.detail.notification.id });
    event.preventDefault();  // the application routes it itself
  });
  document.querySelector("tidings-bell").store = store;
  document.querySelector("tidings-inbox").store = store;
  await client.connect();
  document.body.dataset.ready = "true";
"""


@pytest.fixture(scope="module")
def axe() -> Path:
    """axe-core from tests/js/node_modules (npm ci from the lock)."""
    if NODE is None:
        pytest.skip("node is not installed")
    npm_ci(JS)
    return AXE


async def open_inbox(
    browser: Browser,  # noqa: F811
    h: Harness,
    user: str,
    *,
    theme: str = "light",
    phone: bool = False,
) -> Page:
    """The host page on the server's origin, signed in as ``user``, once connected."""
    options: dict[str, Any] = {"color_scheme": theme}
    if phone:
        options.update(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    else:
        options.update(viewport={"width": 1100, "height": 800})
    context = await browser.new_context(**options)
    page = await context.new_page()

    await page.goto(f"{h.url}/health/live")
    await page.evaluate(
        """([style, body, options]) => {
            document.documentElement.lang = "en";
            document.head.innerHTML = '<meta name="viewport" content="width=device-width">'
                + '<title>inbox</title>';
            const sheet = document.createElement("style");
            sheet.textContent = style;
            document.head.append(sheet);
            document.body.innerHTML = body;
            window.hostOptions = options;
        }""",
        [HOST_STYLE, HOST_BODY, {"token": token(user), "theme": theme}],
    )
    await page.add_script_tag(content=HOST_SCRIPT, type="module")
    await page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    return page


async def notify(h: Harness, user: str, **fields: Any) -> str:
    status, body = await h.api("POST", "/api/notifications", {"userId": user, **fields})
    assert status == 201, body
    return str(body["notifications"][0]["id"])


async def server_unread(h: Harness, user: str) -> int:
    status, body = await h.api("GET", f"/api/users/{user}/notifications?limit=1")
    assert status == 200
    return int(body["unreadCount"])


async def badge(page: Page) -> str | None:
    """The bell's badge as shown, or None when hidden."""
    return await page.evaluate(
        "() => { const b = document.querySelector('tidings-bell').shadowRoot"
        ".querySelector('.badge'); return b.hidden ? null : b.textContent; }"
    )


async def wait_badge(page: Page, shown: str | None) -> None:
    await page.wait_for_function(
        "(want) => { const b = document.querySelector('tidings-bell').shadowRoot"
        ".querySelector('.badge'); return (b.hidden ? null : b.textContent) === want; }",
        arg=shown,
        timeout=WAIT_MS,
    )


async def check_axe(page: Page, axe: Path, what: str) -> None:
    """axe-core finds no violation (WCAG 2.1 A and AA rules, colour contrast included)."""
    await page.add_script_tag(path=str(axe))
    result = await page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', "
        "values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})).violations"
        ".map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target)}))"
    )
    assert result == [], f"{what}: {json.dumps(result, indent=1)}"


async def seed(h: Harness, user: str) -> None:
    """25 notifications: two categories, every priority, actions on some."""
    for i in range(25):
        await notify(
            h,
            user,
            title=f"Notification {i + 1}",
            message="Your loan of “Dune” ends on Friday." if i % 3 == 0 else None,
            category=["BILLING", "SECURITY", "LOANS"][i % 3],
            priority=["LOW", "MEDIUM", "HIGH", "CRITICAL"][i % 4],
            actions=(
                [
                    {"id": "renew", "label": "Renew", "url": "/loans/7/renew"},
                    {"id": "dismiss", "label": "Dismiss"},
                ]
                if i % 3 == 0
                else []
            ),
        )


async def test_inbox_as_a_person_uses_it(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
    axe: Path,
) -> None:
    """Bell, popover, tabs, load more, read, archive, delete, mark all read, an action, the
    preferences and the empty state, by mouse and keyboard, counts always the server's."""
    h = await make_server()
    await seed(h, "ines")
    page = await open_inbox(browser, h, "ines")
    errors = page_errors(page)
    inbox = page.locator("main tidings-inbox")
    items = inbox.locator("li.item")

    await wait_badge(page, "25")
    await items.nth(19).wait_for(timeout=WAIT_MS)
    assert await items.count() == 20
    first = items.first
    assert "Notification 25" in (await first.text_content() or "")
    await screenshot(page, "inbox-desktop-light")
    await check_axe(page, axe, "the inbox, light")

    # Infinite scroll: the end of the list coming into view loads the next page.
    await inbox.locator("button.more").scroll_into_view_if_needed()
    await items.nth(24).wait_for(timeout=WAIT_MS)
    assert await items.count() == 25
    assert await inbox.locator("button.more").is_hidden()

    # The bell opens a dialog by keyboard; Escape closes it and the focus returns.
    bell = page.locator("tidings-bell button.bell")
    assert await bell.get_attribute("aria-label") == "Notifications, 25 unread"
    await bell.focus()
    await page.keyboard.press("Enter")
    dialog = page.locator("tidings-bell [role=dialog]")
    await dialog.wait_for(timeout=WAIT_MS)
    assert await bell.get_attribute("aria-expanded") == "true"
    await dialog.locator("li.item").first.wait_for(timeout=WAIT_MS)
    await screenshot(page, "inbox-desktop-light-popover")
    await check_axe(page, axe, "the bell's popover, light")
    await page.keyboard.press("Escape")
    await dialog.wait_for(state="hidden", timeout=WAIT_MS)
    assert await page.evaluate(
        "document.activeElement.tagName === 'TIDINGS-BELL' && "
        "document.activeElement.shadowRoot.activeElement.classList.contains('bell')"
    )

    # Tabs by keyboard: All -> Unread with the arrow key; then a category.
    await inbox.locator("[role=tab][data-tab=all]").focus()
    await page.keyboard.press("ArrowRight")
    unread_tab = inbox.locator("[role=tab][data-tab=unread]")
    assert await unread_tab.get_attribute("aria-selected") == "true"
    await inbox.locator("[role=tab][data-tab='category:SECURITY']").click()
    await page.wait_for_function(
        "() => [...document.querySelector('main tidings-inbox').shadowRoot"
        ".querySelectorAll('li.item')].every(li => li.textContent.includes('SECURITY'))",
        timeout=WAIT_MS,
    )
    await inbox.locator("[role=tab][data-tab=all]").click()

    # Mark one read, archive one, delete one: the badge follows the server's count.
    target = items.filter(has_text="Notification 25")
    await target.locator("button.mark-read").click()
    await wait_badge(page, "24")
    assert await server_unread(h, "ines") == 24
    await items.filter(has_text="Notification 24").locator("button.archive").click()
    await items.filter(has_text="Notification 24").wait_for(state="detached", timeout=WAIT_MS)
    await wait_badge(page, "23")
    await items.filter(has_text="Notification 23").locator("button.delete").click()
    await items.filter(has_text="Notification 23").wait_for(state="detached", timeout=WAIT_MS)
    await wait_badge(page, "22")
    assert await server_unread(h, "ines") == 22

    # The Archived tab lists it (from the server's archived list); "Move to inbox" brings
    # it back, unread, and the count follows.
    await inbox.locator("[role=tab][data-tab=archived]").click()
    archived = items.filter(has_text="Notification 24")
    await archived.wait_for(timeout=WAIT_MS)
    assert await items.count() == 1
    assert await archived.locator("button.archive").count() == 0
    await screenshot(page, "inbox-archived")
    await check_axe(page, axe, "the archived tab")
    await archived.locator("button.unarchive").click()
    await inbox.locator(".empty", has_text="No archived notifications.").wait_for(timeout=WAIT_MS)
    await wait_badge(page, "23")
    assert await server_unread(h, "ines") == 23
    await inbox.locator("[role=tab][data-tab=all]").click()
    await items.filter(has_text="Notification 24").wait_for(timeout=WAIT_MS)
    await items.filter(has_text="Notification 24").locator("button.archive").click()
    await items.filter(has_text="Notification 24").wait_for(state="detached", timeout=WAIT_MS)
    await wait_badge(page, "22")

    # An action: the primary one is styled apart; the page hears of it; it marks read.
    row = items.filter(has_text="Notification 22")
    assert await row.locator("a.action.primary").text_content() == "Renew"
    assert await row.locator("button.action.secondary").text_content() == "Dismiss"
    await row.locator("a.action.primary").click()
    await wait_badge(page, "21")
    assert await page.evaluate("window.actions.map(a => a.id)") == ["renew"]

    # Preferences: switch SECURITY off, saved through /api/me/preferences.
    await inbox.locator("button.prefs-toggle").click()
    box = inbox.locator(".prefs input[name='inApp:SECURITY']")
    await box.wait_for(timeout=WAIT_MS)
    await screenshot(page, "inbox-preferences")
    await box.uncheck()
    await inbox.locator("button.prefs-save").click()
    await inbox.locator(".prefs-status", has_text="Saved.").wait_for(timeout=WAIT_MS)
    status, prefs = await h.api("GET", "/api/users/ines/preferences")
    assert status == 200
    assert prefs["inApp"]["SECURITY"] is False
    await inbox.locator("button.prefs-toggle").click()

    # Mark all read: the badge goes; the Unread tab is empty.
    await inbox.locator("button.mark-all").click()
    await wait_badge(page, None)
    assert await server_unread(h, "ines") == 0
    await unread_tab.click()
    await inbox.locator(".empty", has_text="No unread notifications.").wait_for(timeout=WAIT_MS)
    await screenshot(page, "inbox-empty")

    # A live notification arrives while open: the badge and the list follow at once.
    await inbox.locator("[role=tab][data-tab=all]").click()
    await notify(h, "ines", title="Live one", priority="HIGH")
    await items.filter(has_text="Live one").wait_for(timeout=WAIT_MS)
    await wait_badge(page, "1")
    assert errors == []


async def test_preferences_panel_edits_every_channel(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
    axe: Path,
) -> None:
    """The preferences panel shows in-app, push, email and SMS per category; switches
    clicked and saved are what /api/me/preferences holds, and a reload shows them again."""
    h = await make_server()
    await seed(h, "cleo")
    status, _ = await h.api("PUT", "/api/users/cleo/preferences", {"sms": {"*": False}})
    assert status == 200
    page = await open_inbox(browser, h, "cleo")
    errors = page_errors(page)
    inbox = page.locator("main tidings-inbox")
    await inbox.locator("li.item").first.wait_for(timeout=WAIT_MS)
    await inbox.locator("button.prefs-toggle").click()
    table = inbox.locator(".prefs table")
    await table.wait_for(timeout=WAIT_MS)
    heads = await table.locator("thead th").all_text_contents()
    assert heads == ["Category", "In app", "Push", "Email", "SMS"]
    rows = await table.locator("tbody th").all_text_contents()
    assert rows == ["BILLING", "LOANS", "SECURITY", "Everything else"]
    # What the server said shows: SMS off everywhere, the rest on.
    assert not await inbox.locator(".prefs input[name='sms:*']").is_checked()
    assert not await inbox.locator(".prefs input[name='sms:BILLING']").is_checked()
    assert await inbox.locator(".prefs input[name='email:BILLING']").is_checked()

    # Email only for SECURITY; no push for LOANS; SMS back on for BILLING.
    security_app = inbox.get_by_label("SECURITY: In app")
    await security_app.uncheck()
    await inbox.get_by_label("LOANS: Push").uncheck()
    await inbox.get_by_label("BILLING: SMS").check()
    await screenshot(page, "inbox-preferences-channels")
    await check_axe(page, axe, "the preferences panel")
    await inbox.locator("button.prefs-save").click()
    await inbox.locator(".prefs-status", has_text="Saved.").wait_for(timeout=WAIT_MS)
    status, prefs = await h.api("GET", "/api/users/cleo/preferences")
    assert status == 200
    assert prefs["inApp"]["SECURITY"] is False
    assert prefs["email"]["SECURITY"] is True
    assert prefs["push"]["LOANS"] is False
    assert prefs["sms"]["BILLING"] is True
    assert prefs["sms"]["*"] is False

    # Reloaded (a new page, a new connection), the panel shows what was saved.
    page = await open_inbox(browser, h, "cleo")
    inbox = page.locator("main tidings-inbox")
    await inbox.locator("li.item").first.wait_for(timeout=WAIT_MS)
    await inbox.locator("button.prefs-toggle").click()
    await inbox.locator(".prefs table").wait_for(timeout=WAIT_MS)
    want = {
        "inApp:SECURITY": False,
        "email:SECURITY": True,
        "push:LOANS": False,
        "push:SECURITY": True,
        "sms:BILLING": True,
        "sms:LOANS": False,
    }
    got = {name: await inbox.locator(f".prefs input[name='{name}']").is_checked() for name in want}
    assert got == want
    assert errors == []


@pytest.mark.parametrize(
    ("theme", "phone"),
    [("dark", False), ("light", True), ("dark", True)],
    ids=["desktop-dark", "phone-light", "phone-dark"],
)
async def test_themes_and_phone(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
    axe: Path,
    theme: str,
    phone: bool,
) -> None:
    """Dark and light, desktop and phone: it fits the screen (the popover fills a phone's),
    and axe finds nothing, popover open or not."""
    h = await make_server()
    await seed(h, "pat")
    page = await open_inbox(browser, h, "pat", theme=theme, phone=phone)
    errors = page_errors(page)
    await page.locator("main tidings-inbox li.item").nth(19).wait_for(timeout=WAIT_MS)
    name = f"inbox-{'phone' if phone else 'desktop'}-{theme}"
    await screenshot(page, name)
    await check_axe(page, axe, name)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    await page.locator("tidings-bell button.bell").click()
    dialog = page.locator("tidings-bell [role=dialog]")
    await dialog.locator("li.item").first.wait_for(timeout=WAIT_MS)
    if phone:
        box = await dialog.bounding_box()
        assert box is not None
        assert box["width"] == 375
    await screenshot(page, f"{name}-popover")
    await check_axe(page, axe, f"{name}, popover")
    assert errors == []


async def test_offline_state(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """When the connection is gone, the inbox says so (a status), and says when it is back;
    the tab on show (here Archived, with its own pages) is loaded again, from the server."""
    h = await make_server()
    await notify(h, "olga", title="Before")
    shelved = await notify(h, "olga", title="Shelved")
    status, _ = await h.api("POST", "/api/users/olga/notifications/archive", {"ids": [shelved]})
    assert status == 200
    page = await open_inbox(browser, h, "olga")
    inbox = page.locator("main tidings-inbox")
    offline = inbox.locator(".offline")
    await inbox.locator("li.item").first.wait_for(timeout=WAIT_MS)
    await inbox.locator("[role=tab][data-tab=archived]").click()
    await inbox.locator("li.item", has_text="Shelved").wait_for(timeout=WAIT_MS)
    assert await offline.is_hidden()
    status, _ = await h.api("POST", "/api/users/olga/disconnect", {"code": 1001})
    assert status == 200
    await offline.wait_for(timeout=WAIT_MS)
    assert await offline.get_attribute("role") == "status"
    await screenshot(page, "inbox-offline")
    await offline.wait_for(state="hidden", timeout=WAIT_MS)
    # Archived meanwhile, on another device: the reloaded Archived tab shows both.
    before = (await h.api("GET", "/api/users/olga/notifications"))[1]["items"][0]["id"]
    await h.api("POST", "/api/users/olga/notifications/archive", {"ids": [before]})
    await inbox.locator("li.item", has_text="Before").wait_for(timeout=WAIT_MS)
    await inbox.locator("li.item", has_text="Shelved").wait_for(timeout=WAIT_MS)
