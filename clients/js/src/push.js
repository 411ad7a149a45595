// Web Push from the page: register the service worker (tidings/sw, served as
// /tidings-sw.js), subscribe with the server's VAPID public key, and give the server the
// subscription (POST /api/me/push-subscriptions with the user's token), so escalation can
// reach the user when no tab is open (docs/delivery.md#web-push).

import { httpOrigin } from "./wire.js";

/** Whether this browser can do Web Push (a service worker, PushManager, Notification). */
export function pushSupported() {
  return (
    typeof navigator !== "undefined" &&
    "serviceWorker" in navigator &&
    typeof PushManager !== "undefined" &&
    typeof Notification !== "undefined"
  );
}

/** The bytes of a base64url string (a VAPID public key). */
export function base64urlBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/** A call to /api/me/push-subscriptions with the user's token: {status, data}. */
async function api(client, method, body) {
  const token = await client.getToken();
  const response = await fetch(`${httpOrigin(client.url)}/api/me/push-subscriptions`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error?.message ?? `HTTP ${response.status}`);
  return { status: response.status, data };
}

/** The server's VAPID public key (base64url), from GET /api/me/push-subscriptions. */
export async function pushPublicKey(client) {
  return (await api(client, "GET")).data.publicKey;
}

/** Resolve once a registration has an active worker (a new one installs first). */
function activated(registration) {
  if (registration.active) return Promise.resolve(registration);
  const worker = registration.installing ?? registration.waiting;
  return new Promise((resolve, reject) => {
    worker.addEventListener("statechange", () => {
      if (worker.state === "activated") resolve(registration);
      else if (worker.state === "redundant") reject(new Error("the service worker failed to install"));
    });
  });
}

/**
 * Register the service worker, subscribe this browser for push and send the
 * subscription to the server. Asks for the notification permission if it was not
 * decided (call it from a click: browsers ask only after a user gesture).
 *
 * @param client a tidings Client (its URL gives the server, its token the user)
 * @param options.serviceWorker the worker's URL on this page's origin ("/tidings-sw.js")
 * @param options.scope the registration's scope (the worker's folder by default)
 * @param options.registration an existing registration to use instead
 * @returns {registration, subscription, created} (created: new to the server)
 */
export async function subscribePush(client, options = {}) {
  if (!pushSupported()) throw new Error("this browser has no Web Push");
  const publicKey = await pushPublicKey(client);
  const registration = await activated(
    options.registration ??
      (await navigator.serviceWorker.register(options.serviceWorker ?? "/tidings-sw.js", options.scope ? { scope: options.scope } : undefined)),
  );
  const permission = Notification.permission === "default" ? await Notification.requestPermission() : Notification.permission;
  if (permission !== "granted") throw new Error(`notifications are not allowed (${permission})`);
  const key = base64urlBytes(publicKey);
  let subscription = await registration.pushManager.getSubscription();
  const current = subscription?.options?.applicationServerKey;
  if (subscription && current && !sameBytes(new Uint8Array(current), key)) {
    // Subscribed with another server's key (a rotated VAPID key): start again.
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  const { status } = await api(client, "POST", subscription.toJSON());
  return { registration, subscription, created: status === 201 };
}

/** Unsubscribe this browser and tell the server; resolves false when it was not subscribed. */
export async function unsubscribePush(client, registration) {
  const subscription = await registration.pushManager.getSubscription();
  if (!subscription) return false;
  const token = await client.getToken();
  const query = new URLSearchParams({ endpoint: subscription.endpoint });
  await fetch(`${httpOrigin(client.url)}/api/me/push-subscriptions?${query}`, {
    method: "DELETE",
    headers: { Authorization: `Bearer ${token}` },
  });
  return subscription.unsubscribe();
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
