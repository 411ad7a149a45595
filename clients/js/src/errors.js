// The errors the client throws (and two it keeps to itself).

/** The server answered a request with an `error` message. */
export class ClientError extends Error {
  constructor(code, message, details) {
    super(`${code}: ${message}`);
    this.name = "ClientError";
    this.code = code;
    this.details = details;
  }
}

/** The client is closed for good: by close(), or by a terminal close code. */
export class ClientClosed extends Error {
  constructor(code, reason) {
    super(reason ? `connection closed (${code}): ${reason}` : `closed (${code})`);
    this.name = "ClientClosed";
    this.code = code;
    this.reason = reason;
  }
}

/** send() while offline with queueLimit messages already queued. */
export class QueueFull extends Error {
  constructor(message) {
    super(message);
    this.name = "QueueFull";
  }
}

/** A request's connection dropped before its reply came (internal: it is retried). */
export class ConnectionLost extends Error {}

/**
 * A connection attempt that never reached the server (a fallback may help), or that the
 * server refused before the upgrade; `retryAfter` is its advised wait in seconds, where
 * the WebSocket implementation shows the refusal's headers (Node's ws; browsers do not).
 */
export class Unreachable extends Error {
  constructor(message, retryAfter = null) {
    super(message);
    this.retryAfter = retryAfter;
  }
}
