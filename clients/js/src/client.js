// The client: what an application calls (subscribe, publish, the inbox requests, events
// by callback or async iteration) and the handling of what the server sends: replies,
// publications with their stream positions, and notifications (deduplicated, acked,
// counted into unreadCount).

import { Connection } from "./connection.js";
import { ConnectionLost, QueueFull } from "./errors.js";
import { clientError, isInt, report } from "./wire.js";

// Inbox messages that carry the server's unread count (replies and other tabs' events).
const COUNTED = new Set([
  "notification_read",
  "notification_archived",
  "notification_unarchived",
  "notification_deleted",
  "notifications",
]);
const DEDUP_SIZE = 10000;

/**
 * A reconnecting tidings client. See types/index.d.ts for the options and docs/clients.md.
 */
export class Client extends Connection {
  /** The channels this client keeps subscribed, with their filters. */
  get subscriptions() {
    return Object.fromEntries(this._subscriptions);
  }

  /** Per channel, the last stream position seen: {offset, epoch}. Save it to resume later. */
  get positions() {
    const out = {};
    for (const [channel, pos] of this._positions) out[channel] = { ...pos };
    return out;
  }

  /** Messages waiting for a connection. */
  get queued() {
    return this._outbox.length;
  }

  /**
   * Call callback(msg) for every message of type `type` ("*": all, synthetic ones too).
   * Returns a function that removes the callback.
   */
  on(type, callback) {
    if (!this._callbacks.has(type)) this._callbacks.set(type, []);
    this._callbacks.get(type).push(callback);
    return () => {
      const list = this._callbacks.get(type) ?? [];
      const index = list.indexOf(callback);
      if (index >= 0) list.splice(index, 1);
    };
  }

  /** Every server message (not replies to requests) until the client is closed for good. */
  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this._events.length > 0) return Promise.resolve({ value: this._events.shift(), done: false });
        if (this._closed !== null) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this._readers.push(resolve));
      },
      return: () => Promise.resolve({ value: undefined, done: true }),
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /**
   * Subscribe (or replace the filter); resolves with the `subscribed` data. The channel
   * is subscribed again after every reconnection, from its last position when the
   * channel keeps history. `options.since` ({offset, epoch}) recovers from a saved point.
   */
  async subscribe(channel, filters = null, options = {}) {
    const msg = { type: "subscribe", channel };
    if (filters !== null && filters !== undefined) msg.filters = { ...filters };
    if (options.since) this._positions.set(channel, { ...options.since });
    const reply = await this.request(msg, channel);
    this._subscriptions.set(channel, filters ? { ...filters } : null);
    return reply.data ?? {};
  }

  /** Stop receiving a channel, now and after reconnections. */
  async unsubscribe(channel) {
    this._subscriptions.delete(channel);
    this._positions.delete(channel);
    if (this._live === null) return;
    try {
      await this._requestOnce({ type: "unsubscribe", channel });
    } catch (error) {
      if (!(error instanceof ConnectionLost)) throw error;
    }
  }

  /** Publish into a channel whose namespace allows client publishing; resolves with `published` data. */
  async publish(channel, event, data = null) {
    const reply = await this.request({ type: "publish", channel, event, data });
    return reply.data ?? {};
  }

  /** Mark notifications read: markRead(ids), or markRead(null, true) / markRead({all: true}) for all. */
  async markRead(ids = null, all = false) {
    if (ids !== null && typeof ids === "object" && !Array.isArray(ids)) {
      all = Boolean(ids.all);
      ids = ids.ids ?? null;
    }
    const msg = { type: "mark_read" };
    if (all) msg.all = true;
    else msg.notificationIds = [...(ids ?? [])];
    const reply = await this.request(msg);
    return reply.data ?? {};
  }

  /** Archive notifications (kept, but out of the list and the count): {ids, unreadCount}. */
  async archive(ids) {
    const reply = await this.request({ type: "archive", notificationIds: [...ids] });
    return reply.data ?? {};
  }

  /** Bring archived notifications back into the inbox (read state kept): {ids, unreadCount}. */
  async unarchive(ids) {
    const reply = await this.request({ type: "unarchive", notificationIds: [...ids] });
    return reply.data ?? {};
  }

  /** Delete notifications for good: {ids, unreadCount}. */
  async delete(ids) {
    const reply = await this.request({ type: "delete", notificationIds: [...ids] });
    return reply.data ?? {};
  }

  /** A page of the inbox (or, with `archived: true`, of the archived ones), newest first: {items, unreadCount, nextCursor}. */
  async getNotifications(options = {}) {
    const data = {};
    if (options.unreadOnly !== undefined) data.unreadOnly = options.unreadOnly;
    if (options.archived) data.archived = true;
    if (options.limit !== undefined) data.limit = options.limit;
    if (options.cursor !== undefined && options.cursor !== null) data.cursor = options.cursor;
    const reply = await this.request({ type: "get_notifications", data });
    return reply.data ?? {};
  }

  /** The token the client would connect with now (it calls the token function). */
  getToken() {
    return this._tokenValue();
  }

  /** Round trip to the server; resolves with the pong message. */
  ping() {
    return this.request({ type: "ping" });
  }

  /**
   * Send a message with a fresh id and resolve with the reply naming it. Waits for a
   * connection if offline and sends again if the connection drops before the reply (so
   * use it for idempotent requests). Rejects with ClientError on an `error` reply.
   */
  async request(msg, _channel = null) {
    for (;;) {
      try {
        return await this._requestOnce(msg, _channel);
      } catch (error) {
        if (!(error instanceof ConnectionLost)) throw error;
      }
    }
  }

  /**
   * Send a message now, or queue it (in order) for the next connection. Throws QueueFull
   * when offline with queueLimit messages queued, ClientClosed once closed for good.
   */
  send(msg) {
    if (this._closed !== null) throw this._closed;
    const message = { ...msg };
    if (this._live !== null && this._live.send(message)) return;
    if (this._outbox.length >= this._queueLimit) {
      throw new QueueFull(`${this._outbox.length} messages already queued`);
    }
    this._outbox.push(message);
  }

  async _requestOnce(msg, channel = null) {
    const transport = await this._waitConnected();
    const id = this._nextId();
    const out = { ...msg, id };
    if (channel !== null) {
      // A subscribe: from the channel's last position, when it has one.
      const position = this._resume ? this._positions.get(channel) : undefined;
      if (position) out.since = { ...position };
    }
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject, channel });
      if (!transport.send(out)) {
        this._pending.delete(id);
        reject(new ConnectionLost());
      }
    });
  }

  _handle(transport, msg) {
    if (this._transport !== transport) return;
    const replyTo = msg.replyTo;
    if (typeof replyTo === "string" && !this._pending.has(replyTo) && /^tc-\d+$/.test(replyTo)) {
      return; // a reply to a request already given up (retried, or a dropped ping or ack)
    }
    if (COUNTED.has(msg.type) && msg.channel === undefined && isInt(msg.data?.unreadCount)) {
      this._setUnread(msg.data.unreadCount); // the server's count, from any tab
    }
    if (typeof replyTo === "string" && this._pending.has(replyTo)) {
      const p = this._pending.get(replyTo);
      this._pending.delete(replyTo);
      const isError = msg.type === "error";
      if (p.channel !== null && !isError) this._positionFromSubscribed(p.channel, msg.data ?? {});
      if (p.resolve !== null) {
        if (isError) p.reject(clientError(msg));
        else p.resolve(msg);
        return;
      }
      if (p.channel !== null && isError) this._subscriptions.delete(p.channel); // refused now
      if (isError) this._emit(msg); // the application should hear of it
      else if (p.channel !== null) this._emit({ type: "_resubscribed", channel: p.channel, data: msg.data ?? {} });
      return;
    }
    if (msg.type === "welcome" && transport.kind === "sse" && msg.channel === undefined) {
      // SSE: the stream came back as a new session (the server did not resume it).
      this._live = null;
      this._failPending(new ConnectionLost());
      this._welcomed(transport, msg);
      return;
    }
    if (msg.type === "notification" && msg.channel === undefined) {
      // An inbox notification. One published into a channel by a client is not: its
      // seq must not move lastSeq (that would skip real notifications on resume).
      this._notification(transport, msg);
      return;
    }
    if (typeof msg.channel === "string" && isInt(msg.offset)) {
      const known = this._positions.get(msg.channel);
      if (known && known.epoch === msg.epoch && msg.offset <= known.offset) {
        this.duplicates += 1; // already delivered before the reconnection
        return;
      }
      this._positions.set(msg.channel, { offset: msg.offset, epoch: msg.epoch });
    }
    this._emit(msg);
  }

  _positionFromSubscribed(channel, data) {
    // When recovered, the replayed publications that follow carry the positions; else
    // the subscription starts at the stream's top.
    if (data.recovered !== true && isInt(data.offset) && data.epoch !== undefined) {
      this._positions.set(channel, { offset: data.offset, epoch: data.epoch });
    }
  }

  _notification(transport, msg) {
    const nid = msg.id;
    const seq = msg.data && typeof msg.data === "object" ? msg.data.seq : undefined;
    if (isInt(seq)) this.lastSeq = this.lastSeq === null ? seq : Math.max(this.lastSeq, seq);
    if (typeof nid === "string") {
      if (this._seen.has(nid)) {
        this._seen.delete(nid);
        this._seen.set(nid, null);
        this.duplicates += 1;
        this._sendAck(transport, nid); // the server may not have our first ack
        return;
      }
      this._seen.set(nid, null);
      if (this._seen.size > DEDUP_SIZE) this._seen.delete(this._seen.keys().next().value);
    }
    const data = msg.data ?? {};
    // A catch-up (recovered) or a redelivery is in the welcome's count already; a live
    // one is new since.
    if (this.unreadCount !== null && !data.recovered && !data.redelivered && !data.readAt) {
      this._setUnread(this.unreadCount + 1, false);
    }
    this._emit(msg);
    if (typeof nid === "string") this._sendAck(transport, nid);
  }

  /** exact: the server's own count (emitted even when unchanged), else counted here. */
  _setUnread(count, exact = true) {
    if (!exact && count === this.unreadCount) return;
    this.unreadCount = count;
    this._emit({ type: "_unread", unreadCount: count, exact });
  }

  _sendAck(transport, nid) {
    if (!this._ack) return;
    const id = this._nextId();
    this._pending.set(id, { resolve: null, reject: null, channel: null });
    transport.send({ type: "ack", notificationId: nid, id });
  }

  _emit(msg) {
    for (const kind of [msg.type, "*"]) {
      if (typeof kind !== "string") continue;
      for (const callback of [...(this._callbacks.get(kind) ?? [])]) {
        try {
          const result = callback(msg);
          if (result && typeof result.then === "function") result.then(undefined, report);
        } catch (error) {
          report(error);
        }
      }
    }
    if (this._readers.length > 0) {
      this._readers.shift()({ value: msg, done: false });
      return;
    }
    if (this._eventBuffer === 0) return;
    if (this._events.length >= this._eventBuffer) {
      this._events.shift();
      this.dropped += 1;
    }
    this._events.push(msg);
  }
}

/** Create a client and open its first connection (resolves once welcomed). */
export async function connect(url, token, options = {}) {
  const client = new Client(url, token, options);
  await client.connect();
  return client;
}
