// tidings: the JavaScript client for a tidings server.
//
// Plain ES modules, no dependencies: it runs in browsers and in Node 20 (pass a
// WebSocket constructor, e.g. the npm `ws` package, since Node 20 has none).
// Behaviour and names follow the Python client (tidings.client, docs/client.md):
// reconnect with exponential backoff and full jitter, but never after a terminal close
// code; resubscribe after a reconnection with each channel's recovery position; resume
// the notification inbox with lastSeq; drop duplicate notifications; keep the server's
// unread count; queue what the application sends while offline; ack notifications in
// ack mode; keep the connection alive with pings. When the WebSocket cannot connect it
// falls back to Server-Sent Events (GET /sse) plus HTTP POSTs (POST /sse/{clientId}).
// See docs/clients.md.

export { CLOSE_CODES, shouldReconnect } from "./close-codes.js";
export { ClientError, ClientClosed, QueueFull } from "./errors.js";
export { sseUrlFor } from "./wire.js";
export { Client, connect } from "./client.js";
export { PROTOCOL_VERSION, VERSION } from "./version.js";
export { pushPublicKey, pushSupported, subscribePush, unsubscribePush } from "./push.js";
