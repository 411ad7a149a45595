// Channel recovery, keepalive and the SSE transport of tidings.js, in Node, against real
// `tidings serve` processes (the "news" namespace keeps history: see helpers.mjs).

import assert from "node:assert/strict";
import { createServer, connect as tcpConnect } from "node:net";
import { after, before, describe, test } from "node:test";
import { EventSource } from "eventsource";
import WebSocket from "ws";

import { Client } from "../../clients/js/src/index.js";
import { api, gate, next, startServer, TIMEOUT, token, within, workdir } from "./helpers.mjs";

const OPTIONS = { WebSocket, backoffInitial: 0.05, backoffMax: 0.5, transport: "websocket" };

/** A client whose token function waits on a gate: the test decides when it may reconnect. */
async function gated(server, user, options = {}) {
  const door = gate();
  door.open();
  const client = new Client(
    server.wsUrl,
    async () => {
      await door.wait();
      return token(user);
    },
    { ...OPTIONS, ...options },
  );
  await within(client.connect(), TIMEOUT, "connect");
  return { client, door };
}

function collect(client, type) {
  const seen = [];
  client.on(type, (msg) => seen.push(msg));
  return seen;
}

/**
 * A TCP proxy in front of the server, so a test can cut connections (the server sees
 * the stream drop without ending the session) and refuse new ones for a while.
 */
async function tcpProxy(port) {
  const sockets = new Set();
  let refusing = false;
  const proxy = createServer((inbound) => {
    if (refusing) {
      inbound.destroy();
      return;
    }
    const outbound = tcpConnect(port, "127.0.0.1");
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  return {
    base: `127.0.0.1:${proxy.address().port}`,
    sockets,
    proxy,
    refuse: (value) => {
      refusing = value;
    },
  };
}

describe("channel recovery", () => {
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

  test("a reconnection resubscribes from the last position and gets exactly what it missed", async () => {
    const { client, door } = await gated(server, "ruth");
    try {
      const subscribed = await client.subscribe("news:world");
      assert.equal(typeof subscribed.offset, "number");
      assert.equal(typeof subscribed.epoch, "string");
      const ticks = collect(client, "tick");
      const first = next(client, "tick");
      await api(server, "POST", "/api/publish", { channel: "news:world", type: "tick", data: 1 });
      const live = await first;
      assert.equal(typeof live.offset, "number");
      assert.deepEqual(client.positions["news:world"], { offset: live.offset, epoch: live.epoch });

      door.close();
      const down = next(client, "_disconnected");
      const [status] = await api(server, "POST", "/api/users/ruth/disconnect", { code: 4000, reason: "test" });
      assert.equal(status, 200);
      assert.equal((await down).reconnect, true);
      for (const n of [2, 3]) {
        await api(server, "POST", "/api/publish", { channel: "news:world", type: "tick", data: n });
      }
      const third = next(client, "tick", (m) => m.data === 3);
      const resubscribed = next(client, "_resubscribed");
      door.open();
      const again = await resubscribed;
      assert.equal(again.channel, "news:world");
      assert.equal(again.data.recovered, true);
      const recovered = await third;
      assert.equal(recovered.recovered, true);
      assert.deepEqual(
        ticks.map((m) => [m.data, m.recovered ?? false]),
        [
          [1, false],
          [2, true],
          [3, true],
        ],
      );
      assert.equal(client.positions["news:world"].offset, recovered.offset);
      const fourth = next(client, "tick", (m) => m.data === 4);
      await api(server, "POST", "/api/publish", { channel: "news:world", type: "tick", data: 4 });
      assert.equal((await fourth).recovered, undefined);
      assert.deepEqual(ticks.map((m) => m.data), [1, 2, 3, 4]);
      assert.equal(client.duplicates, 0);
    } finally {
      door.open();
      await client.close();
    }
  });

  test("a saved position passed as `since` recovers on the first subscribe", async () => {
    const one = new Client(server.wsUrl, token("sam"), OPTIONS);
    await one.connect();
    await one.subscribe("news:saved");
    const got = next(one, "item");
    await api(server, "POST", "/api/publish", { channel: "news:saved", type: "item", data: "a" });
    await got;
    const saved = one.positions;
    await one.close();
    await api(server, "POST", "/api/publish", { channel: "news:saved", type: "item", data: "b" });

    const two = new Client(server.wsUrl, token("sam"), { ...OPTIONS, positions: saved });
    const items = collect(two, "item");
    await two.connect();
    try {
      const b = next(two, "item", (m) => m.data === "b");
      const reply = await two.subscribe("news:saved");
      assert.equal(reply.recovered, true);
      assert.equal((await b).recovered, true);
      assert.deepEqual(items.map((m) => m.data), ["b"]);
    } finally {
      await two.close();
    }
  });

  test("after a server restart the stream's epoch changed: _resubscribed says it could not recover", async () => {
    const { client, door } = await gated(server, "uma");
    try {
      await client.subscribe("news:restart");
      const got = next(client, "tick");
      await api(server, "POST", "/api/publish", { channel: "news:restart", type: "tick", data: 1 });
      await got;
      const resubscribed = next(client, "_resubscribed");
      await server.stop();
      server = await startServer({ dir: work.dir, port: server.port });
      const event = await resubscribed;
      assert.equal(event.channel, "news:restart");
      assert.equal(event.data.recovered, false);
      assert.equal(event.data.reason, "epoch");
      // The subscription still holds, from the new stream's top.
      const after = next(client, "tick", (m) => m.data === 2);
      await api(server, "POST", "/api/publish", { channel: "news:restart", type: "tick", data: 2 });
      assert.equal((await after).recovered, undefined);
    } finally {
      door.open();
      await client.close();
    }
  });
});

describe("keepalive", () => {
  let work;
  let server;

  before(async () => {
    work = workdir();
    server = await startServer({ dir: work.dir });
  });

  after(async () => {
    server.signal("SIGCONT");
    await server.stop();
    work.cleanup();
  });

  test("a server that stops answering pings is dropped (1006) and reconnected once it is back", async () => {
    const client = new Client(server.wsUrl, () => token("kai"), {
      ...OPTIONS,
      // Short, but scaled like every wait on a slow machine (TIMEOUT is 10 s times the scale).
      pingInterval: 0.2,
      pingTimeout: TIMEOUT / 20000,
      openTimeout: TIMEOUT / 10000,
    });
    await client.connect();
    try {
      const pongs = collect(client, "pong");
      const dropped = next(client, "_disconnected");
      server.signal("SIGSTOP"); // frozen: the TCP connection stays up, nothing answers
      const event = await dropped;
      assert.equal(event.code, 1006);
      assert.equal(event.reconnect, true);
      const back = next(client, "_connected");
      server.signal("SIGCONT");
      await back;
      assert.ok(client.connections >= 2);
      assert.deepEqual(pongs, [], "keepalive pongs are replies: consumed, not emitted");
    } finally {
      server.signal("SIGCONT");
      await client.close();
    }
  });
});

describe("SSE transport in Node (npm eventsource)", () => {
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

  test("transport 'sse' connects, subscribes, publishes, and marks read over /sse", async () => {
    const client = new Client(server.wsUrl, token("sia"), { ...OPTIONS, transport: "sse", EventSource });
    await client.connect();
    try {
      assert.equal(client.transport, "sse");
      assert.match(client.welcome.clientId, /^client_/);
      await client.subscribe("chat:sse");
      const echoed = next(client, "hello");
      const published = await client.publish("chat:sse", "hello", { n: 1 });
      assert.match(published.messageId, /^msg_/);
      assert.deepEqual((await echoed).data, { n: 1 });
      const noted = next(client, "notification");
      await api(server, "POST", "/api/notifications", { userId: "sia", title: "over sse" });
      const msg = await noted;
      const read = await client.markRead([msg.id]);
      assert.deepEqual(read, { ids: [msg.id], unreadCount: 0 });
      // Several sends in a row keep their order (one POST at a time, batched).
      const hellos = collect(client, "seq");
      const all = next(client, "seq", (m) => m.data === 5);
      for (let n = 1; n <= 5; n += 1) client.send({ type: "publish", channel: "chat:sse", event: "seq", data: n });
      await all;
      assert.deepEqual(hellos.map((m) => m.data), [1, 2, 3, 4, 5]);
    } finally {
      await client.close();
    }
  });

  test("a close event with a terminal code ends the SSE client for good", async () => {
    const client = new Client(server.wsUrl, token("sid"), { ...OPTIONS, transport: "sse", EventSource });
    await client.connect();
    const down = next(client, "_disconnected");
    await api(server, "POST", "/api/users/sid/disconnect", {});
    const event = await down;
    assert.equal(event.code, 4010);
    assert.equal(event.reconnect, false);
    assert.equal(client.closeCode, 4010);
  });

  test("publications named welcome, close or notification: refused from clients, and harmless from the API", async () => {
    const viaSse = new Client(server.wsUrl, token("ivy"), { ...OPTIONS, transport: "sse", EventSource });
    const viaWs = new Client(server.wsUrl, token("ivo"), OPTIONS);
    const attacker = new Client(server.wsUrl, token("mal"), OPTIONS);
    await Promise.all([viaSse.connect(), viaWs.connect(), attacker.connect()]);
    try {
      await viaSse.subscribe("chat:trap");
      await viaWs.subscribe("chat:trap");
      const seenSse = next(viaSse, "after", () => true);
      const seenWs = next(viaWs, "after", () => true);
      // A client may not publish under the server's own types.
      for (const forged of ["welcome", "close", "notification"]) {
        await assert.rejects(attacker.publish("chat:trap", forged, {}), { code: "FORBIDDEN" });
      }
      // The server API may (it publishes anything): still only publications to clients.
      const forged = [
        ["welcome", { clientId: "client_fake-1" }],
        ["close", { code: 4010, reason: "gotcha" }],
        ["notification", { id: "ntf_fake", seq: 1e9 }],
      ];
      for (const [type, data] of forged) {
        const [status] = await api(server, "POST", "/api/publish", { channel: "chat:trap", type, data });
        assert.equal(status, 200);
      }
      await attacker.publish("chat:trap", "after", null);
      await Promise.all([seenSse, seenWs]);
      for (const client of [viaSse, viaWs]) {
        assert.equal(client.connected, true);
        assert.equal(client.connections, 1);
        assert.equal(client.closeCode, null);
        assert.ok(client.welcome.clientId !== "client_fake-1");
        assert.equal(client.lastSeq, null, "a published 'notification' is not the inbox");
      }
      // Both arrived as ordinary publications.
      const iterator = viaSse[Symbol.asyncIterator]();
      const types = [];
      for (;;) {
        const { value } = await within(iterator.next(), TIMEOUT, "iterator");
        if (value.channel === "chat:trap") types.push(value.type);
        if (value.type === "after") break;
      }
      assert.deepEqual(types, ["welcome", "close", "notification", "after"]);
      assert.equal((await viaSse.ping()).type.toLowerCase(), "pong");
    } finally {
      await Promise.all([viaSse.close(), viaWs.close(), attacker.close()]);
    }
  });

  test("a dropped stream is resumed by EventSource (Last-Event-ID): what was missed is replayed", async () => {
    const { base, sockets, proxy } = await tcpProxy(server.port);
    const client = new Client(`ws://${base}/ws`, token("rex"), {
      ...OPTIONS,
      transport: "sse",
      EventSource,
      sseReattach: TIMEOUT / 1000,
    });
    await client.connect();
    try {
      await client.subscribe("chat:resume");
      const clientId = client.welcome.clientId;
      const dropped = next(client, "_disconnected");
      for (const socket of sockets) socket.destroy();
      const event = await dropped;
      assert.equal(event.code, 1006);
      assert.equal(event.reconnect, true);
      // While the stream is away: a publication (buffered by the server) and a send (queued here).
      await api(server, "POST", "/api/publish", { channel: "chat:resume", type: "missed", data: 1 });
      client.send({ type: "publish", channel: "chat:resume", event: "queued", data: 2 });
      assert.equal(client.queued, 1);
      const resumed = next(client, "_connected");
      const missed = next(client, "missed");
      const queued = next(client, "queued");
      assert.equal((await resumed).resumed, true);
      assert.equal((await missed).data, 1);
      assert.equal((await queued).data, 2);
      assert.equal(client.welcome.clientId, clientId, "the same session, no new welcome");
      assert.equal(client.connections, 1);
    } finally {
      await client.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  test("when EventSource cannot reattach, the client resumes the session itself (?lastEventId=)", async () => {
    const { base, sockets, proxy, refuse } = await tcpProxy(server.port);
    let tokens = 0;
    const client = new Client(
      `ws://${base}/ws`,
      () => {
        tokens += 1;
        return token("roy");
      },
      { ...OPTIONS, transport: "sse", EventSource, sseReattach: 0.2 },
    );
    await client.connect();
    try {
      await client.subscribe("chat:self-resume");
      const clientId = client.welcome.clientId;
      // The proxy now refuses: EventSource's own retries fail, the client gives up on them.
      refuse(true);
      const failures = [];
      const twoFailures = within(
        new Promise((resolve) => {
          client.on("_disconnected", (event) => {
            failures.push(event);
            if (failures.length === 2) resolve();
          });
        }),
        TIMEOUT,
        "the client did not give up on EventSource",
      );
      for (const socket of sockets) socket.destroy();
      await twoFailures;
      assert.ok(failures.every((event) => event.reconnect));
      await api(server, "POST", "/api/publish", { channel: "chat:self-resume", type: "missed", data: 1 });
      const resumed = next(client, "_connected");
      const missed = next(client, "missed");
      refuse(false);
      assert.equal((await resumed).resumed, true);
      assert.equal((await missed).data, 1);
      assert.equal(client.welcome.clientId, clientId, "the same session: no new welcome");
      assert.equal(client.connections, 1);
      assert.ok(tokens >= 2, "the client's own reconnection asked for a fresh token");
      assert.equal((await client.ping()).type.toLowerCase(), "pong");
    } finally {
      await client.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  test("auto falls back to SSE when the WebSocket cannot connect", async () => {
    // A WebSocket that never reaches the server, as behind a proxy that blocks upgrades.
    class Blocked extends WebSocket {
      constructor(url, protocols) {
        super(url.replace(/^ws:\/\/[^/]+/, "ws://127.0.0.1:9"), protocols);
      }
    }
    const client = new Client(server.wsUrl, token("fay"), {
      ...OPTIONS,
      transport: "auto",
      WebSocket: Blocked,
      EventSource,
    });
    await client.connect();
    try {
      assert.equal(client.transport, "sse");
      assert.equal((await client.ping()).type.toLowerCase(), "pong");
    } finally {
      await client.close();
    }
  });
});
