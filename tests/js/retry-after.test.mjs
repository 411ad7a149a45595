// Retry-After honoured by the Node server SDK and by the realtime client's reconnection,
// against a real server behind tiny real peers on 127.0.0.1 that refuse first with 503
// and Retry-After (an HTTP peer for the SDK, a TCP one for the WebSocket upgrade).

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { connect, createServer as createTcpServer } from "node:net";
import { performance } from "node:perf_hooks";
import { after, before, test } from "node:test";
import WebSocket from "ws";

import { Client } from "../../clients/js/src/index.js";
import { TidingsError, TidingsServer, retryAfterSeconds } from "../../clients/js/src/server.js";
import { API_KEY, startServer, token, within, workdir } from "./helpers.mjs";

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

/** An HTTP peer: the first `refusals` requests get `status` with `headers`, the rest go
 * to the real server. Records [arrival ms, Idempotency-Key] per request. */
async function httpPeer({ refusals, status = 503, headers = {}, body = '{"error":{"code":"UNAVAILABLE","message":"busy"}}' }) {
  const seen = [];
  const peer = createServer(async (req, res) => {
    seen.push([performance.now(), req.headers["idempotency-key"] ?? null]);
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    if (seen.length <= refusals) {
      res.writeHead(status, headers);
      res.end(body);
      return;
    }
    const forwarded = await fetch(server.url + req.url, {
      method: req.method,
      headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => !["host", "connection", "content-length"].includes(k))),
      body: chunks.length ? Buffer.concat(chunks) : undefined,
    });
    res.writeHead(forwarded.status, { "Content-Type": "application/json" });
    res.end(await forwarded.text());
  });
  await new Promise((resolve) => peer.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${peer.address().port}`, seen, close: () => new Promise((r) => peer.close(r)) };
}

test("Retry-After's two forms", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(retryAfterSeconds("3", now), 3);
  assert.equal(retryAfterSeconds("Thu, 01 Jan 2026 00:00:07 GMT", now), 7);
  assert.equal(retryAfterSeconds("Wed, 31 Dec 2025 23:59:00 GMT", now), 0);
  assert.equal(retryAfterSeconds("soon", now), null);
  assert.equal(retryAfterSeconds(null, now), null);
});

test("the SDK retries a 503 after its Retry-After with the same Idempotency-Key, creating once", async () => {
  const peer = await httpPeer({ refusals: 1, headers: { "Retry-After": "1", "Content-Type": "application/json" } });
  try {
    const tidings = new TidingsServer({ url: peer.url, apiKey: API_KEY, backoffMs: 10 });
    const created = await tidings.createNotification({ userId: "retry-1", title: "Booking confirmed" });
    const [[first, key1], [second, key2]] = peer.seen;
    assert.ok(second - first >= 1000, `retried after ${second - first} ms`);
    assert.ok(key1);
    assert.equal(key1, key2);
    assert.equal(created.replayed, false);
    const direct = new TidingsServer({ url: server.url, apiKey: API_KEY });
    assert.deepEqual((await direct.listNotifications("retry-1")).items.map((n) => n.id), [created.notifications[0].id]);
  } finally {
    await peer.close();
  }
});

test("a Retry-After past maxBackoffMs is thrown at once, not retried early", async () => {
  const peer = await httpPeer({ refusals: 1, headers: { "Retry-After": "120", "Content-Type": "application/json" } });
  try {
    const tidings = new TidingsServer({ url: peer.url, apiKey: API_KEY, backoffMs: 10 });
    const error = await tidings.createNotification({ userId: "retry-2", title: "x" }).catch((e) => e);
    assert.ok(error instanceof TidingsError);
    assert.deepEqual([error.status, error.code, error.retryAfter, peer.seen.length], [503, "UNAVAILABLE", 120, 1]);
  } finally {
    await peer.close();
  }
});

test("a proxy's HTML error page is a TidingsError, not a JSON parse failure", async () => {
  const peer = await httpPeer({ refusals: 10, status: 502, headers: { "Content-Type": "text/html" }, body: "<html>Bad Gateway</html>" });
  try {
    const tidings = new TidingsServer({ url: peer.url, apiKey: API_KEY, backoffMs: 10 });
    const error = await tidings.publish("news", { n: 1 }).catch((e) => e);
    assert.ok(error instanceof TidingsError, String(error));
    assert.deepEqual([error.status, error.code, peer.seen.length], [502, "ERROR", 1]);
  } finally {
    await peer.close();
  }
});

/** A TCP peer in front of the server: connections take `plan`'s modes ("refuse": a 503
 * with Retry-After: 1 instead of the upgrade), then pipe. Records arrivals (ms). */
async function tcpPeer() {
  const plan = [];
  const arrivals = [];
  const live = new Set();
  const peer = createTcpServer((socket) => {
    arrivals.push(performance.now());
    socket.on("error", () => {});
    if (plan.shift() === "refuse") {
      socket.once("data", () =>
        socket.end("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
      );
      return;
    }
    const upstream = connect(server.port, "127.0.0.1");
    upstream.on("error", () => {});
    socket.pipe(upstream);
    upstream.pipe(socket);
    const pair = [socket, upstream];
    live.add(pair);
    socket.on("close", () => live.delete(pair));
  });
  await new Promise((resolve) => peer.listen(0, "127.0.0.1", resolve));
  return {
    url: `ws://127.0.0.1:${peer.address().port}/ws`,
    plan,
    arrivals,
    drop: () => {
      for (const pair of live) for (const s of pair) s.destroy();
    },
    close: () => new Promise((r) => peer.close(r)),
  };
}

test("the realtime client reconnects no sooner than a refused upgrade's Retry-After", async () => {
  const peer = await tcpPeer();
  const client = new Client(peer.url, token("retry-ws"), {
    WebSocket,
    transport: "websocket",
    backoffInitial: 0.05,
    backoffMax: 0.2,
  });
  try {
    await within(client.connect(), undefined, "connect");
    const refusals = [];
    const reconnected = within(
      new Promise((resolve) => client.on("_connected", resolve)),
      undefined,
      "no reconnection",
    );
    client.on("_disconnected", (event) => refusals.push(event));
    peer.plan.push("refuse");
    peer.drop();
    await reconnected;
    assert.equal(peer.arrivals.length, 3);
    const waited = peer.arrivals[2] - peer.arrivals[1];
    assert.ok(waited >= 1000, `reconnected ${waited} ms after the refusal`);
    assert.ok(refusals.some((e) => e.reason === "refused (503)"), JSON.stringify(refusals));
  } finally {
    await client.close();
    await peer.close();
  }
});
