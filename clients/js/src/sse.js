// The SSE fallback transport: EventSource on GET /sse for server messages, fetch POST
// /sse/{clientId} for client messages (batched, one request at a time, in order). Same
// interface as WebSocketTransport (see websocket.js).

import { ABNORMAL_CLOSURE, CLIENT_CLOSED } from "./close-codes.js";
import { ClientClosed, Unreachable } from "./errors.js";
import { isInt, parse } from "./wire.js";

/** One SSE session (a stream plus POSTs), resumable after a drop. */
export class SseTransport {
  constructor(EventSourceImpl, fetchImpl, url, postBase, token, reattachMs, resumeFrom = null) {
    this.kind = "sse";
    this.onmessage = null;
    this.onclose = null;
    this.onstate = null; // (connected: boolean) while EventSource reconnects on its own
    this._EventSource = EventSourceImpl;
    this._fetch = fetchImpl;
    this._url = url;
    this._postBase = postBase;
    this._token = token;
    this._reattachMs = reattachMs;
    this._es = null;
    // Resuming a session (?lastEventId=): no welcome comes, the POSTs go to its clientId.
    this._resumeFrom = resumeFrom;
    this.clientId = resumeFrom === null ? null : resumeFrom.slice(0, resumeFrom.lastIndexOf("."));
    /** The id of the last event received (`<clientId>.<n>`): where a resume starts. */
    this.lastEventId = resumeFrom;
    /** false once the session is over (a close event): it cannot be resumed. */
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
          // The server reattached the session (or, if it could not, a welcome follows
          // and the client starts over): either way the stream is up.
          this._live = true;
          settle(resolve, null);
          this._flush();
          return;
        }
        if (!settled || this._closed) return;
        clearTimeout(this._reattachTimer);
        if (!this._live) {
          // EventSource reattached on its own: the server resumes the session (replaying
          // what we missed) or starts a new one, whose welcome then comes first.
          this._live = true;
          if (this.onstate) this.onstate(true);
          this._flush();
        }
      };
      es.onmessage = (event) => {
        if (typeof event.lastEventId === "string" && event.lastEventId) this.lastEventId = event.lastEventId;
        const msg = parse(event.data);
        if (msg === null) return;
        // The server's own close and welcome never carry a channel; a client publishing
        // into a channel may use those type names, and must not end or reset anyone.
        const own = msg.channel === undefined;
        if (msg.type === "close" && own) {
          const data = msg.data && typeof msg.data === "object" ? msg.data : {};
          const code = isInt(data.code) ? data.code : ABNORMAL_CLOSURE;
          const reason = typeof data.reason === "string" ? data.reason : "";
          this.resumable = false;
          es.close(); // a closed stream must not be reopened by EventSource
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
          // Refused (401, 404 ...): EventSource gives up, so the client reconnects.
          this._finish(ABNORMAL_CLOSURE, "the event stream failed");
          return;
        }
        // The stream dropped and EventSource retries with Last-Event-ID; give it a
        // bounded time, then reconnect the client's own way (fresh token, lastSeq).
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
        body: JSON.stringify(batch.length === 1 ? batch[0] : batch),
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
      // A new session began on the stream meanwhile: send the batch there.
      this._batch = batch.concat(this._batch);
      this._flush();
      return;
    }
    if (status === 404 && !this._closed) {
      // The stream is a new session whose welcome is still on its way.
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
}
