"""Guide 003's frontend in headless Chromium, on a page from another origin, over Socket.IO.

The page's origin is a small static server (as the app's own dev server would be): it
serves ``tests/js/guide003`` unchanged and the ``socket.io-client`` browser build from
``tests/js/node_modules`` (installed by ``npm ci``, as for the Node tests). An import map
resolves ``socket.io-client``; ``process.env.REACT_APP_SOCKET_URL`` (the app's build-time
setting) names the tidings server and ``localStorage`` holds the user's token: the two
things guide 003 changes. Cross-origin, long-polling and the WebSocket upgrade must pass
CORS and the origin check.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser

from .browser import browser, page_errors  # noqa: F401 (browser is a fixture)
from .conftest import TIMEOUT, ServerFactory, token
from .test_js_client import node_modules  # noqa: F401 (a fixture: npm ci)

JS = Path(__file__).resolve().parent / "js"
WAIT_MS = TIMEOUT * 1000

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>guide 003</title>
<script type="importmap">
{"imports": {"socket.io-client": "/vendor/socket.io.esm.min.js"}}
</script>
<script>
  window.process = { env: { REACT_APP_SOCKET_URL: %(server)s } };
  localStorage.setItem("token", %(token)s);
</script>
<script type="module">
  import * as store from "/app/store.js";
  import { initSocket } from "/app/components/notifications.js";
  window.store = store;
  window.ready = initSocket("user-42").then(() => "initialized");
</script>
</head><body></body></html>
"""


class AppOrigin:
    """The app's static server: its origin, and the page it serves at ``/``."""

    def __init__(self) -> None:
        self.origin = ""
        self.html = ""


@pytest.fixture
async def app_origin(node_modules: Path) -> AsyncIterator[AppOrigin]:  # noqa: F811
    """A static server for the app's files on its own port: another origin."""
    served = AppOrigin()

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=served.html, content_type="text/html")

    async def app_file(request: web.Request) -> web.Response:
        # As a bundler's dev server does, an extensionless import finds its .js file.
        rel = request.match_info["path"]
        path = (JS / "guide003" / rel).resolve()
        if not path.suffix:
            path = path.with_suffix(".js")
        if not path.is_relative_to(JS / "guide003") or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type="text/javascript")

    async def vendor(_: web.Request) -> web.Response:
        bundle = node_modules / "socket.io-client" / "dist" / "socket.io.esm.min.js"
        return web.Response(body=bundle.read_bytes(), content_type="text/javascript")

    async def no_icon(_: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/app/{path:.+}", app_file)
    app.router.add_get("/vendor/socket.io.esm.min.js", vendor)
    app.router.add_get("/favicon.ico", no_icon)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    served.origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield served
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed-origin", "other-origin"])
async def test_guide_003_frontend_in_chromium(
    make_server: ServerFactory,
    browser: Browser,  # noqa: F811
    app_origin: AppOrigin,
    allowed: bool,
) -> None:
    """The guide's initSocket and notification handler work from another origin (a toast
    for a notification, register acknowledged); an origin not allowed is refused."""
    origin = app_origin.origin
    h = await make_server(allowed_origins=[origin if allowed else "https://app.example"])
    app_origin.html = PAGE % {"server": json.dumps(h.url), "token": json.dumps(token("user-42"))}
    context = await browser.new_context()
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto(f"{origin}/")
    await page.wait_for_function("() => window.ready !== undefined", timeout=WAIT_MS)
    if not allowed:
        # initSocket catches the refusal and logs it (console.error): nothing connects.
        await page.evaluate("() => window.ready")
        assert any("Failed to initialize socket" in e for e in errors), errors
        assert h.server.node.metrics.admission_refusals["origin"] >= 1
        assert h.server.gateway.open_connections == 0
        await context.close()
        return
    assert await page.evaluate("() => window.ready") == "initialized"
    status, _ = await h.api(
        "POST",
        "/api/notifications",
        {
            "userId": "user-42",
            "message": "Your immigration form has been submitted successfully",
            "type": "success",
        },
    )
    assert status == 201
    await page.wait_for_function("() => window.store.toasts.length === 1", timeout=WAIT_MS)
    toasts = await page.evaluate("() => window.store.toasts")
    assert toasts == [
        {"message": "Your immigration form has been submitted successfully", "type": "success"}
    ]
    # Long-polling alone from the same page: cross-origin XHRs, answered with CORS.
    welcome = await page.evaluate(
        """async ([url, token]) => {
            const { io } = await import("socket.io-client");
            const socket = io(url, { auth: { token }, transports: ["polling"] });
            const welcome = await new Promise((resolve) => socket.once("welcome", resolve));
            socket.disconnect();
            return welcome;
        }""",
        [h.url, token("user-43")],
    )
    assert welcome["userId"] == "user-43"
    assert errors == []
    await context.close()
