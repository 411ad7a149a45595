// The client warns, once, when a server speaks another protocol version than its own,
// and goes on. The server here is a WebSocket peer on 127.0.0.1 that answers with a
// welcome of the version a test chooses.

import assert from "node:assert/strict";
import { after, test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";

import { Client, PROTOCOL_VERSION, VERSION } from "../../clients/js/src/index.js";
import { next } from "./helpers.mjs";

const OPTIONS = { WebSocket, backoffInitial: 0.01, backoffMax: 0.05, transport: "websocket", pingInterval: 0 };
const peers = [];

after(async () => {
  for (const peer of peers) await new Promise((resolve) => peer.close(resolve));
});

/** A peer that welcomes every connection with `protocolVersion`. */
async function peer(protocolVersion) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => wss.once("listening", resolve));
  wss.on("connection", (ws) => {
    const data = { clientId: "c1", userId: "u", roles: [], protocolVersion, unreadCount: 0 };
    ws.send(JSON.stringify({ id: "w1", type: "welcome", timestamp: new Date().toISOString(), data }));
  });
  peers.push(wss);
  return { url: `ws://127.0.0.1:${wss.address().port}/ws`, wss };
}

/** console.warn's calls while `run` runs. */
async function warnings(run) {
  const seen = [];
  const original = console.warn;
  console.warn = (...args) => seen.push(args.join(" "));
  try {
    await run();
  } finally {
    console.warn = original;
  }
  return seen;
}

test("a server of another protocol version is named in one warning; the client works on", async () => {
  const { url, wss } = await peer(PROTOCOL_VERSION + 1);
  const client = new Client(url, "t", OPTIONS);
  const seen = await warnings(async () => {
    await client.connect();
    // A reconnection to the same server does not warn again.
    const back = next(client, "_connected");
    for (const ws of wss.clients) ws.close(1001, "restart");
    await back;
  });
  await client.close();
  assert.equal(client.connections, 2);
  assert.equal(seen.length, 1);
  assert.match(seen[0], new RegExp(`protocol ${PROTOCOL_VERSION + 1}.*\\(${VERSION.replaceAll(".", "\\.")}\\) protocol ${PROTOCOL_VERSION}`));
});

test("a server of the same protocol version gets no warning", async () => {
  const { url } = await peer(PROTOCOL_VERSION);
  const client = new Client(url, "t", OPTIONS);
  const seen = await warnings(() => client.connect());
  await client.close();
  assert.deepEqual(seen, []);
});
