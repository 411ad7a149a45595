// The Web Push service worker's parts (clients/js/src/sw.js), outside a browser: the
// notification it shows for the server's payload, and where a click goes. Chromium runs
// the worker itself in tests/test_browser_push.py.

import assert from "node:assert/strict";
import { test } from "node:test";

import { clickTarget, installPushHandlers, notificationOptions, openOrFocus, readPayload, showPush } from "../../clients/js/src/sw.js";

const ORIGIN = "https://app.example";
const PAYLOAD = {
  id: "ntf_1",
  title: "Invoice 7 paid",
  body: "We got 12 €.",
  url: "https://app.example/invoices/7",
  priority: "HIGH",
  category: "billing",
  tag: "ntf_1",
};
const data = (value) => ({ json: () => JSON.parse(value), text: () => value });

test("a push shows its title, body and tag, and keeps the URL for the click", async () => {
  const shown = [];
  await showPush({ showNotification: async (title, options) => shown.push([title, options]) }, data(JSON.stringify(PAYLOAD)));
  assert.equal(shown.length, 1);
  const [title, options] = shown[0];
  assert.equal(title, "Invoice 7 paid");
  assert.equal(options.body, "We got 12 €.");
  assert.equal(options.tag, "ntf_1");
  assert.deepEqual(options.data, { id: "ntf_1", url: PAYLOAD.url, category: "billing", priority: "HIGH" });
  assert.equal(options.requireInteraction, false);
  assert.equal(notificationOptions({ ...PAYLOAD, priority: "CRITICAL" }).requireInteraction, true);
  assert.equal(notificationOptions({ ...PAYLOAD, priority: "LOW" }).silent, true);
});

test("a text payload becomes the title; an empty one a generic title", async () => {
  assert.deepEqual(readPayload(data("hello")), { title: "hello" });
  assert.deepEqual(readPayload(null), {});
  const shown = [];
  await showPush({ showNotification: async (title, options) => shown.push([title, options]) }, null);
  assert.equal(shown[0][0], "New notification");
});

test("a click goes to an http(s) URL, made absolute; anything else to the origin", () => {
  assert.equal(clickTarget("/loans/7", ORIGIN), "https://app.example/loans/7");
  assert.equal(clickTarget(PAYLOAD.url, ORIGIN), PAYLOAD.url);
  assert.equal(clickTarget("javascript:alert(1)", ORIGIN), null);
  assert.equal(clickTarget(null, ORIGIN), null);
});

/** A recording Clients: the windows open, what was focused and opened. */
function clients(urls) {
  const log = [];
  const windows = urls.map((url) => ({ url, focus: async () => log.push(["focus", url]) }));
  return {
    log,
    matchAll: async (options) => {
      assert.deepEqual(options, { type: "window", includeUncontrolled: true });
      return windows;
    },
    openWindow: async (url) => log.push(["open", url]),
  };
}

test("a click focuses a tab already at the URL, else opens one", async () => {
  const open = clients(["https://app.example/", PAYLOAD.url]);
  await openOrFocus(open, PAYLOAD.url, ORIGIN);
  assert.deepEqual(open.log, [["focus", PAYLOAD.url]]);
  const none = clients(["https://app.example/"]);
  await openOrFocus(none, "/loans/7", ORIGIN);
  assert.deepEqual(none.log, [["open", "https://app.example/loans/7"]]);
  const bad = clients([]);
  await openOrFocus(bad, "data:text/html,x", ORIGIN);
  assert.deepEqual(bad.log, [["open", "https://app.example/"]]);
});

test("installed handlers show on push and, on a click, close and open the URL", async () => {
  const listeners = {};
  const shown = [];
  const recorded = clients([]);
  const scope = {
    addEventListener: (type, fn) => (listeners[type] = fn),
    registration: { showNotification: async (title, options) => shown.push([title, options]) },
    clients: recorded,
    location: { origin: ORIGIN },
  };
  installPushHandlers(scope);
  const waits = [];
  listeners.push({ data: data(JSON.stringify(PAYLOAD)), waitUntil: (p) => waits.push(p) });
  let closed = false;
  const notification = { data: { url: "/loans/7" }, close: () => (closed = true) };
  listeners.notificationclick({ notification, waitUntil: (p) => waits.push(p) });
  await Promise.all(waits);
  assert.equal(shown[0][0], "Invoice 7 paid");
  assert.equal(closed, true);
  assert.deepEqual(recorded.log, [["open", "https://app.example/loans/7"]]);
});

test("importing the module in Node installs nothing and has no side effects", async () => {
  const m = await import("../../clients/js/src/sw.js");
  assert.equal(typeof m.installPushHandlers, "function");
});
