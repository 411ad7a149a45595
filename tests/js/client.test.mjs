// tidings.js against real `tidings serve` processes, in Node with the npm `ws` package.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { Client, ClientClosed, ClientError, QueueFull, shouldReconnect, sseUrlFor } from "../../clients/js/src/index.js";
import { api, gate, next, startServer, TIMEOUT, token, within, workdir } from "./helpers.mjs";

const OPTIONS = { WebSocket, backoffInitial: 0.05, backoffMax: 0.5, transport: "websocket" };

async function connected(server, user = "alice", options = {}) {
  const client = new Client(server.wsUrl, options.token ?? token(user), { ...OPTIONS, ...options });
  await within(client.connect(), TIMEOUT, "connect");
  return client;
}

describe("tidings.js in Node", () => {
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

  test("connects, is welcomed, and answers a ping", async () => {
    const client = await connected(server);
    try {
      assert.equal(client.connected, true);
      assert.equal(client.transport, "websocket");
      assert.equal(client.welcome.userId, "alice");
      assert.equal(client.connections, 1);
      const pong = await client.ping();
      assert.match(pong.type, /^pong$/i);
    } finally {
      await client.close();
    }
    assert.equal(client.connected, false);
    assert.equal(client.closeCode, 1000);
  });

  test("subscribe, then a publication from the API arrives by callback and iterator", async () => {
    const client = await connected(server);
    try {
      const data = await client.subscribe("alerts", { level: "high" });
      assert.equal(data.channel, "alerts");
      assert.deepEqual(client.subscriptions, { alerts: { level: "high" } });
      const byCallback = next(client, "alert");
      const [status] = await api(server, "POST", "/api/publish", {
        channel: "alerts",
        type: "alert",
        data: { level: "high", text: "fire" },
      });
      assert.equal(status, 200);
      assert.equal((await byCallback).data.text, "fire");
      const iterator = client[Symbol.asyncIterator]();
      for (;;) {
        const { value } = await within(iterator.next(), TIMEOUT, "iterator");
        if (value.type === "alert") {
          assert.deepEqual(value.data, { level: "high", text: "fire" });
          break;
        }
      }
    } finally {
      await client.close();
    }
  });

  test("client publish gets its reply by id; a refused request rejects with ClientError", async () => {
    const client = await connected(server);
    try {
      await client.subscribe("chat:1");
      const seen = next(client, "is_typing");
      const published = await client.publish("chat:1", "is_typing", { isTyping: true });
      assert.equal(published.channel, "chat:1");
      assert.match(published.messageId, /^msg_/);
      assert.deepEqual((await seen).data, { isTyping: true });
      await assert.rejects(client.publish("alerts", "x", null), (error) => {
        assert.ok(error instanceof ClientError);
        assert.equal(error.code, "FORBIDDEN");
        return true;
      });
      await assert.rejects(client.subscribe("user:bob"), (error) => error instanceof ClientError && error.code === "FORBIDDEN");
      assert.deepEqual(Object.keys(client.subscriptions), ["chat:1"]);
    } finally {
      await client.close();
    }
  });

  test("notifications arrive, and mark_read in one client reaches the user's other client", async () => {
    const one = await connected(server, "nina");
    const two = await connected(server, "nina");
    try {
      const arrived = next(one, "notification");
      const [status, created] = await api(server, "POST", "/api/notifications", {
        userId: "nina",
        title: "Booking confirmed",
        priority: "HIGH",
        actions: [{ id: "view", label: "View" }],
      });
      assert.equal(status, 201, JSON.stringify(created));
      const msg = await arrived;
      assert.equal(msg.data.title, "Booking confirmed");
      assert.equal(msg.data.priority, "HIGH");
      assert.ok(one.lastSeq >= 1);
      const page = await one.getNotifications({ unreadOnly: true });
      assert.equal(page.unreadCount, 1);
      const followed = next(two, "notification_read");
      const read = await one.markRead([msg.id]);
      assert.deepEqual(read.ids, [msg.id]);
      assert.equal(read.unreadCount, 0);
      assert.equal((await followed).data.unreadCount, 0);
      const all = await one.markRead({ all: true });
      assert.deepEqual(all.ids, []);
    } finally {
      await one.close();
      await two.close();
    }
  });

  test("ack mode acknowledges each notification: an acked one is not in a later ack-mode catch-up", async () => {
    // A real ws socket that also records the server's frames, to see the acked reply
    // the client consumes.
    const frames = [];
    let onFrame = () => {};
    class Recording extends WebSocket {
      constructor(...args) {
        super(...args);
        this.addEventListener("message", (event) => {
          const frame = JSON.parse(String(event.data));
          frames.push(frame);
          onFrame(frame);
        });
      }
    }
    const client = await connected(server, "ada", { ack: true, WebSocket: Recording });
    const first = next(client, "notification");
    await api(server, "POST", "/api/notifications", { userId: "ada", title: "one" });
    const one = await first;
    const isAck = (frame) => frame.type === "acked" && frame.data.ids.includes(one.id);
    await within(
      new Promise((resolve) => {
        onFrame = (frame) => isAck(frame) && resolve();
        if (frames.some(isAck)) resolve(); // it came before we looked
      }),
      TIMEOUT,
      "no acked reply for the notification",
    );
    await client.close();
    await api(server, "POST", "/api/notifications", { userId: "ada", title: "two" });
    const later = new Client(server.wsUrl, token("ada"), { ...OPTIONS, ack: true, resume: false });
    const caught = [];
    later.on("notification", (msg) => caught.push(msg.data.title));
    const two = next(later, "notification", (m) => m.data.title === "two");
    await later.connect();
    try {
      await two;
      assert.deepEqual(caught, ["two"]);
    } finally {
      await later.close();
    }
  });

  test("a bad token fails connect() with the terminal 4002, and nothing reconnects", async () => {
    const client = new Client(server.wsUrl, token("alice", { secret: "not-the-secret-0123456789-abcdefgh" }), OPTIONS);
    await assert.rejects(client.connect(), (error) => error instanceof ClientClosed && error.code === 4002);
    assert.equal(client.closeCode, 4002);
    assert.equal(client.connections, 0);
    await assert.rejects(client.ping(), ClientClosed);
  });

  test("an operator's disconnect (4010) ends the client for good", async () => {
    const tokens = [];
    const client = await connected(server, "dora", {
      token: () => {
        tokens.push(1);
        return token("dora");
      },
    });
    const disconnected = next(client, "_disconnected");
    const [status] = await api(server, "POST", "/api/users/dora/disconnect", { reason: "banned" });
    assert.equal(status, 200);
    const event = await disconnected;
    assert.equal(event.code, 4010);
    assert.equal(event.reconnect, false);
    assert.equal(client.closeCode, 4010);
    assert.equal(client.connected, false);
    await assert.rejects(client.ping(), (error) => error instanceof ClientClosed && error.code === 4010);
    assert.throws(() => client.send({ type: "ping" }), ClientClosed);
    const { done } = await within(client[Symbol.asyncIterator]().next(), TIMEOUT, "the iterator did not end");
    assert.equal(done, false); // buffered events are still readable, then it ends
    assert.equal(tokens.length, 1, "the token function is not called again: no reconnection");
  });

  test("tokenIn 'protocol' carries the token in the subprotocol, not the URL", async () => {
    const urls = [];
    class Recording extends WebSocket {
      constructor(url, protocols) {
        urls.push([url, protocols]);
        super(url, protocols);
      }
    }
    const client = await connected(server, "pia", { tokenIn: "protocol", WebSocket: Recording });
    try {
      assert.equal(client.welcome.userId, "pia");
      const [[url, protocols]] = urls;
      assert.equal(new URL(url).searchParams.get("token"), null);
      assert.equal(protocols[0], "tidings");
      assert.match(protocols[1], /^bearer\./);
    } finally {
      await client.close();
    }
  });

  test("the SSE URL sits beside the WebSocket URL", () => {
    assert.equal(sseUrlFor("ws://h:8000/ws?userId=a"), "http://h:8000/sse?userId=a");
    assert.equal(sseUrlFor("wss://notify.example.com/ws/notifications"), "https://notify.example.com/sse");
  });

  test("the close-code policy: terminal codes do not reconnect, others and unknown ones do", () => {
    for (const code of [1000, 4001, 4002, 4003, 4006, 4010]) assert.equal(shouldReconnect(code), false, code);
    for (const code of [1001, 1006, 1009, 4000, 4004, 4005, 4008, 4009, 4029, 4999]) {
      assert.equal(shouldReconnect(code), true, code);
    }
  });
});

describe("tidings.js across a server restart", () => {
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

  test("reconnects, resubscribes, recovers missed notifications, and flushes the offline queue", async () => {
    const door = gate();
    door.open();
    let calls = 0;
    const client = await connected(server, "remy", {
      token: async () => {
        calls += 1;
        await door.wait();
        return token("remy");
      },
    });
    const watcher = await connected(server, "wade");
    try {
      await client.subscribe("chat:lobby");
      const first = next(client, "notification");
      await api(server, "POST", "/api/notifications", { userId: "remy", title: "before" });
      assert.equal((await first).data.title, "before");
      assert.equal(client.lastSeq, 1);

      // The server goes away (1001), and the client may not reconnect until we say so.
      door.close();
      const down = next(client, "_disconnected");
      await server.stop();
      await watcher.close();
      const event = await down;
      assert.equal(event.code, 1001);
      assert.equal(event.reconnect, true);
      assert.equal(client.connected, false);

      // Offline: send() queues, in order; the queue is bounded.
      client.send({ type: "publish", channel: "chat:lobby", event: "queued", data: { n: 1 } });
      client.send({ type: "publish", channel: "chat:lobby", event: "queued", data: { n: 2 } });
      assert.equal(client.queued, 2);

      server = await startServer({ dir: work.dir, port: server.port });
      // Created while the client is away: it must come with the catch-up (lastSeq=1).
      const [status] = await api(server, "POST", "/api/notifications", { userId: "remy", title: "while away" });
      assert.equal(status, 201);
      const missed = next(client, "notification");
      const queued = [];
      const bothQueued = within(
        new Promise((resolve) => {
          client.on("queued", (msg) => {
            queued.push(msg.data.n);
            if (queued.length === 2) resolve();
          });
        }),
        TIMEOUT,
        "the queued publications",
      );
      const back = next(client, "_connected");
      door.open();
      await back;
      assert.equal(client.connections, 2);
      assert.ok(calls >= 2, "the token function was asked again for the reconnection");
      const recovered = await missed;
      assert.equal(recovered.data.title, "while away");
      assert.equal(recovered.data.recovered, true);
      assert.equal(client.lastSeq, 2);
      // The queued publications went out after the resubscription, so we get them back.
      await bothQueued;
      assert.deepEqual(queued, [1, 2]);
      assert.equal(client.queued, 0);
      assert.equal(client.duplicates, 0);
      // And the resubscription holds for new publications too.
      const live = next(client, "news_flash");
      await api(server, "POST", "/api/publish", { channel: "chat:lobby", type: "news_flash", data: 1 });
      assert.equal((await live).data, 1);
    } finally {
      door.open();
      await client.close();
    }
  });

  test("a token that expires (4005) is replaced by a fresh one from the token function", async () => {
    const own = workdir();
    const strict = await startServer({ dir: own.dir, extraArgs: ["--jwt-leeway", "0"] });
    const ttls = [1, 3600];
    const client = new Client(strict.wsUrl, () => token("tom", { ttl: ttls.shift() ?? 3600 }), OPTIONS);
    try {
      const expired = next(client, "_disconnected");
      await client.connect();
      const firstExpiry = client.welcome.expiresAt;
      const back = next(client, "_connected");
      const event = await expired;
      assert.equal(event.code, 4005);
      assert.equal(event.reconnect, true);
      await back;
      assert.equal(client.connections, 2);
      assert.ok(client.welcome.expiresAt > firstExpiry, "welcomed again with the fresh token");
    } finally {
      await client.close();
      await strict.stop();
      own.cleanup();
    }
  });

  test("the offline queue is bounded: QueueFull past queueLimit", async () => {
    const door = gate();
    door.open();
    const client = await connected(server, "quinn", {
      queueLimit: 1,
      token: async () => {
        await door.wait();
        return token("quinn");
      },
    });
    try {
      door.close();
      const down = next(client, "_disconnected");
      await api(server, "POST", "/api/users/quinn/disconnect", { code: 4000, reason: "test" });
      assert.equal((await down).reconnect, true);
      client.send({ type: "ping" });
      assert.throws(() => client.send({ type: "ping" }), QueueFull);
      assert.equal(client.queued, 1);
    } finally {
      door.open();
      await client.close();
    }
  });
});
