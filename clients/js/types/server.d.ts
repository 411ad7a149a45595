// Types of tidings/server: the Node server SDK (a backend's side of the HTTP API).

export class TidingsError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly retryAfter: number | null;
}

export class TransportError extends Error {
  /** True when the request may have reached the server (it may have been done). */
  readonly maybeSent: boolean;
}

export type Priority = "LOW" | "MEDIUM" | "HIGH" | "CRITICAL";

export interface Sent {
  id: string;
  delivered: number | null;
  offset?: number;
  epoch?: string;
}

export interface Created {
  notifications: { id: string; userId: string; seq: number }[];
  replayed: boolean;
  /** In-app off for the category, nothing planned: nothing stored for them. */
  skipped: string[];
  /** In-app off, escalation planned: stored for the other channels only, never in the app. */
  inAppOff: string[];
}

export interface BatchResult extends Created {
  /** What a single create of this item would have answered: 201, 200 (replayed), 409, 422. */
  status: number;
  error: { code: string; message: string } | null;
}

export interface Changed {
  ids: string[];
  unreadCount: number;
}

export interface NotificationInput {
  userId?: string;
  user_id?: string;
  userIds?: string[];
  role?: string;
  all?: boolean;
  type?: string;
  title?: string;
  message?: string;
  /** Any case: "high" is HIGH; "normal" is MEDIUM, "urgent" CRITICAL. */
  priority?: string;
  category?: string;
  actions?: { id: string; label: string; url?: string }[];
  expiresAt?: string | Date;
  data?: unknown;
  /** Any other key goes into `data`. */
  [extra: string]: unknown;
}

export interface User {
  name?: string | null;
  avatarUrl?: string | null;
  email?: string | null;
  phone?: string | null;
  locale?: string | null;
  timeZone?: string | null;
  roles?: string[];
  data?: Record<string, unknown> | null;
}

export interface TidingsServerOptions {
  url: string;
  apiKey: string;
  timeoutMs?: number;
  retries?: number;
  backoffMs?: number;
  /** The longest wait between tries, and the longest Retry-After waited for (5000). */
  maxBackoffMs?: number;
  fetch?: typeof fetch;
}

export function priority(value: string): Priority;
export function notificationBody(payload: NotificationInput): Record<string, unknown>;
/** Seconds from a Retry-After header (delta seconds or an HTTP date), or null. */
export function retryAfterSeconds(value: string | null | undefined, now?: number): number | null;

export class TidingsServer {
  constructor(options: TidingsServerOptions);
  readonly url: string;
  asUser(token: string): UserApi;
  publish(channel: string, data?: unknown, options?: { type?: string }): Promise<Sent>;
  sendToUser(userId: string, data?: unknown, options?: { type?: string }): Promise<Sent>;
  sendToRole(role: string, data?: unknown, options?: { type?: string }): Promise<Sent>;
  broadcast(data?: unknown, options?: { type?: string; excludeUserId?: string }): Promise<Sent>;
  createNotification(notification: NotificationInput, options?: { idempotencyKey?: string }): Promise<Created>;
  createNotifications(notifications: Iterable<NotificationInput & { idempotencyKey?: string }>): Promise<{ results: BatchResult[] }>;
  sendNotification(userId: string, payload: NotificationInput, options?: { idempotencyKey?: string }): Promise<Created>;
  listNotifications(userId: string, options?: { unreadOnly?: boolean; limit?: number; cursor?: string; archived?: boolean }): Promise<{ items: Record<string, unknown>[]; unreadCount: number; nextCursor: string | null }>;
  getNotification(userId: string, id: string): Promise<Record<string, unknown>>;
  markRead(userId: string, ids: Iterable<string>): Promise<Changed>;
  markAllRead(userId: string): Promise<Changed>;
  archiveNotifications(userId: string, ids: Iterable<string>): Promise<Changed>;
  /** Bring archived notifications back into the inbox (read state kept). */
  unarchiveNotifications(userId: string, ids: Iterable<string>): Promise<Changed>;
  deleteNotification(userId: string, id: string): Promise<Changed>;
  getPreferences(userId: string): Promise<Record<string, boolean>>;
  setPreferences(userId: string, inApp: Record<string, boolean>): Promise<Record<string, boolean>>;
  putUser(userId: string, user: User): Promise<User & { id: string; createdAt: string; updatedAt: string }>;
  getUser(userId: string): Promise<User & { id: string; createdAt: string; updatedAt: string }>;
  importUsers(users: (User & { id: string })[]): Promise<{ created: number; updated: number }>;
  deleteUser(userId: string): Promise<{ id: string; erased: Record<string, number | boolean>; kept: { roomMessages: number; reason: string } }>;
  createRoom(roomId: string, options?: { name?: string; wsPost?: boolean }): Promise<Record<string, unknown>>;
  getRoom(roomId: string): Promise<Record<string, unknown>>;
  deleteRoom(roomId: string): Promise<unknown>;
  setMembers(roomId: string, userIds: Iterable<string>, options?: { role?: "member" | "moderator" }): Promise<{ added: string[] }>;
  listMembers(roomId: string): Promise<{ userId: string; role: string; joinedAt: string; lastReadSeq: number }[]>;
  removeMember(roomId: string, userId: string): Promise<unknown>;
  connections(userId: string): Promise<Record<string, unknown>[]>;
  disconnect(userId: string, options?: { code?: number; reason?: string; clientId?: string }): Promise<number>;
  unsubscribe(userId: string, channel: string): Promise<number>;
  stats(options?: { cluster?: boolean }): Promise<Record<string, unknown>>;
  health(): Promise<Record<string, unknown>>;
}

export class UserApi {
  listNotifications(options?: { unreadOnly?: boolean; limit?: number; cursor?: string; archived?: boolean }): Promise<{ items: Record<string, unknown>[]; unreadCount: number; nextCursor: string | null }>;
  markRead(ids: Iterable<string>): Promise<Changed>;
  markAllRead(): Promise<Changed>;
  postMessage(roomId: string, content: string): Promise<Record<string, unknown>>;
  listMessages(roomId: string, options?: { limit?: number; beforeSeq?: number }): Promise<Record<string, unknown>>;
  rooms(): Promise<Record<string, unknown>[]>;
}
