// The user's in-app preferences (GET and PUT /api/me/preferences, with the user's own
// token): which categories may notify them. "*" is the default for the rest.

/** The HTTP origin of a client's WebSocket URL (ws: -> http:, wss: -> https:). */
export function httpOrigin(wsUrl) {
  const url = new URL(wsUrl);
  const scheme = url.protocol === "wss:" ? "https:" : url.protocol === "ws:" ? "http:" : url.protocol;
  return `${scheme}//${url.host}`;
}

async function call(client, method, body) {
  const token = await client.getToken();
  const response = await fetch(`${httpOrigin(client.url)}/api/me/preferences`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error?.message ?? `HTTP ${response.status}`);
  return data.inApp ?? {};
}

/** The user's switches: {category: bool, "*": bool}. */
export function loadPreferences(client) {
  return call(client, "GET");
}

/** Replace the user's switches; resolves with what the server stored. */
export function savePreferences(client, inApp) {
  return call(client, "PUT", { inApp });
}
