// The Node server SDK: what a backend calls (with a server API key) to reach its users
// through tidings. The same methods as the Python SDK (tidings-sdk), on Node 20's fetch.
//
// Retries never do a thing twice: a call is sent again only when it cannot have reached
// the server (connection refused, 429, 503), or when repeating it is harmless (reads,
// replacements, and a notification create, which carries one Idempotency-Key across
// its tries so the server answers a repeat with the first result).

import { randomUUID } from "node:crypto";

import { retryAfterSeconds } from "./wire.js";

export { retryAfterSeconds };

const PRIORITIES = ["LOW", "MEDIUM", "HIGH", "CRITICAL"];
const PRIORITY_ALIASES = { NORMAL: "MEDIUM", URGENT: "CRITICAL" };
// A notification's own fields, by every spelling accepted (guide 001 writes snake_case).
const FIELDS = {
  type: "type",
  title: "title",
  message: "message",
  priority: "priority",
  category: "category",
  actions: "actions",
  expiresAt: "expiresAt",
  expires_at: "expiresAt",
};
const TARGETS = { userId: "userId", user_id: "userId", userIds: "userIds", user_ids: "userIds", role: "role", all: "all" };

/** An answer of the server that is an error: `status`, `code` (e.g. VALIDATION_ERROR). */
export class TidingsError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(`${status} ${code}: ${message}`);
    this.name = "TidingsError";
    this.status = status;
    this.code = code;
    this.detail = message;
    this.retryAfter = retryAfter;
  }
}

/** No answer: `maybeSent` says whether the request may have reached the server. */
export class TransportError extends Error {
  constructor(message, { maybeSent, cause } = {}) {
    super(message, { cause });
    this.name = "TransportError";
    this.maybeSent = Boolean(maybeSent);
  }
}

/** `high`, `High` → `HIGH`; `normal` → `MEDIUM`; `urgent` → `CRITICAL`. */
export function priority(value) {
  if (typeof value !== "string") throw new TypeError("priority must be a string");
  const name = PRIORITY_ALIASES[value.trim().toUpperCase()] ?? value.trim().toUpperCase();
  if (!PRIORITIES.includes(name)) {
    throw new RangeError(`priority must be one of low, medium, high, critical (got ${JSON.stringify(value)})`);
  }
  return name;
}

/**
 * A POST /api/notifications body from a backend's own notification object: the known
 * fields mapped (either spelling), targets (`user_id`, `userId`, ...) taken out, and
 * every other key kept in `data`, where the client receives it unchanged.
 */
export function notificationBody(payload) {
  const body = {};
  const rest = {};
  for (const [key, value] of Object.entries(payload)) {
    if (key in TARGETS) {
      if (value !== undefined) body[TARGETS[key]] = value;
      continue;
    }
    const field = FIELDS[key];
    if (field === undefined) {
      if (key !== "data") rest[key] = value;
      continue;
    }
    if (field in body) throw new RangeError(`${field} is given twice`);
    body[field] = field === "priority" ? priority(value) : value instanceof Date ? value.toISOString() : value;
  }
  let data = payload.data;
  if (Object.keys(rest).length > 0) {
    if (data === undefined || data === null) data = rest;
    else if (typeof data === "object" && !Array.isArray(data)) {
      const both = Object.keys(rest).filter((k) => k in data);
      if (both.length) throw new RangeError(`${both.join(", ")} are both in data and beside it`);
      data = { ...data, ...rest };
    } else throw new RangeError("data is not an object, so the other keys cannot join it");
  }
  if (data !== undefined) body.data = data;
  return body;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const enc = encodeURIComponent;

/**
 * A client of one tidings server's HTTP API.
 *
 * @param {object} options
 * @param {string} options.url the server, e.g. http://127.0.0.1:8000
 * @param {string} options.apiKey a server API key
 * @param {number} [options.timeoutMs=10000] per try
 * @param {number} [options.retries=3] retries after the first try, where safe
 * @param {number} [options.backoffMs=250] first retry's delay ceiling (doubled, full jitter)
 */
export class TidingsServer {
  constructor({ url, apiKey, timeoutMs = 10000, retries = 3, backoffMs = 250, maxBackoffMs = 5000, fetch: fetchImpl } = {}) {
    if (!url) throw new TypeError("url is required");
    this.url = url.replace(/\/+$/, "");
    this.apiKey = apiKey;
    this.timeoutMs = timeoutMs;
    this.retries = retries;
    this.backoffMs = backoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this._fetch = fetchImpl ?? globalThis.fetch;
  }

  /** The member and /api/me routes, called with a user's own JWT. */
  asUser(token) {
    return new UserApi(this, token);
  }

  async _call(method, path, { body, repeatable = false, token = null, headers = {} } = {}) {
    const auth = token ?? this.apiKey;
    const init = {
      method,
      headers: { ...headers, ...(auth ? { Authorization: `Bearer ${auth}` } : {}) },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await this._fetch(this.url + path, { ...init, signal: AbortSignal.timeout(this.timeoutMs) });
      } catch (error) {
        // Refused before connecting: nothing was sent. Anything else may have arrived.
        const code = error?.cause?.code;
        const maybeSent = !(code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN");
        if (attempt < this.retries && (!maybeSent || repeatable)) {
          await sleep(this._delay(attempt));
          continue;
        }
        throw new TransportError(`${method} ${path}: ${error?.cause?.message ?? error.message}`, { maybeSent, cause: error });
      }
      const text = await response.text();
      if (response.ok) return text ? JSON.parse(text) : null;
      let parsed = null;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        // A proxy's HTML error page: the status says enough.
      }
      const retryAfter = retryAfterSeconds(response.headers.get("Retry-After"));
      const nothingDone = response.status === 429 || response.status === 503;
      const ambiguous = response.status === 502 || response.status === 504;
      // Never sooner than the server asked; a longer wait than maxBackoffMs is the
      // caller's to schedule (the error carries retryAfter).
      const tooLong = retryAfter !== null && retryAfter * 1000 > this.maxBackoffMs;
      if (attempt < this.retries && !tooLong && (nothingDone || (ambiguous && repeatable))) {
        await sleep(retryAfter !== null ? retryAfter * 1000 : this._delay(attempt));
        continue;
      }
      const error = parsed?.error ?? {};
      throw new TidingsError(response.status, error.code ?? "ERROR", error.message ?? text, retryAfter);
    }
  }

  _delay(attempt) {
    return Math.random() * Math.min(this.backoffMs * 2 ** attempt, this.maxBackoffMs);
  }

  // --- live sends -------------------------------------------------------------------------

  /** Publish to a channel's subscribers: `{id, delivered}`. Never retried once it may have arrived. */
  publish(channel, data = null, { type = "message" } = {}) {
    return this._call("POST", "/api/publish", { body: { channel, type, data } });
  }

  /**
   * Send to every connection of one user. Guide 001's `sendToUser(userId, {type, ...})`
   * works as is: a `type` inside the message is the message type, the rest its data.
   */
  sendToUser(userId, data = null, { type } = {}) {
    return this._call("POST", `/api/users/${enc(userId)}/send`, { body: sendBody(data, type) });
  }

  sendToRole(role, data = null, { type } = {}) {
    return this._call("POST", `/api/roles/${enc(role)}/send`, { body: sendBody(data, type) });
  }

  broadcast(data = null, { type, excludeUserId } = {}) {
    const body = sendBody(data, type);
    if (excludeUserId !== undefined) body.excludeUserId = excludeUserId;
    return this._call("POST", "/api/broadcast", { body });
  }

  // --- stored notifications ---------------------------------------------------------------

  /**
   * Create a stored notification. Takes the API's body or guide 001's
   * `{user_id, type, title, message, data}`; other keys go into `data`. One
   * Idempotency-Key (yours, or a fresh one) covers every retry, so it is created once.
   */
  createNotification(notification, { idempotencyKey = randomUUID() } = {}) {
    return this._call("POST", "/api/notifications", {
      body: notificationBody(notification),
      repeatable: true,
      headers: { "Idempotency-Key": idempotencyKey },
    });
  }

  /**
   * Create many stored notifications in one request and one transaction
   * (`POST /api/notifications/batch`, at most 1,000). Each item is what
   * `createNotification` takes, plus its own `idempotencyKey` (a fresh one when
   * absent), so a retry of the whole batch replays what was stored. Resolves to
   * `{results}`: one `{status, notifications, replayed, skipped, error}` per item, in
   * order; an invalid item fails alone (its `status` says why).
   */
  createNotifications(notifications) {
    const items = [...notifications].map(({ idempotencyKey, ...notification }) => ({
      ...notificationBody(notification),
      idempotencyKey: idempotencyKey ?? randomUUID(),
    }));
    return this._call("POST", "/api/notifications/batch", {
      body: { notifications: items },
      repeatable: true,
    });
  }

  /** Guide 003's `send_notification(user_id, payload)`: the payload's shape is kept. */
  sendNotification(userId, payload, options) {
    return this.createNotification({ ...payload, userId }, options);
  }

  listNotifications(userId, { unreadOnly = false, limit = 20, cursor, archived = false } = {}) {
    const query = new URLSearchParams({ unreadOnly: String(unreadOnly), limit: String(limit) });
    if (archived) query.set("archived", "true");
    if (cursor) query.set("cursor", cursor);
    return this._call("GET", `/api/users/${enc(userId)}/notifications?${query}`, { repeatable: true });
  }

  getNotification(userId, id) {
    return this._call("GET", `/api/users/${enc(userId)}/notifications/${enc(id)}`, { repeatable: true });
  }

  markRead(userId, ids) {
    return this._call("POST", `/api/users/${enc(userId)}/notifications/read`, { body: { ids: [...ids] }, repeatable: true });
  }

  markAllRead(userId) {
    return this._call("POST", `/api/users/${enc(userId)}/notifications/read`, { body: { all: true }, repeatable: true });
  }

  archiveNotifications(userId, ids) {
    return this._call("POST", `/api/users/${enc(userId)}/notifications/archive`, { body: { ids: [...ids] }, repeatable: true });
  }

  unarchiveNotifications(userId, ids) {
    return this._call("POST", `/api/users/${enc(userId)}/notifications/unarchive`, { body: { ids: [...ids] }, repeatable: true });
  }

  deleteNotification(userId, id) {
    return this._call("DELETE", `/api/users/${enc(userId)}/notifications/${enc(id)}`, { repeatable: true });
  }

  async getPreferences(userId) {
    return (await this._call("GET", `/api/users/${enc(userId)}/preferences`, { repeatable: true })).inApp;
  }

  async setPreferences(userId, inApp) {
    return (await this._call("PUT", `/api/users/${enc(userId)}/preferences`, { body: { inApp }, repeatable: true })).inApp;
  }

  // --- the user directory -----------------------------------------------------------------

  putUser(userId, user) {
    return this._call("PUT", `/api/users/${enc(userId)}`, { body: user, repeatable: true });
  }

  getUser(userId) {
    return this._call("GET", `/api/users/${enc(userId)}`, { repeatable: true });
  }

  importUsers(users) {
    return this._call("POST", "/api/users/import", { body: { users }, repeatable: true });
  }

  deleteUser(userId) {
    return this._call("DELETE", `/api/users/${enc(userId)}`, { repeatable: true });
  }

  // --- rooms ------------------------------------------------------------------------------

  createRoom(roomId, { name, wsPost = true } = {}) {
    return this._call("POST", "/api/rooms", { body: { id: roomId, name: name ?? null, wsPost } });
  }

  getRoom(roomId) {
    return this._call("GET", `/api/rooms/${enc(roomId)}`, { repeatable: true });
  }

  deleteRoom(roomId) {
    return this._call("DELETE", `/api/rooms/${enc(roomId)}`);
  }

  setMembers(roomId, userIds, { role = "member" } = {}) {
    return this._call("PUT", `/api/rooms/${enc(roomId)}/members`, { body: { userIds: [...userIds], role }, repeatable: true });
  }

  async listMembers(roomId) {
    return (await this._call("GET", `/api/rooms/${enc(roomId)}/members`, { repeatable: true })).members;
  }

  removeMember(roomId, userId) {
    return this._call("DELETE", `/api/rooms/${enc(roomId)}/members/${enc(userId)}`);
  }

  // --- connections and status -------------------------------------------------------------

  async connections(userId) {
    return (await this._call("GET", `/api/users/${enc(userId)}/connections`, { repeatable: true })).connections;
  }

  async disconnect(userId, { code = 4010, reason = "disconnected by the server", clientId } = {}) {
    const body = { code, reason, ...(clientId ? { clientId } : {}) };
    return (await this._call("POST", `/api/users/${enc(userId)}/disconnect`, { body, repeatable: true })).disconnected;
  }

  async unsubscribe(userId, channel) {
    return (await this._call("POST", `/api/users/${enc(userId)}/unsubscribe`, { body: { channel }, repeatable: true })).unsubscribed;
  }

  stats({ cluster = false } = {}) {
    return this._call("GET", `/api/stats${cluster ? "?scope=cluster" : ""}`, { repeatable: true });
  }

  health() {
    return this._call("GET", "/health", { repeatable: true, token: "" });
  }
}

function sendBody(data, type) {
  if (type === undefined && data && typeof data === "object" && !Array.isArray(data) && typeof data.type === "string") {
    const { type: inner, ...rest } = data;
    return { type: inner, data: rest };
  }
  return { type: type ?? "message", data };
}

/** The routes a user calls with their own JWT: their inbox, preferences, rooms. */
export class UserApi {
  constructor(server, token) {
    this._server = server;
    this._token = token;
  }

  _call(method, path, options = {}) {
    return this._server._call(method, path, { ...options, token: this._token });
  }

  listNotifications({ unreadOnly = false, limit = 20, cursor, archived = false } = {}) {
    const query = new URLSearchParams({ unreadOnly: String(unreadOnly), limit: String(limit) });
    if (archived) query.set("archived", "true");
    if (cursor) query.set("cursor", cursor);
    return this._call("GET", `/api/me/notifications?${query}`, { repeatable: true });
  }

  markRead(ids) {
    return this._call("POST", "/api/me/notifications/read", { body: { ids: [...ids] }, repeatable: true });
  }

  markAllRead() {
    return this._call("POST", "/api/me/notifications/read", { body: { all: true }, repeatable: true });
  }

  postMessage(roomId, content) {
    return this._call("POST", `/api/rooms/${enc(roomId)}/messages`, { body: { content } });
  }

  listMessages(roomId, { limit = 50, beforeSeq } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (beforeSeq !== undefined) query.set("beforeSeq", String(beforeSeq));
    return this._call("GET", `/api/rooms/${enc(roomId)}/messages?${query}`, { repeatable: true });
  }

  async rooms() {
    return (await this._call("GET", "/api/me/rooms", { repeatable: true })).rooms;
  }
}
