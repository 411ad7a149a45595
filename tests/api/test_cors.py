"""CORS on the routes a browser calls with a user's JWT (/api/me/*, a member's room routes,
/sse), from a page on another origin in headless Chromium, and the preflights themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser

from ..browser import browser, page_errors  # noqa: F401 (the fixture)
from ..conftest import API_KEY, Harness, ServerFactory, token

PAGE = "<!doctype html><title>another origin</title><p>a backend's own page</p>"

# Runs in the page: each call the docs recommend from a browser, with the user's token.
CALLS = """
async ({base, token}) => {
  const auth = {Authorization: "Bearer " + token};
  const json = {...auth, "Content-Type": "application/json"};
  const out = {};
  try {
    let r = await fetch(base + "/api/me/notifications", {headers: auth});
    out.list = [r.status, (await r.json()).unreadCount];
    r = await fetch(base + "/api/me/notifications/read", {
      method: "POST", headers: json, body: JSON.stringify({all: true})});
    out.read = r.status;
    r = await fetch(base + "/api/rooms/r1/messages", {
      method: "POST", headers: json, body: JSON.stringify({content: "from the page"})});
    out.post = [r.status, (await r.json()).authorId];
    r = await fetch(base + "/api/rooms/r1/messages?limit=5", {headers: auth});
    out.history = (await r.json()).messages.map(m => m.content);
    r = await fetch(base + "/api/me/blocks/mallory", {method: "PUT", headers: auth});
    out.block = r.status;
    r = await fetch(base + "/api/rooms/nope/messages", {headers: auth});
    out.error = [r.status, (await r.json()).error.code, r.headers.get("Retry-After")];
    out.sse = await new Promise((resolve) => {
      const es = new EventSource(base + "/sse?token=" + encodeURIComponent(token));
      es.addEventListener("message", (e) => { es.close(); resolve(JSON.parse(e.data).type); });
      es.onerror = () => { es.close(); resolve("error"); };
    });
  } catch (e) {
    out.failed = String(e);
  }
  try {
    await fetch(base + "/api/stats", {headers: {Authorization: "Bearer key"}});
    out.stats = "reached";
  } catch (e) {
    out.stats = "blocked";
  }
  return out;
}
"""


@pytest.fixture
async def other_origin() -> AsyncIterator[str]:
    """A page served from another port of 127.0.0.1: another origin."""
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def room_with(h: Harness, room: str, *users: str) -> None:
    assert (await h.api("POST", "/api/rooms", {"id": room}))[0] == 201
    assert (await h.api("PUT", f"/api/rooms/{room}/members", {"userIds": list(users)}))[0] == 200


async def run_calls(chromium: Browser, origin: str, h: Harness) -> tuple[dict[str, Any], list[str]]:
    context = await chromium.new_context()
    try:
        page = await context.new_page()
        errors = page_errors(page)
        await page.goto(origin + "/")
        out = await page.evaluate(CALLS, {"base": h.url, "token": token("ann")})
        return out, errors
    finally:
        await context.close()


async def test_a_page_on_another_origin_calls_the_user_routes(
    make_server: ServerFactory,
    browser: Browser,  # noqa: F811 (the fixture)
    other_origin: str,
) -> None:
    """With the page's origin allowed, every user route and /sse answer it (preflights
    included); the API-key routes stay closed to it."""
    h = await make_server(allowed_origins=[other_origin])
    await room_with(h, "r1", "ann")
    await h.api("POST", "/api/notifications", {"userId": "ann", "title": "hello"})
    out, errors = await run_calls(browser, other_origin, h)
    assert "failed" not in out, out
    assert out["list"] == [200, 1]
    assert out["read"] == 200
    assert out["post"] == [201, "ann"]
    assert out["history"] == ["from the page"]
    assert out["block"] == 200
    assert out["error"] == [403, "FORBIDDEN", None]
    assert out["sse"] == "welcome"
    assert out["stats"] == "blocked"
    # The browser's only CORS refusal is the /api/stats call's (it also logs every
    # non-2xx answer, the 403 above and the page's missing favicon among them).
    refused = [e for e in errors if "CORS" in e]
    assert len(refused) == 1, errors
    assert "/api/stats" in refused[0], errors


async def test_an_origin_not_allowed_is_refused_by_the_browser(
    make_server: ServerFactory,
    browser: Browser,  # noqa: F811 (the fixture)
    other_origin: str,
) -> None:
    """With allowed_origins naming another site, the browser refuses the page's calls."""
    h = await make_server(allowed_origins=["https://app.example"])
    out, _ = await run_calls(browser, other_origin, h)
    assert out["failed"].startswith("TypeError"), out
    assert out["stats"] == "blocked"


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/me/notifications", "GET, HEAD, OPTIONS"),
        ("/api/me/notifications/n1", "DELETE, GET, HEAD, OPTIONS"),
        ("/api/me/preferences", "GET, HEAD, OPTIONS, PUT"),
        ("/api/rooms/r1/messages", "GET, HEAD, OPTIONS, POST"),
        ("/api/rooms/r1/messages/m1", "DELETE, OPTIONS, PATCH"),
        ("/api/rooms/r1/read", "OPTIONS, POST"),
        ("/api/me/blocks/bob", "DELETE, OPTIONS, PUT"),
    ],
)
async def test_preflight(make_server: ServerFactory, path: str, methods: str) -> None:
    """OPTIONS on a user route needs no token and names the route's methods and headers."""
    h = await make_server(allowed_origins=["https://app.example"])
    headers = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with h.http.options(h.url + path, headers=headers) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert r.headers["Access-Control-Allow-Methods"] == methods
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        assert r.headers["Vary"] == "Origin"
    async with h.http.options(
        h.url + path, headers={**headers, "Origin": "https://evil.example"}
    ) as r:
        assert r.status == 204
        assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize("path", ["/api/stats", "/api/rooms/r1/members", "/api/users/a/send"])
async def test_key_routes_answer_no_cors(harness: Harness, path: str) -> None:
    """Routes that take the server API key are not for browsers: no CORS headers, and a
    preflight is refused like any unknown method."""
    headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    async with harness.http.options(harness.url + path, headers=headers) as r:
        assert "Access-Control-Allow-Origin" not in r.headers
        assert r.status in (401, 405)


async def test_a_member_route_read_with_the_api_key_answers_no_cors(
    make_server: ServerFactory,
) -> None:
    """A room's history read by an operator (API key) carries no CORS header; the same
    route read by a member (their JWT) does."""
    h = await make_server(allowed_origins=["https://app.example"])
    await h.api("POST", "/api/rooms", {"id": "r1"})
    await h.api("PUT", "/api/rooms/r1/members", {"userIds": ["ann"]})
    origin = {"Origin": "https://app.example"}
    for key, readable in ((API_KEY, False), (token("ann"), True)):
        headers = {**origin, "Authorization": f"Bearer {key}"}
        async with h.http.get(h.url + "/api/rooms/r1/messages", headers=headers) as r:
            assert r.status == 200
            assert ("Access-Control-Allow-Origin" in r.headers) is readable
