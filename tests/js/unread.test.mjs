// The unread count is the server's, in every tab: Client.unreadCount and useTidings'
// unreadCount equal the server's count after each step (catch-up, live notifications,
// other tabs' reads, archive, delete, reconnects after a restart), whatever the resume
// rule of the tab (lastSeq, ack, or none).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createElement } from "react";
import TestRenderer from "react-test-renderer";
import WebSocket from "ws";

import { Client } from "../../clients/js/src/index.js";
import { useTidings } from "../../clients/js/src/react.js";
import { api, startServer, TIMEOUT, token, within, workdir } from "./helpers.mjs";

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;
const OPTIONS = { WebSocket, backoffInitial: 0.05, backoffMax: 0.3, transport: "websocket" };
const USER = "uma";

let work;
let server;

before(async () => {
  work = workdir();
  server = await startServer({ dir: work.dir });
});

after(async () => {
  await server.stop();
  work.cleanup();
});

/** The server's unread count for USER (GET /api/users/{id}/notifications). */
async function serverCount() {
  const [status, body] = await api(server, "GET", `/api/users/${USER}/notifications?limit=1`);
  assert.equal(status, 200);
  return body.unreadCount;
}

async function notify(title) {
  const [status, body] = await api(server, "POST", "/api/notifications", { userId: USER, title });
  assert.equal(status, 201);
  return body.notifications[0].id;
}

/** A tab: a Client recording what it emitted, so a test waits for what it expects. */
function tab(options) {
  const client = new Client(server.wsUrl, () => token(USER), { ...OPTIONS, ...options });
  const log = [];
  const waiters = new Set();
  client.on("*", (msg) => {
    log.push(msg);
    for (const w of [...waiters]) w();
  });
  /** Resolve once `predicate(log)` holds (checked at each event). */
  const until = (predicate, what) =>
    within(
      new Promise((resolve) => {
        const check = () => {
          if (predicate(log)) {
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
        check();
      }),
      TIMEOUT,
      what,
    );
  return { client, log, until, count: () => client.unreadCount, synced: synced(log) };
}

/**
 * A wait for the server's count that follows a connection's catch-up (the client asks
 * for it as soon as it is welcomed): `n` connections, each with its count after.
 */
const synced = (log) => (n) => (entries = log) => {
  let connected = 0;
  let exact = 0;
  for (const m of entries) {
    if (m.type === "_connected") connected += 1;
    if (m.type === "_unread" && m.exact && connected === n) exact += 1;
  }
  return exact > 0 && connected === n;
};

/** A hook in a React tree: the latest state, and a wait on its renders. */
async function hookTab(options) {
  const states = [];
  let wake = () => {};
  function Probe() {
    states.push(useTidings(options));
    wake();
    return null;
  }
  let renderer;
  await act(async () => {
    renderer = TestRenderer.create(createElement(Probe));
  });
  const until = (predicate, what) =>
    within(
      new Promise((resolve) => {
        wake = () => {
          if (predicate(states.at(-1))) {
            wake = () => {};
            resolve();
          }
        };
        wake();
      }),
      TIMEOUT,
      what,
    );
  // The hook's client, recorded as a tab's is (to wait for the count after a catch-up).
  const log = [];
  states.at(-1).client.on("*", (msg) => {
    log.push(msg);
    wake();
  });
  return {
    until,
    log,
    synced: synced(log),
    count: () => states.at(-1).unreadCount,
    state: () => states.at(-1),
    unmount: () => act(async () => renderer.unmount()),
  };
}

const has = (id, type = "notification") => (log) => log.some((m) => m.type === type && (m.data?.id === id || m.data?.ids?.includes(id)));
const hookHas = (id, type = "notification") => (s) => s.messages.some((m) => m.type === type && (m.data?.id === id || m.data?.ids?.includes(id)));
const connections = (n) => (log) => log.filter((m) => m.type === "_connected").length >= n;

test("every tab's unread count equals the server's through catch-up, reads, archive, delete and reconnects", async () => {
  const first = await notify("one");
  const second = await notify("two");

  const a = tab({}); // resumes with lastSeq (the default)
  const b = tab({ resume: false }); // the default catch-up: every unread one
  const c = tab({ ack: true }); // ack mode
  const hook = await hookTab({ url: server.wsUrl, token: () => token(USER), ...OPTIONS });
  const tabs = [a, b, c];
  try {
    await Promise.all(tabs.map((t) => t.client.connect()));
    // Catch-up: both missed notifications arrive, marked recovered, after the welcome.
    for (const t of tabs) await t.until((log) => has(first)(log) && has(second)(log), "catch-up");
    await hook.until((s) => hookHas(first)(s) && hookHas(second)(s) && hook.synced(1)(), "hook catch-up");
    for (const t of tabs) await t.until(t.synced(1), "the count after the catch-up");
    const check = async (step) => {
      const truth = await serverCount();
      for (const [i, t] of [...tabs, hook].entries()) assert.equal(t.count(), truth, `tab ${i} after ${step}`);
    };
    await check("catch-up");

    // A live notification reaches every tab once.
    const third = await notify("three");
    for (const t of tabs) await t.until(has(third), "live");
    await act(() => hook.until(hookHas(third), "hook live"));
    await check("a live notification");

    // One tab reads: the others hear of it by notification_read.
    await b.client.markRead([first]);
    for (const t of [a, c]) await t.until(has(first, "notification_read"), "read elsewhere");
    await act(() => hook.until(hookHas(first, "notification_read"), "hook read"));
    await check("a read in another tab");

    // Archive (over the WebSocket) and delete (over HTTP).
    await a.client.archive([second]);
    for (const t of [b, c]) await t.until(has(second, "notification_archived"), "archived");
    await act(() => hook.until(hookHas(second, "notification_archived"), "hook archived"));
    await check("an archive");
    const [status] = await api(server, "DELETE", `/api/users/${USER}/notifications/${third}`);
    assert.equal(status, 200);
    for (const t of tabs) await t.until(has(third, "notification_deleted"), "deleted");
    await act(() => hook.until(hookHas(third, "notification_deleted"), "hook deleted"));
    await check("a delete");

    // A restart: two notifications are created while every tab is away. Each reconnects
    // and is sent them again as a catch-up (with any unread ones it already had).
    const before = tabs.map((t) => t.log.filter((m) => m.type === "_connected").length);
    await server.stop();
    await Promise.all(tabs.map((t) => t.until((log) => log.at(-1)?.type === "_disconnected", "dropped")));
    server = await startServer({ dir: work.dir, port: server.port });
    const fourth = await notify("four");
    const fifth = await notify("five");
    for (const [i, t] of tabs.entries()) {
      await t.until(connections(before[i] + 1), "reconnected");
      await t.until((log) => has(fourth)(log) && has(fifth)(log), "catch-up after the restart");
      await t.until(t.synced(before[i] + 1), "the count after the catch-up");
    }
    const hookBefore = 1;
    await act(() =>
      hook.until(
        (s) => s.status === "open" && hookHas(fourth)(s) && hookHas(fifth)(s) && hook.synced(hookBefore + 1)(),
        "hook catch-up again",
      ),
    );
    await check("reconnects and a catch-up");

    // Mark all read over HTTP: every tab hears of it.
    await api(server, "POST", `/api/users/${USER}/notifications/read`, { all: true });
    for (const t of tabs) await t.until(has(fifth, "notification_read"), "all read");
    await act(() => hook.until(hookHas(fifth, "notification_read"), "hook all read"));
    await check("mark all read");
    assert.equal(await serverCount(), 0);
  } finally {
    await hook.unmount();
    await Promise.all(tabs.map((t) => t.client.close()));
  }
});
