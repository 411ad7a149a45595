// The connection half of the client: options, connecting (WebSocket, falling back to
// SSE), the welcome, keepalive pings, reconnection with backoff, and closing for good.
// Client (client.js) extends it with the requests and the handling of what arrives; it
// provides _handle(transport, msg), _emit(event) and _setUnread(count).

import { ABNORMAL_CLOSURE, CLIENT_CLOSED, shouldReconnect } from "./close-codes.js";
import { ClientClosed, ConnectionLost, Unreachable } from "./errors.js";
import { SseTransport } from "./sse.js";
import { PROTOCOL_VERSION, VERSION } from "./version.js";
import { WebSocketTransport } from "./websocket.js";
import { isInt, sseUrlFor, withQuery } from "./wire.js";

export class Connection {
  constructor(url, token, options = {}) {
    const o = options;
    const num = (value, fallback) => (value === undefined ? fallback : value);
    this.url = url;
    this._token = token;
    this._reconnect = num(o.reconnect, true);
    this._backoffInitial = num(o.backoffInitial, 0.5);
    this._backoffMax = num(o.backoffMax, 30);
    this._queueLimit = num(o.queueLimit, 1000);
    this._ack = num(o.ack, false);
    this._resume = num(o.resume, true);
    this._eventBuffer = num(o.eventBuffer, 10000);
    this._openTimeout = num(o.openTimeout, 10);
    this._pingInterval = num(o.pingInterval, 25);
    this._pingTimeout = num(o.pingTimeout, 10);
    this._tokenIn = num(o.tokenIn, "query");
    this._transportChoice = num(o.transport, "auto");
    this._sseUrl = o.sseUrl ?? null;
    this._sseReattach = num(o.sseReattach, 10);
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this._EventSource = o.EventSource ?? globalThis.EventSource;
    this._fetch = o.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : undefined);
    if (this._backoffInitial < 0 || this._backoffMax < 0) {
      throw new RangeError("backoffInitial and backoffMax must not be negative");
    }
    if (this._queueLimit < 0 || this._eventBuffer < 0) {
      throw new RangeError("queueLimit and eventBuffer must not be negative");
    }
    if (!["auto", "websocket", "sse"].includes(this._transportChoice)) {
      throw new RangeError('transport must be "auto", "websocket" or "sse"');
    }

    /** The data of the latest welcome message. */
    this.welcome = null;
    /** The highest notification seq seen (the inbox resume point). */
    this.lastSeq = o.lastSeq ?? null;
    /** Notifications (by id) and publications (by offset) dropped as already delivered. */
    this.duplicates = 0;
    /** Connections that reached welcome. */
    this.connections = 0;
    /** Events dropped from the iterator's buffer because nobody read them. */
    this.dropped = 0;
    this.closeCode = null;
    this.closeReason = null;
    /**
     * The user's unread notifications, as the server counts them: the welcome's count,
     * replaced by every count the server sends later (reads, archives, deletes, pages
     * in any tab), plus one for each live unread notification since. null before the
     * first welcome.
     */
    this.unreadCount = null;

    this._subscriptions = new Map();
    this._positions = new Map();
    for (const [channel, pos] of Object.entries(o.positions ?? {})) this._positions.set(channel, { ...pos });
    this._outbox = [];
    this._seen = new Map();
    this._pending = new Map();
    this._callbacks = new Map();
    this._events = [];
    this._readers = [];
    this._transport = null; // the open transport, welcomed or not
    this._live = null; // set while connected, resubscribed and flushed
    this._waiters = [];
    this._stopping = false;
    this._started = false;
    this._closed = null;
    this._counter = 0;
    this._preferSse = this._transportChoice === "sse";
    this._sseResume = null; // the lastEventId of a dropped SSE session, to resume it
    this._wake = null;
    this._onEnded = null;
    this._pingTimer = null;
  }

  /**
   * Open the first connection and wait for welcome. Fails fast: rejects with
   * ClientClosed if the server closes before welcome, or an Error if it cannot be reached.
   */
  async connect() {
    if (this._started || this._closed !== null) throw new Error("connect() may be called once");
    this._started = true;
    let opened;
    try {
      opened = await this._open();
    } catch (error) {
      const closed = error instanceof ClientClosed ? error : new ClientClosed(ABNORMAL_CLOSURE, "could not connect");
      this._finish(closed);
      throw error instanceof Unreachable ? new Error(`tidings: ${error.message}`) : error;
    }
    if (this._stopping) {
      opened.transport.close();
      throw this._closed ?? new ClientClosed(CLIENT_CLOSED, "closed by the client");
    }
    this._session(opened.transport, opened.welcome);
  }

  /** Close the connection (code 1000) and stop reconnecting; idempotent. */
  async close() {
    this._stopping = true;
    if (this._wake) this._wake();
    const transport = this._transport;
    if (transport !== null && transport.onclose !== null && this._closed === null) {
      // Wait (boundedly) for the close handshake, so the server has seen it.
      let timer;
      const ended = new Promise((resolve) => {
        this._onEnded = resolve;
        timer = setTimeout(resolve, this._openTimeout * 1000);
      });
      transport.close(CLIENT_CLOSED, "");
      await ended;
      clearTimeout(timer);
    } else if (transport !== null) {
      transport.close(CLIENT_CLOSED, "");
    }
    this._finish(new ClientClosed(CLIENT_CLOSED, "closed by the client"));
  }

  /** Whether a connection is open, welcomed, resubscribed and flushed. */
  get connected() {
    return this._live !== null;
  }

  /** "websocket" or "sse" while connected, else null. */
  get transport() {
    return this._live === null ? null : this._live.kind;
  }

  _nextId() {
    this._counter += 1;
    return `tc-${this._counter}`;
  }

  _waitConnected() {
    if (this._closed !== null) return Promise.reject(this._closed);
    if (this._live !== null) return Promise.resolve(this._live);
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  async _tokenValue() {
    const source = this._token;
    const value = typeof source === "function" ? await source() : source;
    if (typeof value !== "string") throw new TypeError("the token function must return a string");
    return value;
  }

  _params(token, withToken) {
    const params = {};
    if (withToken) params.token = token;
    if (this._resume && this.lastSeq !== null) params.lastSeq = this.lastSeq;
    if (this._ack) params.ack = 1;
    return params;
  }

  _transportOrder() {
    const hasWs = typeof this._WebSocket === "function";
    const hasSse = typeof this._EventSource === "function" && typeof this._fetch === "function";
    if (this._transportChoice === "websocket") return ["websocket"];
    if (this._transportChoice === "sse" || !hasWs) return ["sse"];
    if (this._preferSse && hasSse) return ["sse"];
    return hasSse ? ["websocket", "sse"] : ["websocket"];
  }

  /** One attempt: connect (falling back to SSE if the WebSocket never opens) and read welcome. */
  async _open() {
    const token = await this._tokenValue();
    const order = this._transportOrder();
    let failure = null;
    for (const kind of order) {
      const transport = this._makeTransport(kind, token);
      if (transport === null) {
        failure = new Unreachable(`no ${kind} implementation (pass the ${kind === "sse" ? "EventSource" : "WebSocket"} option)`);
        continue;
      }
      this._transport = transport;
      try {
        const welcome = await transport.open(this._openTimeout * 1000);
        if (kind === "sse" && order.length > 1) this._preferSse = true;
        this._sseResume = null;
        return { transport, welcome };
      } catch (error) {
        this._transport = null;
        if (!(error instanceof Unreachable)) {
          this._sseResume = null;
          throw error; // the server answered: no fallback
        }
        const advised = failure?.retryAfter ?? null; // a refusal's, kept past a failed fallback
        failure = error.retryAfter === null && advised !== null ? new Unreachable(error.message, advised) : error;
      }
    }
    throw failure ?? new Unreachable("no transport");
  }

  _makeTransport(kind, token) {
    if (kind === "websocket") {
      if (typeof this._WebSocket !== "function") return null;
      const byProtocol = this._tokenIn === "protocol";
      const url = withQuery(this.url, this._params(token, !byProtocol));
      return new WebSocketTransport(this._WebSocket, url, byProtocol ? ["tidings", `bearer.${token}`] : null);
    }
    if (typeof this._EventSource !== "function" || typeof this._fetch !== "function") return null;
    const base = this._sseUrl ?? sseUrlFor(this.url);
    const resumeFrom = this._sseResume;
    const params = this._params(token, true);
    if (resumeFrom !== null) params.lastEventId = resumeFrom;
    const streamUrl = withQuery(base, params);
    const postBase = new URL(base);
    postBase.search = "";
    return new SseTransport(
      this._EventSource,
      this._fetch,
      streamUrl,
      postBase.toString().replace(/\/$/, ""),
      token,
      this._sseReattach * 1000,
      resumeFrom,
    );
  }

  _session(transport, welcome) {
    this._transport = transport;
    transport.onstate = (live) => this._sseState(transport, live);
    // The welcome first: what followed it (a catch-up) was held by the transport and
    // comes after, so the unread count it carries is counted from.
    if (welcome !== null) this._welcomed(transport, welcome);
    transport.attach(
      (msg) => this._handle(transport, msg),
      (code, reason) => this._ended(transport, code, reason),
    );
    if (this._transport !== transport) return; // closed while attaching
    if (welcome === null) this._sseState(transport, true); // an SSE session resumed
  }

  _welcomed(transport, welcome) {
    this.connections += 1;
    this.welcome = welcome.data ?? {};
    const version = this.welcome.protocolVersion;
    if (isInt(version) && version !== PROTOCOL_VERSION && !this._versionWarned) {
      this._versionWarned = true;
      console.warn(`tidings: the server speaks protocol ${version}, this client (${VERSION}) protocol ${PROTOCOL_VERSION}`);
    }
    this._emit(welcome);
    if (isInt(this.welcome.unreadCount)) {
      this._setUnread(this.welcome.unreadCount);
      // The welcome's count is read before the catch-up, which may send a notification
      // created in between. The server reads nothing from a connection until its
      // catch-up is over, so the count in this page's reply covers everything before it.
      const id = this._nextId();
      this._pending.set(id, { resolve: null, reject: null, channel: null });
      transport.send({ type: "get_notifications", data: { limit: 1 }, id });
    }
    for (const [channel, filters] of this._subscriptions) {
      const id = this._nextId();
      const since = this._resume ? this._positions.get(channel) : undefined;
      this._pending.set(id, { resolve: null, reject: null, channel });
      const msg = { type: "subscribe", channel, id };
      if (filters !== null) msg.filters = { ...filters };
      if (since) msg.since = { ...since };
      transport.send(msg);
    }
    while (this._outbox.length > 0) {
      if (!transport.send(this._outbox[0])) break;
      this._outbox.shift();
    }
    this._setLive(transport);
    this._emit({ type: "_connected", welcome: this.welcome, transport: transport.kind });
  }

  _setLive(transport) {
    this._live = transport;
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) w.resolve(transport);
    this._schedulePing(transport);
  }

  _sseState(transport, live) {
    if (this._transport !== transport || this._closed !== null) return;
    if (!live) {
      this._live = null;
      clearTimeout(this._pingTimer);
      this._emit({ type: "_disconnected", code: ABNORMAL_CLOSURE, reason: "the event stream dropped", reconnect: true });
      return;
    }
    while (this._outbox.length > 0) {
      if (!transport.send(this._outbox[0])) break;
      this._outbox.shift();
    }
    this._setLive(transport);
    this._emit({ type: "_connected", welcome: this.welcome, transport: transport.kind, resumed: true });
  }

  _schedulePing(transport) {
    clearTimeout(this._pingTimer);
    if (!(this._pingInterval > 0)) return;
    this._pingTimer = setTimeout(async () => {
      if (this._live !== transport) return;
      const id = this._nextId();
      const answered = new Promise((resolve) => {
        this._pending.set(id, { resolve, reject: resolve, channel: null });
      });
      if (!transport.send({ type: "ping", id })) return;
      let timer;
      const timedOut = new Promise((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this._pingTimeout * 1000);
      });
      const outcome = await Promise.race([answered, timedOut]);
      clearTimeout(timer);
      this._pending.delete(id);
      if (this._live !== transport) return;
      if (outcome === "timeout") transport.abort();
      else this._schedulePing(transport);
    }, this._pingInterval * 1000);
  }

  _failPending(error) {
    const pending = this._pending;
    this._pending = new Map();
    for (const p of pending.values()) if (p.reject !== null) p.reject(error);
  }

  _ended(transport, code, reason) {
    if (this._transport !== transport) return;
    this._transport = null;
    // A dropped SSE session lives on at the server for a while: resume it, with a fresh
    // token, rather than start a second one.
    this._sseResume = transport.kind === "sse" && transport.resumable ? transport.lastEventId : null;
    this._live = null;
    clearTimeout(this._pingTimer);
    this._failPending(new ConnectionLost());
    const again = this._reconnect && shouldReconnect(code) && !this._stopping;
    this._emit({ type: "_disconnected", code, reason, reconnect: again });
    if (!again) {
      this._finish(new ClientClosed(code, reason));
      if (this._onEnded) this._onEnded();
      return;
    }
    this._reconnectLoop();
  }

  async _reconnectLoop() {
    for (let attempt = 0; ; attempt += 1) {
      if (await this._backoff(attempt)) return; // close() was called
      let opened;
      try {
        opened = await this._open();
      } catch (error) {
        if (this._stopping) return;
        if (error instanceof ClientClosed) {
          const again = shouldReconnect(error.code);
          this._emit({ type: "_disconnected", code: error.code, reason: error.reason, reconnect: again });
          if (!again) {
            this._finish(error);
            return;
          }
        }
        // Unreachable, or no token: say so (a UI counts failures), retry after any Retry-After.
        this._advisedMs = error instanceof Unreachable && error.retryAfter !== null ? error.retryAfter * 1000 : 0;
        this._emit({ type: "_disconnected", code: ABNORMAL_CLOSURE, reason: String(error.message ?? error), reconnect: true });
        continue;
      }
      if (this._stopping) {
        opened.transport.close();
        return;
      }
      this._session(opened.transport, opened.welcome);
      return;
    }
  }

  /** Sleep a full-jitter backoff; true if close() was called meanwhile. */
  _backoff(attempt) {
    if (this._stopping) return Promise.resolve(true);
    const cap = Math.min(this._backoffMax, this._backoffInitial * 2 ** Math.min(attempt, 32));
    // A refusal's Retry-After is a floor (bounded: an hour), the jitter still spreads.
    const advised = Math.min(this._advisedMs ?? 0, 3600 * 1000);
    this._advisedMs = 0;
    const delay = Math.max(advised, Math.random() * cap * 1000);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this._wake = null;
        resolve(this._stopping);
      }, delay);
      this._wake = () => {
        clearTimeout(timer);
        this._wake = null;
        resolve(true);
      };
    });
  }

  _finish(error) {
    if (this._closed !== null) return;
    this._closed = error;
    this.closeCode = error.code;
    this.closeReason = error.reason;
    this._live = null;
    clearTimeout(this._pingTimer);
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) w.reject(error);
    this._failPending(error);
    const readers = this._readers;
    this._readers = [];
    for (const resolve of readers) resolve({ value: undefined, done: true });
  }
}
