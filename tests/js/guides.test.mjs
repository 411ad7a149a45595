// docs/guides/*.md run: every block marked `<!-- test: run -->` whose first line names a
// file (`// src/x.js`) is written into an app folder (TypeScript and TSX transpiled by
// tsc, as Next.js would), with the few modules of the app's own the guide does not show
// (its database, its auth context); then each guide's story runs against a real server.

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pathToFileURL } from "node:url";

import { createElement } from "react";
import TestRenderer from "react-test-renderer";
import ts from "typescript";
import WebSocket from "ws";

import { API_KEY, next, startServer, TIMEOUT, token, within, workdir } from "./helpers.mjs";

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;
const GUIDES = new URL("../../docs/guides/", import.meta.url);
const BLOCK = /<!-- test: run -->\n```(js|ts|tsx)\n\/\/ (\S+)\n(.*?)^```$/gms;

/** The marked blocks of docs/guides/<name>: [{path, lang, code}]. */
export function guideFiles(name) {
  const text = readFileSync(new URL(name, GUIDES), "utf8");
  return [...text.matchAll(BLOCK)].map(([, lang, path, code]) => ({ lang, path, code }));
}

/** Write `files` (the guide's, then the app's own) under `dir`; the URL of each by path. */
function writeApp(dir, files) {
  const urls = {};
  for (const { lang, path, code } of files) {
    let out = code;
    let target = path;
    if (lang !== "js") {
      out = ts.transpileModule(code, {
        compilerOptions: { jsx: ts.JsxEmit.React, module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      }).outputText;
      target = path.replace(/\.tsx?$/, ".js");
    }
    // Next.js resolves "./auth" to auth.tsx; Node's ESM needs the extension.
    out = out.replace(/(from\s+["'])(\.{1,2}\/[^"']+?)(["'])/g, (m, a, spec, b) =>
      /\.[cm]?js$/.test(spec) ? m : `${a}${spec}.js${b}`,
    );
    const file = join(dir, target);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, out);
    urls[path] = pathToFileURL(file).href;
  }
  return urls;
}

/** Resolves when console.log prints `text` (the guides' own "WebSocket connected" lines). */
function logged(text) {
  return within(
    new Promise((resolve) => {
      const original = console.log;
      console.log = (...args) => {
        original(...args);
        if (args.join(" ").includes(text)) {
          console.log = original;
          resolve();
        }
      };
    }),
    TIMEOUT,
    `never logged ${text}`,
  );
}

/** A tiny Express-shaped response: the route's answer as a promise. */
function response() {
  let done;
  const answered = new Promise((resolve) => (done = resolve));
  const res = {
    statusCode: 200,
    status(code) {
      res.statusCode = code;
      return res;
    },
    json(body) {
      done({ status: res.statusCode, body });
    },
  };
  return { res, answered: within(answered, TIMEOUT, "the route never answered") };
}

describe("the guides, ported", () => {
  let work;
  let server;

  before(async () => {
    work = workdir();
    server = await startServer({ dir: work.dir });
    process.env.TIDINGS_URL = server.url;
    process.env.TIDINGS_API_KEY = API_KEY;
    process.env.NEXT_PUBLIC_WS_URL = `ws://127.0.0.1:${server.port}`;
    process.env.NEXT_PUBLIC_TIDINGS_URL = server.url;
    // The browser's WebSocket, for the frontends.
    globalThis.WebSocket = WebSocket;
  });

  after(async () => {
    delete globalThis.WebSocket;
    await server.stop();
    work.cleanup();
  });

  test("guide 000: the status route notifies the applicant's dashboard, which refetches", async () => {
    const applicantToken = token("applicant-7");
    const fetched = [];
    let onFetch = () => {};
    const urls = writeApp(join(work.dir, "alms"), [
      ...guideFiles("000-alms.md"),
      {
        lang: "js",
        path: "applications.js",
        code: `export async function updateApplicationStatus(id, status, comments) {
          return { id, status, comments, applicantId: "applicant-7" };
        }`,
      },
      {
        lang: "js",
        path: "src/config/auth.js",
        code: `export const useAuth = () => ({ isAuthenticated: true, token: ${JSON.stringify(applicantToken)}, userId: "applicant-7" });`,
      },
      {
        lang: "js",
        path: "src/config/notificationContext.js",
        code: `export const useNotifications = () => ({ fetchNotifications: globalThis.__fetchNotifications });`,
      },
    ]);
    // The app's notification context: GET /api/me/notifications with the user's token.
    globalThis.__fetchNotifications = async () => {
      const answer = await fetch(`${server.url}/api/me/notifications`, {
        headers: { Authorization: `Bearer ${applicantToken}` },
      });
      fetched.push(await answer.json());
      onFetch();
    };
    const { default: ProductionWebSocketService } = await import(urls["src/config/productionWebSocketService.tsx"]);
    const { changeApplicationStatus } = await import(urls["routes/applications.js"]);

    const connected = logged("WebSocket connected");
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(createElement(ProductionWebSocketService));
    });
    try {
      await connected;
      const refetched = within(new Promise((resolve) => (onFetch = resolve)), TIMEOUT, "no refetch");
      const { res, answered } = response();
      await changeApplicationStatus({ params: { id: "APP-42" }, body: { status: "APPROVED" } }, res);
      assert.deepEqual((await answered).body.success, true);
      await refetched;
      const [item] = fetched.at(-1).items;
      assert.deepEqual(
        [item.type, item.title, item.message, item.data],
        [
          "APPLICATION_STATUS_CHANGE",
          "Application Status Updated",
          "Your application APP-42 status has been changed to APPROVED",
          { applicationId: "APP-42" },
        ],
      );
    } finally {
      await act(async () => renderer.unmount());
      delete globalThis.__fetchNotifications;
    }
  });

  test("guide 001: a booking's notification reaches the renter's page, read on every tab", async () => {
    const urls = writeApp(join(work.dir, "notification-service"), guideFiles("001-notification-service.md"));
    const { NotificationService } = await import(urls["src/services/notification.service.js"]);
    const { connectNotifications } = await import(urls["src/services/notificationSocket.js"]);
    const service = new NotificationService();
    const received = [];
    const reads = [];
    let wake = () => {};
    const seen = (list, n, what) =>
      within(
        new Promise((resolve) => {
          wake = () => list.length >= n && resolve();
          wake();
        }),
        TIMEOUT,
        what,
      );
    const connected = logged("WebSocket connected");
    const page = connectNotifications({
      token: token("renter-1"),
      onNotification: (n) => (received.push(n), wake()),
      onRead: (ids, unread) => (reads.push({ ids, unread }), wake()),
    });
    try {
      await connected;
      const created = await service.createNotification({
        user_id: "renter-1",
        type: "booking_confirmation",
        title: "Booking Confirmed",
        message: "Your booking for Model 3 has been confirmed.",
        data: { booking_id: 7 },
      });
      await seen(received, 1, "no notification");
      assert.deepEqual(
        [received[0].id, received[0].type, received[0].title, received[0].data],
        [created.id, "booking_confirmation", "Booking Confirmed", { booking_id: 7 }],
      );
      const reply = await page.markRead(created.id);
      assert.deepEqual(reply.data.ids, [created.id]);
      // The service's markAsRead (another tab, or the backend) is heard by the page too.
      const second = await service.createNotification({ user_id: "renter-1", title: "Pick-up today" });
      await seen(received, 2, "no second notification");
      const read = await service.markAsRead(second.id, "renter-1");
      assert.notEqual(read.readAt, null);
      await seen(reads, 1, "no notification_read");
      assert.deepEqual(reads.at(-1), { ids: [second.id], unread: 0 });
      await assert.rejects(service.markAsRead("no-such-id", "renter-1"), /Notification not found/);
    } finally {
      await page.close();
    }
  });

  test("guide 002: librarians by role, connected or never connected, hear of a check-in", async () => {
    const urls = writeApp(join(work.dir, "clms"), [
      ...guideFiles("002-library.md"),
      {
        lang: "js",
        path: "src/services/activities.js",
        code: `let n = 0;
        export async function createActivity(studentId, activityType, equipmentId) {
          n += 1;
          return { id: "act-" + n, studentId, activityType, equipmentId, startTime: new Date().toISOString(),
                   student: { name: "Grace" }, equipment: equipmentId ? { name: "PC " + equipmentId } : null };
        }`,
      },
    ]);
    const { syncStaff } = await import(urls["src/services/staffDirectory.js"]);
    const { checkInStudent } = await import(urls["src/services/activityService.js"]);
    const { useRealTimeActivities } = await import(urls["src/hooks/useRealTimeActivities.js"]);
    await syncStaff([
      { id: "lib-desk", name: "Ada", email: "ada@library.example", role: "LIBRARIAN" },
      { id: "lib-away", name: "Bea", email: "bea@library.example", role: "LIBRARIAN" },
      { id: "admin-1", name: "Cy", email: "cy@library.example", role: "ADMIN" },
    ]);

    const states = [];
    let wake = () => {};
    function Dashboard() {
      // The desk librarian's token carries no role: the directory's is enough.
      states.push(useRealTimeActivities(token("lib-desk")));
      wake();
      return null;
    }
    const until = (predicate, what) =>
      within(
        new Promise((resolve) => {
          wake = () => states.length && predicate(states.at(-1)) && resolve(states.at(-1));
          wake();
        }),
        TIMEOUT,
        what,
      );
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(createElement(Dashboard));
    });
    try {
      await until((s) => s.isConnected, "the dashboard never connected");
      // Subscribed once the server has the subscription: wait for it through the stats.
      await within(
        (async () => {
          for (;;) {
            const stats = await (await fetch(`${server.url}/api/stats`, { headers: { Authorization: `Bearer ${API_KEY}` } })).json();
            if ((stats.channelCounts.activities ?? 0) > 0) return;
            await new Promise((resolve) => setImmediate(resolve));
          }
        })(),
        TIMEOUT,
        "never subscribed to activities",
      );
      await checkInStudent("stu-1", "12");
      const state = await until(
        (s) => s.activities.length === 1 && s.notifications.length === 1,
        "no activity_update and notification on the dashboard",
      );
      assert.deepEqual(
        [state.activities[0].studentName, state.activities[0].activityType, state.activities[0].equipmentName],
        ["Grace", "CHECK_IN", "PC 12"],
      );
      assert.deepEqual(
        [state.notifications[0].title, state.notifications[0].message, state.notifications[0].priority],
        ["Student Check-in", "Grace checked in with PC 12", "LOW"],
      );
    } finally {
      await act(async () => renderer.unmount());
    }
    // The librarian who never connected finds it on their first connection; the admin does not.
    const { Client } = await import("tidings");
    for (const [user, expected] of [["lib-away", 1], ["admin-1", 0]]) {
      const client = new Client(`ws://127.0.0.1:${server.port}/ws`, token(user));
      const notified = expected ? next(client, "notification") : null;
      await within(client.connect(), TIMEOUT, "connect");
      try {
        assert.equal(client.welcome.unreadCount, expected);
        if (notified) assert.equal((await notified).data.title, "Student Check-in");
      } finally {
        await client.close();
      }
    }
  });

  test("guide 004: members see each other join, type and post, with names and pictures", async () => {
    const urls = writeApp(join(work.dir, "velonx"), guideFiles("004-community-chat.md"));
    const { syncUser, createRoom } = await import(urls["src/lib/services/community.service.js"]);
    const { connectCommunity, sendTyping, sendMessage } = await import(urls["src/lib/community/socket.ts"]);
    const john = { id: "user-123", name: "John Doe", image: "https://example.com/avatar.jpg", email: "john@example.com" };
    const jane = { id: "user-456", name: "Jane Roe", image: "https://example.com/jane.jpg", email: "jane@example.com" };
    await syncUser(john);
    await syncUser(jane);
    await createRoom("room-456", "General", [john.id, jane.id]);

    const seen = [];
    let wake = () => {};
    const arrival = (type) =>
      within(
        new Promise((resolve) => {
          wake = () => {
            const found = seen.find((m) => m.type === type);
            if (found) resolve(found);
          };
          wake();
        }),
        TIMEOUT,
        `no ${type}`,
      );
    const janeToken = token(jane.id);
    const johnToken = token(john.id);
    const janes = connectCommunity(janeToken, "room-456", (m) => (seen.push(m), wake()));
    await janes.ready;
    const johns = connectCommunity(johnToken, "room-456", () => {});
    try {
      const joined = await arrival("USER_JOINED");
      await johns.ready;
      assert.deepEqual(joined.data, { userId: john.id, userName: "John Doe", userImage: john.image, roomId: "room-456" });
      sendTyping(johns.ws, john, "room-456", true);
      const typing = await arrival("TYPING");
      assert.deepEqual([typing.data.userId, typing.data.roomId, typing.data.isTyping], [john.id, "room-456", true]);
      const posted = await sendMessage(johnToken, "Hello, world!", "room-456");
      const chat = await arrival("CHAT_MESSAGE");
      assert.deepEqual(
        [chat.data.id, chat.data.content, chat.data.authorId, chat.data.authorName, chat.data.authorImage],
        [posted.id, "Hello, world!", john.id, "John Doe", john.image],
      );
    } finally {
      await johns.ws.close();
      await janes.ws.close();
    }
  });
});
