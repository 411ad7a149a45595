// The server's close codes and what a client does after each (reconnect or give up).

/**
 * The server's close-code table (docs/protocol.md, protocol.py CLOSE_CODES): what each
 * code means and whether a client should reconnect. tests/test_js_client.py checks that
 * it equals the server's table.
 */
export const CLOSE_CODES = Object.freeze({
  1000: { reason: "normal closure", reconnect: false },
  1001: { reason: "server shutting down", reconnect: true },
  1009: { reason: "message too big", reconnect: true },
  4000: { reason: "internal server error", reconnect: true },
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
  4029: { reason: "rate limit exceeded", reconnect: true },
});

/** Client policy for a close code: reconnect unless the table says it cannot help. */
export function shouldReconnect(code) {
  const info = CLOSE_CODES[code];
  return info === undefined ? true : info.reconnect;
}

/** Close code the client reports when a connection ended without one. */
export const ABNORMAL_CLOSURE = 1006;
/** Close code the client closes with. */
export const CLIENT_CLOSED = 1000;
