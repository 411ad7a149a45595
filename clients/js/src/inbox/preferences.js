// The user's preferences (GET and PUT /api/me/preferences, with the user's own token):
// per channel (inApp, push, email, sms), which categories may reach them; "*" is the
// default for the rest.

import { httpOrigin } from "../wire.js";

export { httpOrigin };

/** The channels a user switches, in the order the panel shows them. */
export const CHANNELS = Object.freeze(["inApp", "push", "email", "sms"]);

async function call(client, method, body) {
  const token = await client.getToken();
  const response = await fetch(`${httpOrigin(client.url)}/api/me/preferences`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error?.message ?? `HTTP ${response.status}`);
  return data;
}

/** Every channel's switches: {inApp: {category: bool, "*": bool}, push, email, sms, quietHours}. */
export function loadChannelPreferences(client) {
  return call(client, "GET");
}

/**
 * Replace the switches of the channels given (`{email: {"*": false}}` leaves the others
 * alone); resolves with everything the server stored.
 */
export function saveChannelPreferences(client, switches) {
  return call(client, "PUT", switches);
}

/** The user's in-app switches: {category: bool, "*": bool}. */
export async function loadPreferences(client) {
  return (await call(client, "GET")).inApp ?? {};
}

/** Replace the user's in-app switches; resolves with what the server stored. */
export async function savePreferences(client, inApp) {
  return (await call(client, "PUT", { inApp })).inApp ?? {};
}

/** A switch as the server decides it: the category's own, else "*", else on. */
export function switchedOn(prefs, channel, category) {
  const mine = prefs?.[channel] ?? {};
  return mine[category] ?? mine["*"] ?? true;
}
