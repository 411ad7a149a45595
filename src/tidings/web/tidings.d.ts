// tidings.d.ts: tidings 0.1.0, built from clients/js (the npm package "tidings") by
// clients/js/scripts/build.mjs. Do not edit: change clients/js/src and rebuild.

// TypeScript declarations for the tidings client (the package's "." entry; /tidings.js).

/** Any server message: the envelope of docs/protocol.md. */
export interface Message {
  id?: string;
  type: string;
  channel?: string;
  timestamp?: string;
  data?: any;
  replyTo?: string;
  /** Stream position of a publication in a channel that keeps history. */
  offset?: number;
  epoch?: string;
  /** Set on publications and notifications sent by a recovery or catch-up. */
  recovered?: boolean;
  [key: string]: unknown;
}

/** A notification's data (the `data` of a `notification` message). */
export interface Notification {
  id: string;
  seq: number;
  type: string;
  title: string | null;
  message: string | null;
  priority: "LOW" | "MEDIUM" | "HIGH" | "CRITICAL";
  category: string | null;
  data: unknown;
  actionable: boolean;
  actions: Array<{ id: string; label: string; url?: string }>;
  expiresAt: string | null;
  createdAt: string;
  readAt: string | null;
  timestamp: string;
  /** Only on an archived notification (getNotifications({archived: true})). */
  archivedAt?: string;
  recovered?: boolean;
  redelivered?: boolean;
}

/** The `data` of the welcome message. */
export interface Welcome {
  clientId: string;
  userId: string;
  roles: string[];
  role: string | null;
  serverTime: string;
  expiresAt: string | null;
  availableSubscriptions: string[];
  heartbeatInterval: number;
  limits: { maxMessageBytes: number; maxSubscriptions: number };
  protocolVersion: number;
  unreadCount?: number;
  [key: string]: unknown;
}

/** A channel's stream position: resubscribing with it as `since` recovers what was missed. */
export interface Position {
  offset: number;
  epoch: string;
}

/** The data of a `subscribed` reply. */
export interface Subscribed {
  channel: string;
  filters: Filters | null;
  /** The stream's top, on channels that keep history. */
  offset?: number;
  epoch?: string;
  /** When `since` was sent: whether what was missed follows. */
  recovered?: boolean;
  /** Why not: "epoch" (the stream was reset) or "gone" (too old). */
  reason?: string;
  [key: string]: unknown;
}

/** Synthetic events the client emits beside the server's messages. */
export interface ConnectedEvent {
  type: "_connected";
  welcome: Welcome;
  transport: "websocket" | "sse";
  /** true when an SSE stream was resumed by the server (no new welcome). */
  resumed?: boolean;
}
export interface DisconnectedEvent {
  type: "_disconnected";
  code: number;
  reason: string;
  /** Whether the client will try again. */
  reconnect: boolean;
}
export interface ResubscribedEvent {
  type: "_resubscribed";
  channel: string;
  /** The server's subscribed data: offset, epoch and, when resuming, recovered (and reason when false). */
  data: Subscribed;
}
/** The user's unread count changed (Client.unreadCount). */
export interface UnreadEvent {
  type: "_unread";
  unreadCount: number;
}
export type ClientEvent = Message | ConnectedEvent | DisconnectedEvent | ResubscribedEvent | UnreadEvent;

export type TokenSource = string | (() => string | Promise<string>);
export type Filters = Record<string, string | number | boolean | null | Array<string | number | boolean | null>>;

export interface ClientOptions {
  /** Reconnect after an unexpected close (never after a terminal close code). Default true. */
  reconnect?: boolean;
  /** Backoff before attempt n is uniform in [0, min(backoffMax, backoffInitial * 2**n)] seconds. Default 0.5. */
  backoffInitial?: number;
  /** Default 30 seconds. */
  backoffMax?: number;
  /** Messages send() may queue while offline; beyond it QueueFull. Default 1000. */
  queueLimit?: number;
  /** Ack mode: connect with ack=1 and ack each notification once handed over. Default false. */
  ack?: boolean;
  /** Reconnect with lastSeq and resubscribe with each channel's position as since. Default true. */
  resume?: boolean;
  /** A resume point saved from an earlier run (client.lastSeq). */
  lastSeq?: number | null;
  /** Channel positions saved from an earlier run (client.positions). */
  positions?: Record<string, Position>;
  /** Events buffered for the async iterator; the oldest is dropped when full. 0: none. Default 10000. */
  eventBuffer?: number;
  /** Seconds for a connection to reach welcome. Default 10. */
  openTimeout?: number;
  /** Seconds between keepalive pings (0: none). Default 25. */
  pingInterval?: number;
  /** Seconds to wait for a pong before dropping the connection. Default 10. */
  pingTimeout?: number;
  /** How the WebSocket carries the token: ?token= ("query", default) or the "protocol" header. */
  tokenIn?: "query" | "protocol";
  /** "auto" (WebSocket, falling back to SSE), "websocket" or "sse". Default "auto". */
  transport?: "auto" | "websocket" | "sse";
  /** The SSE endpoint; default: /sse on the WebSocket URL's host. */
  sseUrl?: string;
  /** Seconds EventSource may take to reattach a dropped stream before the client reconnects. Default 10. */
  sseReattach?: number;
  /** A WebSocket constructor (Node 20: the npm `ws` package). Default globalThis.WebSocket. */
  WebSocket?: any;
  /** An EventSource constructor. Default globalThis.EventSource. */
  EventSource?: any;
  /** A fetch function for the SSE POSTs. Default globalThis.fetch. */
  fetch?: typeof fetch;
}

export interface CloseInfo {
  reason: string;
  reconnect: boolean;
}

/** The server's close-code table (docs/protocol.md). */
export const CLOSE_CODES: Readonly<Record<number, CloseInfo>>;
/** Whether a client should reconnect after this close code (unknown codes: true). */
export function shouldReconnect(code: number): boolean;
/** The /sse URL beside a WebSocket URL. */
export function sseUrlFor(wsUrl: string): string;

export class ClientError extends Error {
  readonly code: string;
  readonly details: unknown;
  constructor(code: string, message: string, details?: unknown);
}

export class ClientClosed extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string);
}

export class QueueFull extends Error {}

export class Client implements AsyncIterable<ClientEvent> {
  constructor(url: string, token: TokenSource, options?: ClientOptions);
  readonly url: string;
  /** The data of the latest welcome. */
  welcome: Welcome | null;
  /** The highest notification seq seen. */
  lastSeq: number | null;
  /** Notifications and publications dropped as already delivered. */
  duplicates: number;
  /** Connections that reached welcome. */
  connections: number;
  /** Events dropped from a full iterator buffer. */
  dropped: number;
  /**
   * The user's unread notifications as the server counts them (the welcome's count, then
   * every count the server sends, plus live unread notifications); null before welcome.
   */
  unreadCount: number | null;
  closeCode: number | null;
  closeReason: string | null;
  readonly connected: boolean;
  readonly transport: "websocket" | "sse" | null;
  readonly subscriptions: Record<string, Filters | null>;
  readonly positions: Record<string, Position>;
  readonly queued: number;

  connect(): Promise<void>;
  close(): Promise<void>;
  on(type: "_connected", callback: (event: ConnectedEvent) => unknown): () => void;
  on(type: "_disconnected", callback: (event: DisconnectedEvent) => unknown): () => void;
  on(type: "_resubscribed", callback: (event: ResubscribedEvent) => unknown): () => void;
  on(type: "_unread", callback: (event: UnreadEvent) => unknown): () => void;
  on(type: string, callback: (msg: Message) => unknown): () => void;
  [Symbol.asyncIterator](): AsyncIterator<ClientEvent>;

  subscribe(channel: string, filters?: Filters | null, options?: { since?: Position }): Promise<Subscribed>;
  unsubscribe(channel: string): Promise<void>;
  publish(channel: string, event: string, data?: unknown): Promise<{ channel: string; messageId: string }>;
  markRead(ids?: string[] | null, all?: boolean): Promise<{ ids: string[]; unreadCount: number }>;
  markRead(options: { all?: boolean; ids?: string[] }): Promise<{ ids: string[]; unreadCount: number }>;
  /** Archive: kept, but out of the list, the count, catch-up and redelivery. */
  archive(ids: string[]): Promise<{ ids: string[]; unreadCount: number }>;
  /** Bring archived ones back into the inbox (read state kept). */
  unarchive(ids: string[]): Promise<{ ids: string[]; unreadCount: number }>;
  /** Delete for good. */
  delete(ids: string[]): Promise<{ ids: string[]; unreadCount: number }>;
  getNotifications(options?: {
    unreadOnly?: boolean;
    /** The archived notifications instead of the inbox (each with archivedAt). */
    archived?: boolean;
    limit?: number;
    cursor?: string | null;
  }): Promise<{ items: Notification[]; unreadCount: number; nextCursor: string | null }>;
  ping(): Promise<Message>;
  /** The token the client would connect with now (it calls the token function). */
  getToken(): Promise<string>;
  request(msg: Record<string, unknown>): Promise<Message>;
  send(msg: Record<string, unknown>): void;
}

/** Create a client and open its first connection. */
export function connect(url: string, token: TokenSource, options?: ClientOptions): Promise<Client>;

/** This package's version (the server's release it belongs to). */
export const VERSION: string;
/** The protocol version this client speaks; the client warns when a server's differs. */
export const PROTOCOL_VERSION: number;

/** Whether this browser can do Web Push (service worker, PushManager, Notification). */
export function pushSupported(): boolean;
/** The server's VAPID public key (base64url), from GET /api/me/push-subscriptions. */
export function pushPublicKey(client: Client): Promise<string>;
/**
 * Register the service worker (/tidings-sw.js by default), subscribe with the server's
 * VAPID key and POST the subscription to /api/me/push-subscriptions.
 */
export function subscribePush(
  client: Client,
  options?: { serviceWorker?: string; scope?: string; registration?: ServiceWorkerRegistration },
): Promise<{ registration: ServiceWorkerRegistration; subscription: PushSubscription; created: boolean }>;
/** Unsubscribe this browser and remove the subscription on the server. */
export function unsubscribePush(client: Client, registration: ServiceWorkerRegistration): Promise<boolean>;
