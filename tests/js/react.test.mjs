// useTidings (clients/js/src/react.js) rendered with react-test-renderer in Node,
// against a real tidings server.

import assert from "node:assert/strict";
import { after, afterEach, before, test } from "node:test";
import { createElement } from "react";
import TestRenderer from "react-test-renderer";
import WebSocket from "ws";

import { useTidings } from "../../clients/js/src/react.js";
import { api, startServer, TIMEOUT, token, within, workdir } from "./helpers.mjs";

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;

let work;
let server;
const mounted = new Set();

before(async () => {
  work = workdir();
  server = await startServer({ dir: work.dir });
});

afterEach(async () => {
  // A failed test must not leave a client reconnecting forever (node would never exit).
  for (const renderer of mounted) await act(async () => renderer.unmount());
  mounted.clear();
});

after(async () => {
  await server.stop();
  work.cleanup();
});

/** Render a component using the hook; `states` records every render's state. */
async function mount(options) {
  const states = [];
  let wake = () => {};
  function Probe() {
    const state = useTidings(options);
    states.push(state);
    wake();
    return createElement("span", null, state.status);
  }
  let renderer;
  await act(async () => {
    renderer = TestRenderer.create(createElement(Probe));
  });
  mounted.add(renderer);
  const until = (predicate, what) =>
    within(
      new Promise((resolve) => {
        wake = () => {
          const last = states.at(-1);
          if (last && predicate(last)) resolve(last);
        };
        wake();
      }),
      TIMEOUT,
      what,
    );
  return { states, renderer, until };
}

test("useTidings connects, subscribes, and re-renders on messages and the unread count", async () => {
  const { renderer, until, states } = await mount({
    url: server.wsUrl,
    token: () => token("rita"),
    channels: ["alerts"],
    WebSocket,
  });
  assert.equal(states[0].status, "connecting");
  const open = await until((s) => s.status === "open", "open");
  assert.equal(open.welcome.userId, "rita");
  assert.equal(open.unreadCount, 0);
  const client = open.client;
  await until((s) => s.subscribed.includes("alerts"), "subscribed");

  await act(async () => {
    await api(server, "POST", "/api/publish", { channel: "alerts", type: "alert", data: { n: 1 } });
  });
  const got = await until((s) => s.lastMessage?.type === "alert", "the alert");
  assert.deepEqual(got.lastMessage.data, { n: 1 });

  await act(async () => {
    await api(server, "POST", "/api/notifications", { userId: "rita", title: "hello" });
  });
  // The push follows the 201 (a create never waits on delivery): wait for it, not only
  // for the count, which the client raises in the same step but may render first.
  const notified = await until((s) => s.unreadCount === 1 && s.notifications.length === 1, "unread 1");
  assert.equal(notified.notifications[0].title, "hello");

  await act(async () => {
    const result = await notified.markRead({ all: true });
    assert.equal(result.unreadCount, 0);
  });
  const read = await until((s) => s.unreadCount === 0, "unread 0");
  assert.ok(read.notifications[0].readAt);

  mounted.delete(renderer);
  await act(async () => {
    renderer.unmount();
  });
  await within(
    new Promise((resolve) => (client.closeCode !== null ? resolve() : client.on("_disconnected", resolve))),
    TIMEOUT,
    "closed on unmount",
  );
  assert.equal(client.connected, false);
});

test("useTidings reports a terminal close (bad token) as status closed with its code", async () => {
  const { until } = await mount({
    url: server.wsUrl,
    token: token("rita", { secret: "wrong-secret-0123456789-0123456789" }),
    WebSocket,
  });
  const closed = await until((s) => s.status === "closed", "closed");
  assert.equal(closed.closeCode, 4002);
});
