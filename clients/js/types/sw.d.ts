// TypeScript declarations for "tidings/sw" (the Web Push service worker; /tidings-sw.js).

/** What the server's Web Push sender sends (encrypted) to the worker. */
export interface PushPayload {
  id: string;
  title: string;
  body: string;
  url: string | null;
  priority: "LOW" | "MEDIUM" | "HIGH" | "CRITICAL";
  category: string | null;
  tag: string;
}

/** The options of showNotification() for a payload (tag, body, data.url, ...). */
export function notificationOptions(payload: Partial<PushPayload>): NotificationOptions;
/** A push event's data as a payload (a text payload becomes the title). */
export function readPayload(data: { json(): unknown; text(): string } | null): Partial<PushPayload>;
/** Show the notification of a push. */
export function showPush(
  registration: { showNotification(title: string, options?: NotificationOptions): Promise<void> },
  data: { json(): unknown; text(): string } | null,
): Promise<void>;
/** Where a click goes: an http(s) URL made absolute against `origin`, or null. */
export function clickTarget(url: unknown, origin: string): string | null;
/** Focus a window already at the URL, else open one. */
export function openOrFocus(clients: unknown, url: unknown, origin: string): Promise<unknown>;
/** Add the push and notificationclick listeners to a service worker's global scope. */
export function installPushHandlers(scope: unknown): void;
