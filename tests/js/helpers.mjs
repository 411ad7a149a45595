// Shared helpers for the Node tests of tidings.js: real `tidings serve` processes on
// ephemeral ports, HS256 tokens, the HTTP API, and waits bounded by one timeout unit.
// tests/test_js_client.py runs these files with TIDINGS_PYTHON, TIDINGS_TEST_SECRET and
// TIDINGS_TEST_API_KEY in the environment.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export const PYTHON = process.env.TIDINGS_PYTHON ?? "python3";
export const SECRET = process.env.TIDINGS_TEST_SECRET ?? "test-secret-0123456789-abcdefghijklmnop";
export const API_KEY = process.env.TIDINGS_TEST_API_KEY ?? "test-api-key-0123456789";
// One timeout unit (a bound on waiting, never a delay), scaled like the Python tests'.
export const TIMEOUT = 10000 * Number(process.env.TIDINGS_TEST_TIMEOUT_SCALE ?? "1");

export const CONFIG = `
[namespaces.chat]
publish = true

[namespaces.news]
history_size = 100
history_ttl = 600
`;

const b64url = (value) => Buffer.from(value).toString("base64url");

/** An HS256 JWT for `user`, signed with the test secret. */
export function token(user = "alice", { roles = [], ttl = 3600, secret = SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: user, userId: user, iat: now, roles };
  if (ttl !== null) claims.exp = now + ttl;
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" })) + "." + b64url(JSON.stringify(claims));
  return head + "." + createHmac("sha256", secret).update(head).digest("base64url");
}

/** A temporary folder (for the store file and the config), removed by cleanup(). */
export function workdir() {
  const dir = mkdtempSync(join(tmpdir(), "tidings-js-"));
  writeFileSync(join(dir, "tidings.toml"), CONFIG);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * `python -m tidings serve` on `port` (0: any free port). Resolves once it printed its
 * listening line. The store is a SQLite file in `dir`, so a restart keeps the inbox.
 */
export async function startServer({ dir, port = 0, extraArgs = [] }) {
  const child = spawn(
    PYTHON,
    ["-m", "tidings", "serve", "--port", String(port), "--host", "127.0.0.1", "--config", join(dir, "tidings.toml"), ...extraArgs],
    {
      env: {
        PATH: process.env.PATH ?? "/usr/bin",
        TIDINGS_JWT_SECRET: SECRET,
        TIDINGS_API_KEYS: API_KEY,
        TIDINGS_STORE_URL: join(dir, "tidings.db"),
      },
      // The server's log is noise in the test report; TIDINGS_JS_SERVER_LOGS=1 shows it.
      stdio: ["ignore", "pipe", process.env.TIDINGS_JS_SERVER_LOGS ? "inherit" : "ignore"],
    },
  );
  const exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  // A failed or force-exited test run must not leave servers behind.
  const reap = () => child.exitCode === null && child.kill("SIGKILL");
  process.once("exit", reap);
  exited.then(() => process.off("exit", reap));
  const lines = createInterface({ input: child.stdout });
  const first = await within(
    new Promise((resolve, reject) => {
      lines.once("line", resolve);
      exited.then((code) => reject(new Error(`tidings exited with ${code} before listening`)));
    }),
    3 * TIMEOUT,
    "the server did not start",
  );
  const match = /^tidings listening on (http:\/\/[^\s]+):(\d+)$/.exec(first);
  if (!match) throw new Error(`unexpected first line: ${first}`);
  const actualPort = Number(match[2]);
  const url = `http://127.0.0.1:${actualPort}`;
  return {
    port: actualPort,
    url,
    wsUrl: `ws://127.0.0.1:${actualPort}/ws`,
    /** Send a signal (SIGSTOP freezes the server: its sockets stay open, silent). */
    signal(name) {
      child.kill(name);
    },
    /** SIGTERM (a graceful shutdown: WebSockets closed 1001) and wait for the exit. */
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await within(exited, 3 * TIMEOUT, "the server did not stop");
    },
  };
}

/** Call the HTTP API with the test key; resolves with [status, body]. */
export async function api(server, method, path, body = undefined) {
  const response = await fetch(server.url + path, {
    method,
    headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return [response.status, text ? JSON.parse(text) : null];
}

/** `promise`, or a rejection naming `what` after `ms`. */
export function within(promise, ms = TIMEOUT, what = "timed out") {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} (after ${ms} ms)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The next message of `type` the client emits for which `accept(msg)` holds. */
export function next(client, type, accept = () => true) {
  return within(
    new Promise((resolve) => {
      const off = client.on(type, (msg) => {
        if (accept(msg)) {
          off();
          resolve(msg);
        }
      });
    }),
    TIMEOUT,
    `no ${type} message`,
  );
}

/** A gate: a promise the test opens; `wait()` resolves once it is open. */
export function gate() {
  let open;
  let opened = new Promise((resolve) => (open = resolve));
  return {
    wait: () => opened,
    open: () => open(),
    close: () => {
      opened = new Promise((resolve) => (open = resolve));
    },
  };
}
