// tidings-sw.js: tidings 0.1.0, built from clients/js (the npm package "tidings") by
// clients/js/scripts/build.mjs. Do not edit: change clients/js/src and rebuild.
(() => {
  // src/sw.js
  function notificationOptions(payload) {
    const p = payload ?? {};
    return {
      body: typeof p.body === "string" ? p.body : "",
      // One notification per tidings notification: a retried push replaces, not repeats.
      tag: typeof p.tag === "string" ? p.tag : void 0,
      // A CRITICAL one stays until the user acts on it.
      requireInteraction: p.priority === "CRITICAL",
      silent: p.priority === "LOW",
      data: { id: p.id ?? null, url: typeof p.url === "string" ? p.url : null, category: p.category ?? null, priority: p.priority ?? null }
    };
  }
  function readPayload(data) {
    if (!data) return {};
    try {
      const parsed = data.json();
      return parsed !== null && typeof parsed === "object" ? parsed : { title: String(parsed) };
    } catch {
      return { title: data.text() };
    }
  }
  function showPush(registration, data) {
    const payload = readPayload(data);
    const title = typeof payload.title === "string" && payload.title ? payload.title : "New notification";
    return registration.showNotification(title, notificationOptions(payload));
  }
  function clickTarget(url, origin) {
    if (typeof url !== "string" || !url) return null;
    try {
      const target = new URL(url, origin);
      return target.protocol === "https:" || target.protocol === "http:" ? target.href : null;
    } catch {
      return null;
    }
  }
  async function openOrFocus(clients, url, origin) {
    const target = clickTarget(url, origin) ?? new URL("/", origin).href;
    const windows = await clients.matchAll({ type: "window", includeUncontrolled: true });
    const same = windows.find((w) => w.url === target);
    if (same) return same.focus();
    return clients.openWindow(target);
  }
  function installPushHandlers(scope) {
    scope.addEventListener("push", (event) => {
      event.waitUntil(showPush(scope.registration, event.data));
    });
    scope.addEventListener("notificationclick", (event) => {
      event.notification.close();
      event.waitUntil(openOrFocus(scope.clients, event.notification.data?.url, scope.location.origin));
    });
  }
  if (typeof ServiceWorkerGlobalScope !== "undefined" && globalThis instanceof ServiceWorkerGlobalScope) {
    installPushHandlers(globalThis);
  }
})();
