// Messages on the wire: JSON parsing, server errors, URLs.

import { ClientError } from "./errors.js";

/** The HTTP origin of a client's WebSocket URL (ws: -> http:, wss: -> https:). */
export function httpOrigin(wsUrl) {
  const url = new URL(wsUrl);
  const scheme = url.protocol === "wss:" ? "https:" : url.protocol === "ws:" ? "http:" : url.protocol;
  return `${scheme}//${url.host}`;
}

export function parse(raw) {
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

export function clientError(msg) {
  const data = msg.data;
  if (data === null || typeof data !== "object") {
    return new ClientError("SERVER_ERROR", "malformed error message");
  }
  return new ClientError(String(data.code ?? "SERVER_ERROR"), String(data.message ?? ""), data.details);
}

export function isInt(value) {
  return typeof value === "number" && Number.isInteger(value);
}

export function report(error) {
  // A callback's failure must not stop the client; it is the application's bug to see.
  if (typeof console !== "undefined") console.error("tidings: a callback failed:", error);
}

/** The /sse URL beside a WebSocket URL: same host, http(s) scheme, path /sse. */
export function sseUrlFor(wsUrl) {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : url.protocol === "ws:" ? "http:" : url.protocol;
  url.pathname = "/sse";
  return url.toString();
}

export function withQuery(base, params) {
  const url = new URL(base);
  for (const key of ["token", "lastSeq", "ack", "lastEventId"]) url.searchParams.delete(key);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
  }
  return url.toString();
}

/** Seconds from a Retry-After header: delta seconds (tidings'), or an HTTP date (a proxy's); null if absent or unreadable. */
export function retryAfterSeconds(value, now = Date.now()) {
  if (value === null || value === undefined || value === "") return null;
  const text = String(value).trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const when = Date.parse(text);
  return Number.isNaN(when) ? null : Math.max(0, (when - now) / 1000);
}
