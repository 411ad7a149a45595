"""The web console at ``/``, used as a person would in headless Chromium, and its routes.

Screenshots of each scene go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from playwright.async_api import Browser, Page

from .browser import browser, page_errors, screenshot  # noqa: F401 (browser is a fixture)
from .conftest import API_KEY, SECRET, TIMEOUT, Harness, ServerFactory, request, token
from .processes import cluster, pg_schema

WAIT_MS = TIMEOUT * 1000


async def console(
    browser: Browser,  # noqa: F811
    h: Harness,
    query: str = "",
    *,
    no_websocket: bool = False,
    **context: object,
) -> Page:
    """A new browser context (a separate profile) with the console open."""
    ctx = await browser.new_context(**context)  # type: ignore[arg-type]
    if no_websocket:  # as where WebSocket is unavailable: the console must fall back to SSE
        await ctx.add_init_script("window.WebSocket = undefined;")
    page = await ctx.new_page()
    await page.goto(f"{h.url}/{query}")
    await page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    return page


async def signed_in(
    browser: Browser,  # noqa: F811
    h: Harness,
    user: str,
    no_websocket: bool = False,
) -> Page:
    page = await console(browser, h, f"?user={user}", no_websocket=no_websocket)
    await page.wait_for_selector("#status[data-state=online]", timeout=WAIT_MS)
    return page


# The bell's badge, inside the <tidings-bell> component's shadow root.
BADGE_JS = "document.getElementById('bell').shadowRoot.querySelector('.badge')"


async def badge(page: Page) -> str | None:
    """The bell's unread count as shown, or None when the badge is hidden."""
    return await page.evaluate(
        f"() => {{ const b = {BADGE_JS}; return b.hidden ? null : b.textContent; }}"
    )


async def wait_badge(page: Page, shown: str | None) -> None:
    await page.wait_for_function(
        f"(want) => {{ const b = {BADGE_JS}; return (b.hidden ? null : b.textContent) === want; }}",
        arg=shown,
        timeout=WAIT_MS,
    )


@pytest.mark.parametrize("no_websocket", [False, True], ids=["websocket", "sse-fallback"])
async def test_notification_centre_two_users_and_two_tabs(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
    no_websocket: bool,
) -> None:
    """A notification reaches its user's list and badge; read in one tab, the other follows."""
    h = await make_server(dev=True)
    alice = await signed_in(browser, h, "alice", no_websocket)
    errors = page_errors(alice)
    transport = "sse" if no_websocket else "websocket"
    assert await alice.locator("#status").text_content() == f"online ({transport})"
    alice_tab = await alice.context.new_page()  # a second tab of the same profile
    await alice_tab.goto(f"{h.url}/?user=alice")
    await alice_tab.wait_for_selector("#status[data-state=online]", timeout=WAIT_MS)
    bob = await signed_in(browser, h, "bob", no_websocket)
    assert await badge(alice) is None
    assert await badge(bob) is None
    assert await alice.locator("#inbox-user").text_content() == "alice"

    status, created = await h.api(
        "POST",
        "/api/notifications",
        {
            "userId": "alice",
            "title": "Booking confirmed",
            "message": "Room 4, 10:00",
            "priority": "HIGH",
            "actions": [{"id": "view", "label": "View booking", "url": "https://example.com/b/1"}],
        },
    )
    assert status == 201, created
    item = alice.locator("#inbox-list li.item.unread")
    await item.wait_for(timeout=WAIT_MS)
    await wait_badge(alice, "1")
    await wait_badge(alice_tab, "1")
    assert "Booking confirmed" in (await item.text_content() or "")
    assert await item.locator(".chip").text_content() == "High"
    assert await item.get_attribute("class") == "item priority-high unread"
    link = item.locator("a.action.primary")
    assert await link.text_content() == "View booking"
    assert await link.get_attribute("href") == "https://example.com/b/1"
    assert await alice.title() == "(1) tidings"
    await screenshot(alice, f"console-alice-unread-{transport}")

    # Bob's console saw nothing: his list is empty and his bell has no badge.
    assert await badge(bob) is None
    assert await bob.locator("#inbox-list li.item").count() == 0
    await screenshot(bob, f"console-bob-empty-{transport}")

    # Reading it in one tab updates the other tab of the same user.
    await alice.locator("#inbox-list li.item .mark-read").click()
    await wait_badge(alice, None)
    await wait_badge(alice_tab, None)
    await alice_tab.locator("#inbox-list li.item:not(.unread)").wait_for(timeout=WAIT_MS)
    assert await alice_tab.locator("#inbox-list li.item.unread").count() == 0
    await screenshot(alice_tab, f"console-alice-other-tab-read-{transport}")

    # Two more, then "mark all read" from the other tab.
    for title in ("one", "two"):
        await h.api("POST", "/api/notifications", {"userId": "alice", "title": title})
    await wait_badge(alice, "2")
    await alice_tab.locator("#inbox-list button.mark-all").click()
    await wait_badge(alice, None)
    assert await alice.locator("#inbox-list li.item").count() == 3
    assert errors == []


async def test_untrusted_text_is_shown_as_text(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """Markup in a notification's title or action is shown as text, never run or linked."""
    h = await make_server(dev=True)
    page = await signed_in(browser, h, "mallory")
    title = '<img src=x onerror="document.body.dataset.pwned=1">'
    script = [{"id": "go", "label": "go", "url": "javascript:alert(1)"}]
    status, _ = await h.api(
        "POST", "/api/notifications", {"userId": "mallory", "title": "x", "actions": script}
    )
    assert status == 422  # the API refuses script URLs outright
    actions = [{"id": "go", "label": "<b>go</b>", "url": "https://example.com/?q=<b>"}]
    status, _ = await h.api(
        "POST", "/api/notifications", {"userId": "mallory", "title": title, "actions": actions}
    )
    assert status == 201
    item = page.locator("#inbox-list li.item")
    await item.wait_for(timeout=WAIT_MS)
    assert await item.locator(".title").text_content() == title
    assert await page.locator("#inbox-list img, #inbox-list b").count() == 0
    link = page.locator("#inbox-list a")
    assert await link.count() == 1
    assert await link.text_content() == "<b>go</b>"
    assert await link.get_attribute("href") == "https://example.com/?q=%3Cb%3E"  # URL-encoded
    assert await page.evaluate("document.body.dataset.pwned") is None


async def test_operations_view_shows_connections_change(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """The operations view's connection count rises as a user connects and falls as they go."""
    h = await make_server(dev=True)
    ops = await console(browser, h, "#operations")
    errors = page_errors(ops)
    count = ops.locator("#ops-connections")
    await ops.wait_for_function(
        "() => document.getElementById('ops-connections').textContent === '0'", timeout=WAIT_MS
    )
    carol = await signed_in(browser, h, "carol")
    await ops.wait_for_function(
        "() => document.getElementById('ops-connections').textContent === '1'", timeout=WAIT_MS
    )
    assert await ops.locator("#ops-users").text_content() == "1"
    # A subscription shows in the channels table with its subscriber count.
    async with h.client("zoe") as ws:
        await request(ws, {"type": "subscribe", "channel": "news"})
        await ops.wait_for_function(
            "() => [...document.querySelectorAll('#channels tbody tr')]"
            ".some((tr) => tr.textContent === 'news1')",
            timeout=WAIT_MS,
        )
        await ops.wait_for_function(
            "() => document.getElementById('ops-connections').textContent === '2'",
            timeout=WAIT_MS,
        )
        assert await ops.locator("#instances tbody tr").count() == 1
    await screenshot(ops, "console-operations-one-connection")
    await carol.context.close()
    await ops.wait_for_function(
        "() => document.getElementById('ops-connections').textContent === '0'", timeout=WAIT_MS
    )
    assert await count.text_content() == "0"
    # The chart is drawn on a canvas from the stats' message counters.
    assert await ops.locator("#chart").is_visible()
    assert errors == []


async def test_operations_view_per_instance_in_a_cluster(
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    """In a cluster the operations view shows every instance, each with its connections."""
    async with pg_schema() as store, cluster(2, tmp_path, store_url=store) as (one, two):
        page = await console(browser, one, "#operations")
        errors = page_errors(page)
        await page.fill("#apikey", API_KEY)
        await page.click("#watch")
        await page.wait_for_function(
            "() => document.querySelectorAll('#instances tbody tr').length === 2",
            timeout=WAIT_MS,
        )
        async with two.client("iris"):
            await page.wait_for_function(
                "() => document.getElementById('ops-connections').textContent === '1'",
                timeout=WAIT_MS,
            )
            cells = await page.locator("#instances tbody tr td:nth-child(2)").all_text_contents()
            assert sorted(cells) == ["0", "1"]
            # One chart line (and legend entry) per instance.
            await page.wait_for_function(
                "() => document.querySelectorAll('#chart-legend .legend-item').length === 2",
                timeout=WAIT_MS,
            )
            await screenshot(page, "console-operations-cluster")
        assert errors == []


async def test_operations_view_needs_the_right_key(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """Without --dev the operator types the API key; a wrong one is refused and named."""
    h = await make_server()
    page = await console(browser, h, "#operations")
    assert await page.locator("#dev-tab").is_hidden()
    await page.fill("#apikey", "wrong-key")
    await page.click("#watch")
    await page.wait_for_function(
        "() => document.getElementById('ops-error').textContent !== ''", timeout=WAIT_MS
    )
    assert await page.locator("#ops").is_hidden()
    await page.fill("#apikey", API_KEY)
    await page.click("#watch")
    await page.locator("#ops").wait_for(timeout=WAIT_MS)
    assert await page.locator("#ops-connections").text_content() == "0"


async def test_sign_in_with_a_pasted_token_without_dev(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """Without --dev the console signs in with a pasted token and has no dev forms."""
    h = await make_server()
    page = await console(browser, h)
    assert await page.locator("#signin-user-row").is_hidden()
    await page.fill("#signin-token", token("tess"))
    await page.click("#signin-go")
    await page.wait_for_selector("#status[data-state=online]", timeout=WAIT_MS)
    assert await page.locator("#inbox-user").text_content() == "tess"
    await page.click("#signout")
    await page.wait_for_selector("#status[data-state=offline]", timeout=WAIT_MS)
    await page.fill("#signin-token", "not-a-token")
    await page.click("#signin-go")
    await page.wait_for_function(
        "() => document.getElementById('signin-error').textContent.includes('4002')",
        timeout=WAIT_MS,
    )


async def test_dev_forms_mint_and_send(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """In --dev mode the console mints a token and sends a notification through its forms."""
    h = await make_server(dev=True)
    dave = await signed_in(browser, h, "dave")
    page = await console(browser, h, "#dev")
    await page.fill("#dev-token input[name=userId]", "erin")
    await page.fill("#dev-token input[name=roles]", "ADMIN, LIBRARIAN")
    await page.click("#dev-token button[type=submit]")
    await page.wait_for_function(
        "() => document.getElementById('dev-token-out').value.split('.').length === 3",
        timeout=WAIT_MS,
    )
    minted = await page.input_value("#dev-token-out")
    claims = jwt.decode(minted, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "erin"
    assert claims["roles"] == ["ADMIN", "LIBRARIAN"]

    await page.fill("#dev-notify input[name=userId]", "dave")
    await page.fill("#dev-notify input[name=title]", "Sent from the console")
    await page.select_option("#dev-notify select[name=priority]", "CRITICAL")
    await page.fill("#dev-notify textarea[name=actions]", "ok | Acknowledge")
    await page.click("#dev-notify button[type=submit]")
    item = dave.locator("#inbox-list li.item.priority-critical")
    await item.wait_for(timeout=WAIT_MS)
    assert "Sent from the console" in (await item.text_content() or "")
    assert await item.locator("button.action.primary").text_content() == "Acknowledge"
    await wait_badge(dave, "1")
    await item.locator("button.action").click()  # an action marks it read
    await wait_badge(dave, None)
    await screenshot(page, "console-dev-forms")


async def test_phone_sized_screen(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """On a phone-sized screen every view fits the width (no sideways scrolling)."""
    h = await make_server(dev=True)
    page = await console(
        browser, h, "?user=phoebe", viewport={"width": 375, "height": 740}, is_mobile=True
    )
    await page.wait_for_selector("#status[data-state=online]", timeout=WAIT_MS)
    await h.api(
        "POST",
        "/api/notifications",
        {"userId": "phoebe", "title": "A rather long title " * 4, "priority": "HIGH"},
    )
    await page.locator("#inbox-list li.item").wait_for(timeout=WAIT_MS)
    for view in ("notifications", "operations", "dev"):
        await page.evaluate(f"location.hash = '#{view}'")
        await page.locator(f"#view-{view}").wait_for(timeout=WAIT_MS)
        if view == "operations":
            await page.locator("#ops").wait_for(timeout=WAIT_MS)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, view
        await screenshot(page, f"console-phone-{view}")


async def test_dev_routes_exist_only_with_dev(make_server: ServerFactory) -> None:
    """/dev/config and /dev/token are 404 without --dev; with it they answer loopback only."""
    plain = await make_server()
    for method, path in (("GET", "/dev/config"), ("POST", "/dev/token")):
        async with plain.http.request(method, plain.url + path, json={"userId": "x"}) as r:
            assert r.status == 404, path

    dev = await make_server(dev=True)
    async with dev.http.get(dev.url + "/dev/config") as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store"
        config = await r.json()
    assert config == {"dev": True, "apiKey": API_KEY, "canMintTokens": True, "wsPath": "/ws"}
    async with dev.http.post(dev.url + "/dev/token", json={"userId": "zed", "ttl": 60}) as r:
        assert r.status == 200
        minted = (await r.json())["token"]
    assert jwt.decode(minted, SECRET, algorithms=["HS256"])["sub"] == "zed"
    # A DNS-rebinding page reaches 127.0.0.1 under its own host name: refused.
    async with dev.http.get(dev.url + "/dev/config", headers={"Host": "evil.example"}) as r:
        assert r.status == 403
    bad = [
        ({"userId": ""}, 422),
        ({"userId": "a", "ttl": 0}, 422),
        ({"userId": "a", "ttl": 10**9}, 422),
        ({"user": "a"}, 422),
    ]
    for body, expected in bad:
        async with dev.http.post(dev.url + "/dev/token", json=body) as r:
            assert r.status == expected, body
            assert (await r.json())["error"]["code"] == "VALIDATION_ERROR"
    async with dev.http.post(dev.url + "/dev/token", data="userId=a") as r:
        assert r.status == 415  # a cross-site form post is not JSON
    async with dev.http.post(
        dev.url + "/dev/token", data=b"{", headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 422


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html"),
        ("/console.js", "text/javascript"),
        ("/ops.js", "text/javascript"),
        ("/console.css", "text/css"),
        ("/tidings.js", "text/javascript"),
        ("/tidings.d.ts", "text/plain"),
        ("/react.js", "text/javascript"),
        ("/react.d.ts", "text/plain"),
        ("/inbox.js", "text/javascript"),
        ("/inbox.d.ts", "text/plain"),
        ("/tidings-sw.js", "text/javascript"),
        ("/favicon.ico", "image/svg+xml"),
    ],
)
async def test_static_files_and_content_types(
    harness: Harness, path: str, content_type: str
) -> None:
    """The console and the client are served with their content types and nosniff."""
    async with harness.http.get(harness.url + path) as r:
        assert r.status == 200
        assert r.content_type == content_type
        assert r.charset == "utf-8"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        if content_type == "text/html":
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert "Access-Control-Allow-Origin" not in r.headers
        else:  # pages elsewhere may import the client as a module
            assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert len(await r.read()) > 100
