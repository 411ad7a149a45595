"""tidings.js in headless Chromium against a real server: the WebSocket and the SSE fallback.

The page loads ``/tidings.js`` from the server under test (as an application would) and
drives it with ``page.evaluate``; waits are ``wait_for_function`` on what the client
recorded, bounded by the test timeout unit.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from tidings.server import Server

from .browser import browser, page_errors, screenshot  # noqa: F401 (browser is a fixture)
from .conftest import TIMEOUT, Harness, ServerFactory, make_settings, token

WAIT_MS = TIMEOUT * 1000

# Loaded into the page: clients by name, each recording every event it emits; a token
# gate per client, so a test decides when a reconnection may happen.
PAGE_HELPERS = """
async (options) => {
  const T = await import("/tidings.js");
  window.T = T;
  window.clients = {};
  window.gates = {};
  window.make = async (name, tok, extra = {}) => {
    let open = true, release = null;
    const gate = {
      close() { open = false; },
      open() { open = true; if (release) { release(); release = null; } },
    };
    window.gates[name] = gate;
    const source = async () => {
      if (!open) await new Promise((resolve) => { release = resolve; });
      return tok;
    };
    const client = new T.Client(options.wsUrl, source, {
      backoffInitial: 0.05, backoffMax: 0.5, ...options.clientOptions, ...extra,
    });
    client.log = [];
    client.on("*", (msg) => client.log.push(msg));
    window.clients[name] = client;
    await client.connect();
    return { welcome: client.welcome, transport: client.transport };
  };
  window.seen = (name, type, pred = () => true) =>
    window.clients[name].log.filter((m) => m.type === type && pred(m));
}
"""


async def open_page(browser: Browser, h: Harness, *, sse: bool = False) -> Page:  # noqa: F811
    """A page on the server's origin with tidings.js imported (WebSocket removed if ``sse``)."""
    context = await browser.new_context()
    if sse:
        # As in a browser or network where WebSocket is unavailable.
        await context.add_init_script("window.WebSocket = undefined;")
    page = await context.new_page()
    await page.goto(h.url + "/tidings.js")
    await page.evaluate(PAGE_HELPERS, {"wsUrl": h.ws_url, "clientOptions": {}})
    return page


async def make(page: Page, name: str, user: str, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(
        "([name, tok, extra]) => make(name, tok, extra)", [name, token(user), extra]
    )
    return result


async def wait_seen(page: Page, name: str, kind: str, predicate: str = "() => true") -> Any:
    """Wait until client ``name`` recorded an event of ``kind`` matching ``predicate``."""
    handle = await page.wait_for_function(
        f"([n, k]) => {{ const hits = seen(n, k, {predicate}); return hits.length && hits; }}",
        arg=[name, kind],
        timeout=WAIT_MS,
    )
    return await handle.json_value()


async def restart(h: Harness) -> Harness:
    """Stop the harness's server and start a new one on the same port and store."""
    port = h.server.port
    store = h.server.settings.store_url
    await h.server.stop()
    server = Server(make_settings(port=port, store_url=store))
    await server.start()
    return Harness(server, h.http)


@pytest.mark.parametrize("sse", [False, True], ids=["websocket", "sse"])
async def test_subscribe_publish_notify_and_mark_read(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
    sse: bool,
) -> None:
    """In Chromium: connect, subscribe, receive a publication and a notification, mark read."""
    h = await make_server()
    page = await open_page(browser, h, sse=sse)
    errors = page_errors(page)
    first = await make(page, "a", "alice")
    second = await make(page, "b", "alice")
    assert first["welcome"]["userId"] == "alice"
    assert first["transport"] == ("sse" if sse else "websocket")
    assert second["transport"] == first["transport"]
    await page.evaluate("clients.a.subscribe('alerts')")

    status, _ = await h.api(
        "POST", "/api/publish", {"channel": "alerts", "type": "alert", "data": 7}
    )
    assert status == 200
    (alert,) = await wait_seen(page, "a", "alert")
    assert alert["data"] == 7
    assert alert["channel"] == "alerts"

    status, created = await h.api(
        "POST", "/api/notifications", {"userId": "alice", "title": "Hi", "priority": "HIGH"}
    )
    assert status == 201, created
    (note,) = await wait_seen(page, "a", "notification")
    assert note["data"]["title"] == "Hi"
    read = await page.evaluate(f"clients.a.markRead([{json.dumps(note['id'])}])")
    assert read == {"ids": [note["id"]], "unreadCount": 0}
    (followed,) = await wait_seen(page, "b", "notification_read")
    assert followed["data"]["unreadCount"] == 0
    pong = await page.evaluate("clients.b.ping()")
    assert pong["type"].lower() == "pong"
    await screenshot(page, f"js-client-{'sse' if sse else 'websocket'}")
    await page.evaluate("Promise.all([clients.a.close(), clients.b.close()])")
    assert errors == []


@pytest.mark.parametrize("sse", [False, True], ids=["websocket", "sse"])
async def test_restart_resubscribe_recover_and_flush(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
    tmp_path: Any,
    sse: bool,
) -> None:
    """After a server restart the page's client reconnects, resubscribes, recovers and flushes."""
    h = await make_server(store_url=str(tmp_path / "tidings.db"))
    page = await open_page(browser, h, sse=sse)
    errors = page_errors(page)
    await make(page, "a", "remy")
    await page.evaluate("clients.a.subscribe('lobby')")
    await h.api("POST", "/api/notifications", {"userId": "remy", "title": "before"})
    await wait_seen(page, "a", "notification")

    await page.evaluate("gates.a.close()")
    h = await restart(h)
    try:
        await _after_restart(page, h, "sse" if sse else "websocket")
    finally:
        await h.server.stop()  # make_server stops only the servers it started
    assert errors == []


async def _after_restart(page: Page, h: Harness, transport: str) -> None:
    await wait_seen(page, "a", "_disconnected")
    # Offline: what the page sends is queued for the next connection.
    await page.evaluate("clients.a.send({type: 'get_status', id: 'queued-1'})")
    assert await page.evaluate("clients.a.queued") == 1
    await h.api("POST", "/api/notifications", {"userId": "remy", "title": "while away"})
    await page.evaluate("gates.a.open()")

    # The second connection's _connected (the first one's is in the log too).
    await page.wait_for_function(
        "() => seen('a', '_connected').length === 2 && clients.a.connected", timeout=WAIT_MS
    )
    assert await page.evaluate("clients.a.connections") == 2
    assert await page.evaluate("clients.a.transport") == transport
    (missed,) = await wait_seen(page, "a", "notification", "(m) => m.data.title === 'while away'")
    assert missed["data"]["recovered"] is True
    (status,) = await wait_seen(page, "a", "status", "(m) => m.replyTo === 'queued-1'")
    assert [s["channel"] for s in status["data"]["subscriptions"]] == ["lobby"]
    assert await page.evaluate("clients.a.queued") == 0
    await h.api("POST", "/api/publish", {"channel": "lobby", "type": "after", "data": 1})
    await wait_seen(page, "a", "after")
    assert await page.evaluate("clients.a.duplicates") == 0
    await page.evaluate("clients.a.close()")


@pytest.mark.parametrize("sse", [False, True], ids=["websocket", "sse"])
async def test_terminal_close_is_final(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
    sse: bool,
) -> None:
    """An operator's disconnect (4010) ends the page's client: no reconnection."""
    h = await make_server()
    page = await open_page(browser, h, sse=sse)
    await make(page, "a", "dora")
    status, _ = await h.api("POST", "/api/users/dora/disconnect", {"reason": "banned"})
    assert status == 200
    (event,) = await wait_seen(page, "a", "_disconnected")
    assert event["code"] == 4010
    assert event["reconnect"] is False
    assert await page.evaluate("clients.a.closeCode") == 4010
    assert await page.evaluate("clients.a.connections") == 1
    rejected = await page.evaluate("clients.a.ping().then(() => 'resolved', (e) => e.name)")
    assert rejected == "ClientClosed"
    status, conns = await h.api("GET", "/api/users/dora/connections")
    assert status == 200
    assert conns == {"connections": []}


async def test_bad_token_fails_fast_in_the_browser(
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """connect() with a bad token rejects with ClientClosed 4002 (terminal)."""
    h = await make_server()
    page = await open_page(browser, h)
    outcome = await page.evaluate(
        """async () => {
          const c = new T.Client(clientsUrl(), "not-a-jwt", {});
          try { await c.connect(); return "connected"; }
          catch (e) { return [e.name, e.code]; }
        }""".replace("clientsUrl()", json.dumps(h.ws_url))
    )
    assert outcome == ["ClientClosed", 4002]
