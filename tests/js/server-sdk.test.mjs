// The Node server SDK (tidings/server) against a real server: guide 001's
// notificationService shape, guide 003's send_notification payload, live sends, the
// directory and rooms, typed errors, and a retry after a lost answer creating only once.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";

import { TidingsError, TidingsServer, TransportError, notificationBody } from "../../clients/js/src/server.js";
import { API_KEY, startServer, token, workdir } from "./helpers.mjs";

let work;
let server;
let tidings;

before(async () => {
  work = workdir();
  server = await startServer({ dir: work.dir });
  tidings = new TidingsServer({ url: server.url, apiKey: API_KEY, backoffMs: 10 });
});

after(async () => {
  await server.stop();
  work.cleanup();
});

test("guide 001's createNotification body is stored for the user", async () => {
  const created = await tidings.createNotification({
    user_id: "renter-1",
    type: "booking_confirmation",
    title: "Booking Confirmed",
    message: "Your booking for Model 3 has been confirmed.",
    data: { booking_id: 7 },
  });
  assert.equal(created.notifications[0].userId, "renter-1");
  const page = await tidings.listNotifications("renter-1");
  assert.deepEqual(
    [page.items[0].type, page.items[0].title, page.items[0].data],
    ["booking_confirmation", "Booking Confirmed", { booking_id: 7 }],
  );
  const read = await tidings.markRead("renter-1", [page.items[0].id]);
  assert.equal(read.unreadCount, 0);
  const id = page.items[0].id;
  assert.deepEqual((await tidings.archiveNotifications("renter-1", [id])).ids, [id]);
  const shelf = await tidings.listNotifications("renter-1", { archived: true });
  assert.deepEqual(shelf.items.map((n) => [n.id, typeof n.archivedAt]), [[id, "string"]]);
  assert.deepEqual((await tidings.unarchiveNotifications("renter-1", [id])).ids, [id]);
  assert.equal((await tidings.listNotifications("renter-1", { archived: true })).items.length, 0);
});

test("createNotifications stores a batch with a result per item; a retry replays", async () => {
  const items = [
    { user_id: "batch-1", title: "One", idempotencyKey: "js-batch-1" },
    { userId: "batch-2", title: "Two", order: 2 },
    { userId: "batch-3", type: "" },
  ];
  const { results } = await tidings.createNotifications(items);
  assert.deepEqual(results.map((r) => r.status), [201, 201, 422]);
  assert.equal(results[2].error.code, "VALIDATION_ERROR");
  assert.deepEqual((await tidings.listNotifications("batch-2")).items[0].data, { order: 2 });
  const again = await tidings.createNotifications([items[0]]);
  assert.deepEqual([again.results[0].status, again.results[0].replayed], [200, true]);
  assert.deepEqual(again.results[0].notifications, results[0].notifications);
});

test("guide 003's payload keeps its own fields in data, priority in any case", async () => {
  await tidings.sendNotification("client-9", {
    message: "Your form was submitted",
    type: "info",
    case_id: "12345",
    priority: "high",
    category: "immigration",
  });
  const [item] = (await tidings.listNotifications("client-9")).items;
  assert.deepEqual(
    [item.type, item.message, item.priority, item.category, item.data],
    ["info", "Your form was submitted", "HIGH", "immigration", { case_id: "12345" }],
  );
  assert.throws(() => notificationBody({ priority: "soon" }), RangeError);
});

test("live sends, the directory and rooms", async () => {
  const sent = await tidings.sendToUser("nobody-online", { type: "notification:new", notification: { id: 1 } });
  assert.equal(sent.delivered, 0);
  assert.match(sent.id, /^msg_/);
  assert.equal((await tidings.publish("news", { headline: "hi" })).delivered, 0);
  assert.equal((await tidings.broadcast({ m: 1 }, { type: "maintenance", excludeUserId: "x" })).delivered, 0);
  const user = await tidings.putUser("lib-1", { name: "Ada", roles: ["LIBRARIAN"] });
  assert.equal(user.name, "Ada");
  const created = await tidings.createNotification({ role: "LIBRARIAN", title: "Peak hours" });
  assert.deepEqual(created.notifications.map((n) => n.userId), ["lib-1"]);
  await tidings.createRoom("room-456", { name: "General" });
  await tidings.setMembers("room-456", ["lib-1"]);
  const posted = await tidings.asUser(token("lib-1")).postMessage("room-456", "Hello, world!");
  assert.equal(posted.authorName, "Ada");
  assert.deepEqual((await tidings.listMembers("room-456")).map((m) => m.userId), ["lib-1"]);
  const erased = await tidings.deleteUser("lib-1");
  assert.equal(erased.kept.roomMessages, 1);
});

test("errors are typed: status, code and the server's message", async () => {
  await assert.rejects(tidings.publish("bad name!"), (error) => {
    assert.ok(error instanceof TidingsError);
    assert.equal(error.status, 422);
    assert.equal(error.code, "VALIDATION_ERROR");
    return true;
  });
  const wrongKey = new TidingsServer({ url: server.url, apiKey: "nope", retries: 0 });
  await assert.rejects(wrongKey.stats(), (error) => error.status === 401);
  // A port nobody listens on any more: the connection is refused, so nothing was sent.
  const closed = createServer();
  await new Promise((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const { port } = closed.address();
  await new Promise((resolve) => closed.close(resolve));
  const nowhere = new TidingsServer({ url: `http://127.0.0.1:${port}`, apiKey: API_KEY, retries: 0 });
  await assert.rejects(nowhere.publish("news"), (error) => error instanceof TransportError && !error.maybeSent);
});

test("a create whose answer is lost is retried with the same key and stored once", async () => {
  // A proxy that forwards the first create, lets the server commit it, then drops the
  // connection instead of passing the answer on.
  let dropped = 0;
  const proxy = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const upstream = await fetch(server.url + req.url, {
      method: req.method,
      headers: { authorization: req.headers.authorization, "content-type": "application/json", "idempotency-key": req.headers["idempotency-key"] ?? "" },
      body: chunks.length ? Buffer.concat(chunks) : undefined,
    });
    const text = await upstream.text();
    if (req.url === "/api/notifications" && dropped === 0) {
      dropped += 1;
      req.socket.destroy();
      return;
    }
    res.writeHead(upstream.status, { "content-type": "application/json" }).end(text);
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  try {
    const viaProxy = new TidingsServer({ url: `http://127.0.0.1:${proxy.address().port}`, apiKey: API_KEY, backoffMs: 10 });
    const created = await viaProxy.createNotification({ userId: "once", title: "Exactly once" });
    assert.equal(dropped, 1);
    assert.equal(created.replayed, true);
    assert.equal((await tidings.listNotifications("once")).items.length, 1);
  } finally {
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
  }
});
