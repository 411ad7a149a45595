// tidings/sw: the service worker for Web Push (served as /tidings-sw.js).
//
// It shows the notification a push carries and, when the user clicks it, focuses a tab
// already at its URL or opens one. The payload is what the server's Web Push sender
// encrypts (tidings.delivery.push.payload): {id, title, body, url, priority, category,
// tag}. Loaded as the worker itself it installs its handlers; a worker of your own can
// instead `import { installPushHandlers } from "tidings/sw"` (a module worker) or call
// the functions below from its own listeners. Register it with subscribePush() from
// "tidings" (docs/delivery.md#web-push).

/** The options of showNotification() for a push payload. */
export function notificationOptions(payload) {
  const p = payload ?? {};
  return {
    body: typeof p.body === "string" ? p.body : "",
    // One notification per tidings notification: a retried push replaces, not repeats.
    tag: typeof p.tag === "string" ? p.tag : undefined,
    // A CRITICAL one stays until the user acts on it.
    requireInteraction: p.priority === "CRITICAL",
    silent: p.priority === "LOW",
    data: { id: p.id ?? null, url: typeof p.url === "string" ? p.url : null, category: p.category ?? null, priority: p.priority ?? null },
  };
}

/** The payload of a push event's data (JSON; a text payload becomes the title). */
export function readPayload(data) {
  if (!data) return {};
  try {
    const parsed = data.json();
    return parsed !== null && typeof parsed === "object" ? parsed : { title: String(parsed) };
  } catch {
    return { title: data.text() };
  }
}

/** Show the notification of a push; resolves once it is shown. */
export function showPush(registration, data) {
  const payload = readPayload(data);
  const title = typeof payload.title === "string" && payload.title ? payload.title : "New notification";
  return registration.showNotification(title, notificationOptions(payload));
}

/**
 * Where a click goes: the notification's URL when it is http(s), made absolute against
 * the worker's origin; null for none (then the worker's origin).
 */
export function clickTarget(url, origin) {
  if (typeof url !== "string" || !url) return null;
  try {
    const target = new URL(url, origin);
    return target.protocol === "https:" || target.protocol === "http:" ? target.href : null;
  } catch {
    return null;
  }
}

/** Focus a window already at `url`, else open one there (the worker's origin without a URL). */
export async function openOrFocus(clients, url, origin) {
  const target = clickTarget(url, origin) ?? new URL("/", origin).href;
  const windows = await clients.matchAll({ type: "window", includeUncontrolled: true });
  const same = windows.find((w) => w.url === target);
  if (same) return same.focus();
  return clients.openWindow(target);
}

/** Add the push and notificationclick listeners to a service worker's global scope. */
export function installPushHandlers(scope) {
  scope.addEventListener("push", (event) => {
    event.waitUntil(showPush(scope.registration, event.data));
  });
  scope.addEventListener("notificationclick", (event) => {
    event.notification.close();
    event.waitUntil(openOrFocus(scope.clients, event.notification.data?.url, scope.location.origin));
  });
}

// Loaded as a service worker (not imported by a page, a test or Node): install.
if (typeof ServiceWorkerGlobalScope !== "undefined" && globalThis instanceof ServiceWorkerGlobalScope) {
  installPushHandlers(globalThis);
}
