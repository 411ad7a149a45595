// tidings.js: tidings 0.1.0, built from clients/js (the npm package "tidings") by
// clients/js/scripts/build.mjs. Do not edit: change clients/js/src and rebuild.

// src/close-codes.js
var CLOSE_CODES = Object.freeze({
  1e3: { reason: "normal closure", reconnect: false },
  1001: { reason: "server shutting down", reconnect: true },
  1009: { reason: "message too big", reconnect: true },
  4e3: { reason: "internal server error", reconnect: true },
  4001: { reason: "missing authentication credentials", reconnect: false },
  4002: { reason: "invalid or expired token", reconnect: false },
  4003: { reason: "user id mismatch", reconnect: false },
  4004: { reason: "authentication timeout", reconnect: true },
  4005: { reason: "token expired", reconnect: true },
  4006: { reason: "origin not allowed", reconnect: false },
  4007: { reason: "denied by the application", reconnect: false },
  4008: { reason: "slow consumer", reconnect: true },
  4009: { reason: "too many connections", reconnect: true },
  4010: { reason: "disconnected by the server", reconnect: false },
  4029: { reason: "rate limit exceeded", reconnect: true }
});
function shouldReconnect(code) {
  const info = CLOSE_CODES[code];
  return info === void 0 ? true : info.reconnect;
}
var ABNORMAL_CLOSURE = 1006;
var CLIENT_CLOSED = 1e3;

// src/errors.js
var ClientError = class extends Error {
  constructor(code, message, details) {
    super(`${code}: ${message}`);
    this.name = "ClientError";
    this.code = code;
    this.details = details;
  }
};
var ClientClosed = class extends Error {
  constructor(code, reason) {
    super(reason ? `connection closed (${code}): ${reason}` : `closed (${code})`);
    this.name = "ClientClosed";
    this.code = code;
    this.reason = reason;
  }
};
var QueueFull = class extends Error {
  constructor(message) {
    super(message);
    this.name = "QueueFull";
  }
};
var ConnectionLost = class extends Error {
};
var Unreachable = class extends Error {
  constructor(message, retryAfter = null) {
    super(message);
    this.retryAfter = retryAfter;
  }
};

// src/wire.js
function httpOrigin(wsUrl) {
  const url = new URL(wsUrl);
  const scheme = url.protocol === "wss:" ? "https:" : url.protocol === "ws:" ? "http:" : url.protocol;
  return `${scheme}//${url.host}`;
}
function parse(raw) {
  let text = raw;
  if (typeof text !== "string") {
    try {
      text = new TextDecoder().decode(raw);
    } catch {
      return null;
    }
  }
  try {
    const msg = JSON.parse(text);
    return msg !== null && typeof msg === "object" && !Array.isArray(msg) ? msg : null;
  } catch {
    return null;
  }
}
function clientError(msg) {
  const data = msg.data;
  if (data === null || typeof data !== "object") {
    return new ClientError("SERVER_ERROR", "malformed error message");
  }
  return new ClientError(String(data.code ?? "SERVER_ERROR"), String(data.message ?? ""), data.details);
}
function isInt(value) {
  return typeof value === "number" && Number.isInteger(value);
}
function report(error) {
  if (typeof console !== "undefined") console.error("tidings: a callback failed:", error);
}
function sseUrlFor(wsUrl) {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : url.protocol === "ws:" ? "http:" : url.protocol;
  url.pathname = "/sse";
  return url.toString();
}
function withQuery(base, params) {
  const url = new URL(base);
  for (const key of ["token", "lastSeq", "ack", "lastEventId"]) url.searchParams.delete(key);
  for (const [key, value] of Object.entries(params)) {
    if (value !== void 0 && value !== null) url.searchParams.set(key, String(value));
  }
  return url.toString();
}
function retryAfterSeconds(value, now = Date.now()) {
  if (value === null || value === void 0 || value === "") return null;
  const text = String(value).trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const when = Date.parse(text);
  return Number.isNaN(when) ? null : Math.max(0, (when - now) / 1e3);
}

// src/sse.js
var SseTransport = class {
  constructor(EventSourceImpl, fetchImpl, url, postBase, token, reattachMs, resumeFrom = null) {
    this.kind = "sse";
    this.onmessage = null;
    this.onclose = null;
    this.onstate = null;
    this._EventSource = EventSourceImpl;
    this._fetch = fetchImpl;
    this._url = url;
    this._postBase = postBase;
    this._token = token;
    this._reattachMs = reattachMs;
    this._es = null;
    this._resumeFrom = resumeFrom;
    this.clientId = resumeFrom === null ? null : resumeFrom.slice(0, resumeFrom.lastIndexOf("."));
    this.lastEventId = resumeFrom;
    this.resumable = true;
    this._held = [];
    this._closed = false;
    this._batch = [];
    this._posting = false;
    this._live = false;
    this._reattachTimer = null;
  }
  open(timeoutMs) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn, value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn(value);
      };
      let es;
      try {
        es = new this._EventSource(this._url);
      } catch (error) {
        reject(new Unreachable(String(error)));
        return;
      }
      this._es = es;
      const timer = setTimeout(() => {
        settle(reject, new Unreachable("open timeout"));
        this._stop();
      }, timeoutMs);
      es.onopen = () => {
        if (!settled && this._resumeFrom !== null) {
          this._live = true;
          settle(resolve, null);
          this._flush();
          return;
        }
        if (!settled || this._closed) return;
        clearTimeout(this._reattachTimer);
        if (!this._live) {
          this._live = true;
          if (this.onstate) this.onstate(true);
          this._flush();
        }
      };
      es.onmessage = (event) => {
        if (typeof event.lastEventId === "string" && event.lastEventId) this.lastEventId = event.lastEventId;
        const msg = parse(event.data);
        if (msg === null) return;
        const own = msg.channel === void 0;
        if (msg.type === "close" && own) {
          const data = msg.data && typeof msg.data === "object" ? msg.data : {};
          const code = isInt(data.code) ? data.code : ABNORMAL_CLOSURE;
          const reason = typeof data.reason === "string" ? data.reason : "";
          this.resumable = false;
          es.close();
          if (!settled) settle(reject, new ClientClosed(code, reason));
          else this._finish(code, reason);
          return;
        }
        if (msg.type === "welcome" && own && msg.data && typeof msg.data.clientId === "string") {
          this.clientId = msg.data.clientId;
        }
        if (!settled) {
          if (msg.type === "welcome" && own) {
            this._live = true;
            settle(resolve, msg);
          } else {
            settle(reject, new ClientClosed(ABNORMAL_CLOSURE, "expected welcome, got " + String(msg.type)));
            this._stop();
          }
          return;
        }
        if (this.onmessage) this.onmessage(msg);
        else this._held.push(msg);
      };
      es.onerror = () => {
        if (!settled) {
          settle(reject, new Unreachable("the event stream did not open"));
          this._stop();
          return;
        }
        if (this._closed) return;
        if (es.readyState === 2) {
          this._finish(ABNORMAL_CLOSURE, "the event stream failed");
          return;
        }
        if (this._live) {
          this._live = false;
          if (this.onstate) this.onstate(false);
        }
        clearTimeout(this._reattachTimer);
        this._reattachTimer = setTimeout(() => {
          this._stop();
          this._finish(ABNORMAL_CLOSURE, "the event stream did not come back");
        }, this._reattachMs);
      };
    });
  }
  attach(onmessage, onclose) {
    this.onmessage = onmessage;
    this.onclose = onclose;
    const held = this._held;
    this._held = [];
    for (const msg of held) onmessage(msg);
    if (this._closed) onclose(this._closeCode, this._closeReason);
  }
  get live() {
    return this._live && !this._closed;
  }
  send(msg) {
    if (this._closed || !this._live) return false;
    this._batch.push(msg);
    this._flush();
    return true;
  }
  // One POST at a time, carrying everything queued meanwhile: messages keep their order.
  async _flush() {
    if (this._posting || this._batch.length === 0 || this._closed || this.clientId === null) return;
    this._posting = true;
    const batch = this._batch;
    this._batch = [];
    const clientId = this.clientId;
    let status = 0;
    try {
      const response = await this._fetch(`${this._postBase}/${encodeURIComponent(clientId)}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${this._token}` },
        body: JSON.stringify(batch.length === 1 ? batch[0] : batch)
      });
      status = response.status;
      await response.text().catch(() => "");
    } catch {
      status = 0;
    }
    this._posting = false;
    if (status >= 200 && status < 300) {
      this._flush();
      return;
    }
    if (status === 404 && this.clientId !== clientId) {
      this._batch = batch.concat(this._batch);
      this._flush();
      return;
    }
    if (status === 404 && !this._closed) {
      this._batch = batch.concat(this._batch);
      return;
    }
    const code = { 401: 4002, 403: 4003, 413: 1009, 429: 4029 }[status] ?? ABNORMAL_CLOSURE;
    this._stop();
    this._finish(code, `POST /sse answered ${status || "nothing"}`);
  }
  /** Close the stream; the server keeps the session for a while, then drops it. */
  close() {
    this.resumable = false;
    this._stop();
    this._finish(CLIENT_CLOSED, "");
  }
  _stop() {
    clearTimeout(this._reattachTimer);
    if (this._es !== null) this._es.close();
  }
  abort() {
    this._stop();
    this._finish(ABNORMAL_CLOSURE, "no pong from the server");
  }
  _finish(code, reason) {
    if (this._closed) return;
    this._closed = true;
    this._live = false;
    clearTimeout(this._reattachTimer);
    this._closeCode = code;
    this._closeReason = reason;
    if (this.onclose) this.onclose(code, reason);
  }
};

// src/version.js
var VERSION = "0.1.0";
var PROTOCOL_VERSION = 1;

// src/websocket.js
var WebSocketTransport = class {
  constructor(WebSocketImpl, url, protocols) {
    this.kind = "websocket";
    this.onmessage = null;
    this.onclose = null;
    this._WebSocket = WebSocketImpl;
    this._url = url;
    this._protocols = protocols;
    this._ws = null;
    this._held = [];
    this._closed = false;
  }
  open(timeoutMs) {
    return new Promise((resolve, reject) => {
      let opened = false;
      let settled = false;
      const settle = (fn, value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn(value);
      };
      let ws;
      try {
        ws = this._protocols ? new this._WebSocket(this._url, this._protocols) : new this._WebSocket(this._url);
      } catch (error) {
        reject(new Unreachable(String(error)));
        return;
      }
      this._ws = ws;
      let refused = null;
      if (typeof ws.on === "function") {
        ws.on("unexpected-response", (_request, response) => {
          refused = { status: response.statusCode, retryAfter: retryAfterSeconds(response.headers["retry-after"]) };
          response.resume();
          ws.terminate();
        });
      }
      const timer = setTimeout(() => {
        settle(reject, opened ? new ClientClosed(ABNORMAL_CLOSURE, "no welcome in time") : new Unreachable("open timeout"));
        this.close(CLIENT_CLOSED, "");
      }, timeoutMs);
      ws.onopen = () => {
        opened = true;
      };
      ws.onmessage = (event) => {
        const msg = parse(event.data);
        if (msg === null) return;
        if (!settled) {
          if (msg.type === "welcome") settle(resolve, msg);
          else {
            settle(reject, new ClientClosed(ABNORMAL_CLOSURE, "expected welcome, got " + String(msg.type)));
            this.close(CLIENT_CLOSED, "");
          }
          return;
        }
        if (this.onmessage) this.onmessage(msg);
        else this._held.push(msg);
      };
      ws.onerror = () => {
      };
      ws.onclose = (event) => {
        const code = event.code || ABNORMAL_CLOSURE;
        const reason = event.reason || "";
        if (!settled) {
          if (opened) settle(reject, new ClientClosed(code, reason));
          else if (refused !== null) settle(reject, new Unreachable(`refused (${refused.status})`, refused.retryAfter));
          else settle(reject, new Unreachable(`could not connect (${code})`));
          return;
        }
        this._finish(code, reason);
      };
    });
  }
  attach(onmessage, onclose) {
    this.onmessage = onmessage;
    this.onclose = onclose;
    const held = this._held;
    this._held = [];
    for (const msg of held) onmessage(msg);
    if (this._closed) onclose(this._closeCode, this._closeReason);
  }
  send(msg) {
    const ws = this._ws;
    if (ws === null || this._closed || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }
  close(code = CLIENT_CLOSED, reason = "") {
    const ws = this._ws;
    if (ws !== null && ws.readyState <= 1) {
      try {
        ws.close(code, reason);
      } catch {
      }
    }
  }
  /** Drop the connection without a close handshake (a dead peer: no pong). */
  abort() {
    this.close(CLIENT_CLOSED, "");
    this._finish(ABNORMAL_CLOSURE, "no pong from the server");
  }
  _finish(code, reason) {
    if (this._closed) return;
    this._closed = true;
    this._closeCode = code;
    this._closeReason = reason;
    if (this.onclose) this.onclose(code, reason);
  }
};

// src/connection.js
var Connection = class {
  constructor(url, token, options = {}) {
    const o = options;
    const num = (value, fallback) => value === void 0 ? fallback : value;
    this.url = url;
    this._token = token;
    this._reconnect = num(o.reconnect, true);
    this._backoffInitial = num(o.backoffInitial, 0.5);
    this._backoffMax = num(o.backoffMax, 30);
    this._queueLimit = num(o.queueLimit, 1e3);
    this._ack = num(o.ack, false);
    this._resume = num(o.resume, true);
    this._eventBuffer = num(o.eventBuffer, 1e4);
    this._openTimeout = num(o.openTimeout, 10);
    this._pingInterval = num(o.pingInterval, 25);
    this._pingTimeout = num(o.pingTimeout, 10);
    this._tokenIn = num(o.tokenIn, "query");
    this._transportChoice = num(o.transport, "auto");
    this._sseUrl = o.sseUrl ?? null;
    this._sseReattach = num(o.sseReattach, 10);
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this._EventSource = o.EventSource ?? globalThis.EventSource;
    this._fetch = o.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : void 0);
    if (this._backoffInitial < 0 || this._backoffMax < 0) {
      throw new RangeError("backoffInitial and backoffMax must not be negative");
    }
    if (this._queueLimit < 0 || this._eventBuffer < 0) {
      throw new RangeError("queueLimit and eventBuffer must not be negative");
    }
    if (!["auto", "websocket", "sse"].includes(this._transportChoice)) {
      throw new RangeError('transport must be "auto", "websocket" or "sse"');
    }
    this.welcome = null;
    this.lastSeq = o.lastSeq ?? null;
    this.duplicates = 0;
    this.connections = 0;
    this.dropped = 0;
    this.closeCode = null;
    this.closeReason = null;
    this.unreadCount = null;
    this._subscriptions = /* @__PURE__ */ new Map();
    this._positions = /* @__PURE__ */ new Map();
    for (const [channel, pos] of Object.entries(o.positions ?? {})) this._positions.set(channel, { ...pos });
    this._outbox = [];
    this._seen = /* @__PURE__ */ new Map();
    this._pending = /* @__PURE__ */ new Map();
    this._callbacks = /* @__PURE__ */ new Map();
    this._events = [];
    this._readers = [];
    this._transport = null;
    this._live = null;
    this._waiters = [];
    this._stopping = false;
    this._started = false;
    this._closed = null;
    this._counter = 0;
    this._preferSse = this._transportChoice === "sse";
    this._sseResume = null;
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
      let timer;
      const ended = new Promise((resolve) => {
        this._onEnded = resolve;
        timer = setTimeout(resolve, this._openTimeout * 1e3);
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
        const welcome = await transport.open(this._openTimeout * 1e3);
        if (kind === "sse" && order.length > 1) this._preferSse = true;
        this._sseResume = null;
        return { transport, welcome };
      } catch (error) {
        this._transport = null;
        if (!(error instanceof Unreachable)) {
          this._sseResume = null;
          throw error;
        }
        const advised = failure?.retryAfter ?? null;
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
      this._sseReattach * 1e3,
      resumeFrom
    );
  }
  _session(transport, welcome) {
    this._transport = transport;
    transport.onstate = (live) => this._sseState(transport, live);
    if (welcome !== null) this._welcomed(transport, welcome);
    transport.attach(
      (msg) => this._handle(transport, msg),
      (code, reason) => this._ended(transport, code, reason)
    );
    if (this._transport !== transport) return;
    if (welcome === null) this._sseState(transport, true);
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
      const id = this._nextId();
      this._pending.set(id, { resolve: null, reject: null, channel: null });
      transport.send({ type: "get_notifications", data: { limit: 1 }, id });
    }
    for (const [channel, filters] of this._subscriptions) {
      const id = this._nextId();
      const since = this._resume ? this._positions.get(channel) : void 0;
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
        timer = setTimeout(() => resolve("timeout"), this._pingTimeout * 1e3);
      });
      const outcome = await Promise.race([answered, timedOut]);
      clearTimeout(timer);
      this._pending.delete(id);
      if (this._live !== transport) return;
      if (outcome === "timeout") transport.abort();
      else this._schedulePing(transport);
    }, this._pingInterval * 1e3);
  }
  _failPending(error) {
    const pending = this._pending;
    this._pending = /* @__PURE__ */ new Map();
    for (const p of pending.values()) if (p.reject !== null) p.reject(error);
  }
  _ended(transport, code, reason) {
    if (this._transport !== transport) return;
    this._transport = null;
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
      if (await this._backoff(attempt)) return;
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
        this._advisedMs = error instanceof Unreachable && error.retryAfter !== null ? error.retryAfter * 1e3 : 0;
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
    const advised = Math.min(this._advisedMs ?? 0, 3600 * 1e3);
    this._advisedMs = 0;
    const delay = Math.max(advised, Math.random() * cap * 1e3);
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
    for (const resolve of readers) resolve({ value: void 0, done: true });
  }
};

// src/client.js
var COUNTED = /* @__PURE__ */ new Set([
  "notification_read",
  "notification_archived",
  "notification_unarchived",
  "notification_deleted",
  "notifications"
]);
var DEDUP_SIZE = 1e4;
var Client = class extends Connection {
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
        if (this._closed !== null) return Promise.resolve({ value: void 0, done: true });
        return new Promise((resolve) => this._readers.push(resolve));
      },
      return: () => Promise.resolve({ value: void 0, done: true }),
      [Symbol.asyncIterator]() {
        return this;
      }
    };
  }
  /**
   * Subscribe (or replace the filter); resolves with the `subscribed` data. The channel
   * is subscribed again after every reconnection, from its last position when the
   * channel keeps history. `options.since` ({offset, epoch}) recovers from a saved point.
   */
  async subscribe(channel, filters = null, options = {}) {
    const msg = { type: "subscribe", channel };
    if (filters !== null && filters !== void 0) msg.filters = { ...filters };
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
    else msg.notificationIds = [...ids ?? []];
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
    if (options.unreadOnly !== void 0) data.unreadOnly = options.unreadOnly;
    if (options.archived) data.archived = true;
    if (options.limit !== void 0) data.limit = options.limit;
    if (options.cursor !== void 0 && options.cursor !== null) data.cursor = options.cursor;
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
    for (; ; ) {
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
      const position = this._resume ? this._positions.get(channel) : void 0;
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
      return;
    }
    if (COUNTED.has(msg.type) && msg.channel === void 0 && isInt(msg.data?.unreadCount)) {
      this._setUnread(msg.data.unreadCount);
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
      if (p.channel !== null && isError) this._subscriptions.delete(p.channel);
      if (isError) this._emit(msg);
      else if (p.channel !== null) this._emit({ type: "_resubscribed", channel: p.channel, data: msg.data ?? {} });
      return;
    }
    if (msg.type === "welcome" && transport.kind === "sse" && msg.channel === void 0) {
      this._live = null;
      this._failPending(new ConnectionLost());
      this._welcomed(transport, msg);
      return;
    }
    if (msg.type === "notification" && msg.channel === void 0) {
      this._notification(transport, msg);
      return;
    }
    if (typeof msg.channel === "string" && isInt(msg.offset)) {
      const known = this._positions.get(msg.channel);
      if (known && known.epoch === msg.epoch && msg.offset <= known.offset) {
        this.duplicates += 1;
        return;
      }
      this._positions.set(msg.channel, { offset: msg.offset, epoch: msg.epoch });
    }
    this._emit(msg);
  }
  _positionFromSubscribed(channel, data) {
    if (data.recovered !== true && isInt(data.offset) && data.epoch !== void 0) {
      this._positions.set(channel, { offset: data.offset, epoch: data.epoch });
    }
  }
  _notification(transport, msg) {
    const nid = msg.id;
    const seq = msg.data && typeof msg.data === "object" ? msg.data.seq : void 0;
    if (isInt(seq)) this.lastSeq = this.lastSeq === null ? seq : Math.max(this.lastSeq, seq);
    if (typeof nid === "string") {
      if (this._seen.has(nid)) {
        this._seen.delete(nid);
        this._seen.set(nid, null);
        this.duplicates += 1;
        this._sendAck(transport, nid);
        return;
      }
      this._seen.set(nid, null);
      if (this._seen.size > DEDUP_SIZE) this._seen.delete(this._seen.keys().next().value);
    }
    const data = msg.data ?? {};
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
      for (const callback of [...this._callbacks.get(kind) ?? []]) {
        try {
          const result = callback(msg);
          if (result && typeof result.then === "function") result.then(void 0, report);
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
};
async function connect(url, token, options = {}) {
  const client = new Client(url, token, options);
  await client.connect();
  return client;
}

// src/push.js
function pushSupported() {
  return typeof navigator !== "undefined" && "serviceWorker" in navigator && typeof PushManager !== "undefined" && typeof Notification !== "undefined";
}
function base64urlBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - text.length % 4) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}
async function api(client, method, body) {
  const token = await client.getToken();
  const response = await fetch(`${httpOrigin(client.url)}/api/me/push-subscriptions`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === void 0 ? void 0 : JSON.stringify(body)
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error?.message ?? `HTTP ${response.status}`);
  return { status: response.status, data };
}
async function pushPublicKey(client) {
  return (await api(client, "GET")).data.publicKey;
}
function activated(registration) {
  if (registration.active) return Promise.resolve(registration);
  const worker = registration.installing ?? registration.waiting;
  return new Promise((resolve, reject) => {
    worker.addEventListener("statechange", () => {
      if (worker.state === "activated") resolve(registration);
      else if (worker.state === "redundant") reject(new Error("the service worker failed to install"));
    });
  });
}
async function subscribePush(client, options = {}) {
  if (!pushSupported()) throw new Error("this browser has no Web Push");
  const publicKey = await pushPublicKey(client);
  const registration = await activated(
    options.registration ?? await navigator.serviceWorker.register(options.serviceWorker ?? "/tidings-sw.js", options.scope ? { scope: options.scope } : void 0)
  );
  const permission = Notification.permission === "default" ? await Notification.requestPermission() : Notification.permission;
  if (permission !== "granted") throw new Error(`notifications are not allowed (${permission})`);
  const key = base64urlBytes(publicKey);
  let subscription = await registration.pushManager.getSubscription();
  const current = subscription?.options?.applicationServerKey;
  if (subscription && current && !sameBytes(new Uint8Array(current), key)) {
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  const { status } = await api(client, "POST", subscription.toJSON());
  return { registration, subscription, created: status === 201 };
}
async function unsubscribePush(client, registration) {
  const subscription = await registration.pushManager.getSubscription();
  if (!subscription) return false;
  const token = await client.getToken();
  const query = new URLSearchParams({ endpoint: subscription.endpoint });
  await fetch(`${httpOrigin(client.url)}/api/me/push-subscriptions?${query}`, {
    method: "DELETE",
    headers: { Authorization: `Bearer ${token}` }
  });
  return subscription.unsubscribe();
}
function sameBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
export {
  CLOSE_CODES,
  Client,
  ClientClosed,
  ClientError,
  PROTOCOL_VERSION,
  QueueFull,
  VERSION,
  connect,
  pushPublicKey,
  pushSupported,
  shouldReconnect,
  sseUrlFor,
  subscribePush,
  unsubscribePush
};
