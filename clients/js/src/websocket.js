// --- transports ---------------------------------------------------------------------
//
// A transport is one connection. open() resolves with the welcome message (or rejects
// with ClientClosed when the server closed it with a code, or Unreachable when it never
// answered); afterwards it calls onmessage(msg) for each server message and onclose(code,
// reason) once. send(msg) returns false if the message could not be handed over.

import { ABNORMAL_CLOSURE, CLIENT_CLOSED } from "./close-codes.js";
import { ClientClosed, Unreachable } from "./errors.js";
import { parse, retryAfterSeconds } from "./wire.js";

/** One WebSocket connection. */
export class WebSocketTransport {
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
      // A refusal before the upgrade (429/503 with Retry-After): Node's ws shows its
      // status and headers; a browser's WebSocket shows only a failed connection.
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
      ws.onerror = () => {}; // the close event follows with the code
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
        // already closing
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
}
