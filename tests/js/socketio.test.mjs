// npm socket.io-client v4 against a real `tidings serve` at /socket.io/, and guide 003's
// frontend (tests/js/guide003) run with only its URL and token changed.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { io } from "socket.io-client";

import { api, startServer, TIMEOUT, token, within, workdir } from "./helpers.mjs";

/** The next `event` the socket emits. */
function nextEvent(socket, event) {
  return within(new Promise((resolve) => socket.once(event, resolve)), TIMEOUT, `no ${event} event`);
}

/** A socket connected as `user`; resolves once it got its welcome. */
async function connect(server, user, options = {}) {
  const socket = io(server.url, { auth: { token: token(user) }, reconnection: false, ...options });
  const welcome = nextEvent(socket, "welcome");
  await nextEvent(socket, "connect");
  return { socket, welcome: await welcome };
}

describe("socket.io-client", () => {
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

  for (const [name, options] of [
    ["long-polling with the WebSocket upgrade", { transports: ["polling", "websocket"] }],
    ["WebSocket only", { transports: ["websocket"] }],
  ]) {
    test(`${name}: welcomed, and a notification from the API arrives`, async () => {
      const { socket, welcome } = await connect(server, "alice", options);
      try {
        assert.equal(welcome.userId, "alice");
        if (options.transports.length === 2) {
          if (socket.io.engine.transport.name !== "websocket") await nextEvent(socket.io.engine, "upgrade");
          assert.equal(socket.io.engine.transport.name, "websocket");
        }
        const arrived = nextEvent(socket, "notification");
        const [status] = await api(server, "POST", "/api/notifications", {
          userId: "alice",
          message: "Your case status has been updated",
          type: "info",
        });
        assert.equal(status, 201);
        const note = await arrived;
        assert.equal(note.message, "Your case status has been updated");
        assert.equal(note.type, "info");
      } finally {
        socket.disconnect();
      }
    });
  }

  test("a bad token: connect_error with the close code in data", async () => {
    const socket = io(server.url, { auth: { token: "forged" }, reconnection: false });
    const error = await nextEvent(socket, "connect_error");
    socket.disconnect();
    assert.equal(error.data.code, 4002);
    assert.equal(error.message, error.data.reason);
  });

  test("inbox commands answer with acknowledgements", async () => {
    await api(server, "POST", "/api/notifications", { userId: "carol", message: "one" });
    await api(server, "POST", "/api/notifications", { userId: "carol", message: "two" });
    const { socket } = await connect(server, "carol", { transports: ["websocket"] });
    try {
      const page = await socket.timeout(TIMEOUT).emitWithAck("get_notifications", { limit: 5 });
      assert.deepEqual(page.items.map((n) => n.message), ["two", "one"]);
      const read = await socket.timeout(TIMEOUT).emitWithAck("mark_read", { notificationIds: [page.items[0].id] });
      assert.equal(read.unreadCount, 1);
      const all = await socket.timeout(TIMEOUT).emitWithAck("mark_all_read");
      assert.equal(all.unreadCount, 0);
      const refused = await socket.timeout(TIMEOUT).emitWithAck("subscribe", { channel: "" });
      assert.equal(refused.error.code, "INVALID_MESSAGE");
    } finally {
      socket.disconnect();
    }
  });

  test("subscribe and receive a channel's publications", async () => {
    const { socket } = await connect(server, "dave");
    try {
      const ok = await socket.timeout(TIMEOUT).emitWithAck("subscribe", "news");
      assert.equal(ok.channel, "news");
      const got = nextEvent(socket, "headline");
      await api(server, "POST", "/api/publish", { channel: "news", type: "headline", data: { n: 1 } });
      const event = await got;
      assert.equal(event.channel, "news");
      assert.deepEqual(event.data, { n: 1 });
    } finally {
      socket.disconnect();
    }
  });

  test("guide 003's frontend, unchanged but for URL and token", async () => {
    process.env.REACT_APP_SOCKET_URL = server.url;
    globalThis.localStorage = { getItem: (key) => (key === "token" ? token("user-42") : null) };
    const store = await import("./guide003/store.js");
    const { initSocket } = await import("./guide003/components/notifications.js");
    const service = await import("./guide003/services/socket.js");
    try {
      await within(initSocket("user-42"), TIMEOUT, "initSocket");
      const shown = within(new Promise((resolve) => store.listeners.add(resolve)), TIMEOUT, "no notification");
      await api(server, "POST", "/api/notifications", {
        userId: "user-42",
        message: "Your immigration form has been submitted successfully",
        type: "success",
      });
      const notification = await shown;
      assert.equal(notification.message, "Your immigration form has been submitted successfully");
      assert.deepEqual(store.toasts, [
        { message: "Your immigration form has been submitted successfully", type: "success" },
      ]);
      const page = await within(service.getNotifications(true), TIMEOUT, "get_notifications");
      assert.equal(page.unreadCount, 1);
      const read = await within(service.markNotificationsRead([notification.id]), TIMEOUT, "mark_read");
      assert.equal(read.unreadCount, 0);
    } finally {
      service.disconnectSocket();
    }
  });
});
