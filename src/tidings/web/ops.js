// The operations view's actions: find a user and act on their connections (disconnect,
// unsubscribe), send (publish, to a user, to a role, broadcast), look at a room and its
// members, and an event log of what the console did and what it saw change. Every action
// is a call of the documented HTTP API with the operator's key (docs/http-api.md): the
// console has no power of its own.

const $ = (id) => document.getElementById(id);
const LOG_SIZE = 200;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function button(label, className, onclick) {
  const b = el("button", className, label);
  b.type = "button";
  b.addEventListener("click", onclick);
  return b;
}

const since = (iso) => {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (Number.isNaN(seconds)) return "–";
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
};

/**
 * Wire the forms. `key()` is the operator's API key (from the Operations form), or "".
 * Returns {poll()} for the view's one-second tick (it follows the found user).
 */
export function setUpActions(key) {
  const state = { user: null, clients: null };

  function log(kind, text) {
    const list = $("event-log");
    const item = el("li", `log-${kind}`);
    const time = el("time", "muted", new Date().toLocaleTimeString());
    item.append(time, " ", el("span", "log-kind", kind), " ", el("span", null, text));
    list.prepend(item);
    while (list.childElementCount > LOG_SIZE) list.lastElementChild.remove();
  }

  async function call(method, path, body) {
    const response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${key()}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, data };
  }

  /** Call and log it: "POST /api/publish → 200 {...}". */
  async function act(method, path, body, what) {
    const result = await call(method, path, body);
    const detail = result.ok ? JSON.stringify(result.data) : (result.data?.error?.message ?? `HTTP ${result.status}`);
    log(result.ok ? "action" : "error", `${what}: ${result.status} ${detail}`);
    return result;
  }

  const userPath = (user) => `/api/users/${encodeURIComponent(user)}`;

  async function findUser(user) {
    state.user = user;
    state.clients = null;
    $("user-result").hidden = false;
    $("user-name").textContent = user;
    await refreshUser(true);
  }

  async function refreshUser(first = false) {
    const user = state.user;
    if (user === null || !key()) return;
    const [connections, inbox] = await Promise.all([
      call("GET", `${userPath(user)}/connections`),
      first ? call("GET", `${userPath(user)}/notifications?limit=1`) : Promise.resolve(null),
    ]);
    if (state.user !== user) return;
    if (!connections.ok) {
      $("user-error").textContent = connections.data?.error?.message ?? `HTTP ${connections.status}`;
      return;
    }
    $("user-error").textContent = "";
    if (inbox?.ok) $("user-unread").textContent = String(inbox.data.unreadCount);
    const list = connections.data.connections ?? [];
    // The event log follows the user: connections that came and went since the last look.
    const ids = new Set(list.map((c) => c.clientId));
    if (state.clients !== null) {
      for (const c of list) if (!state.clients.has(c.clientId)) log("connect", `${user}: ${c.clientId} from ${c.remoteAddress ?? "?"}`);
      for (const id of state.clients) if (!ids.has(id)) log("disconnect", `${user}: ${id} closed`);
    }
    state.clients = ids;
    renderConnections(user, list);
  }

  function renderConnections(user, list) {
    $("connections-empty").hidden = list.length > 0;
    $("disconnect-all").disabled = list.length === 0;
    $("connections").querySelector("tbody").replaceChildren(
      ...list.map((c) => {
        const tr = el("tr");
        tr.dataset.client = c.clientId;
        const subs = el("td");
        for (const s of c.subscriptions ?? []) {
          const chip = el("span", "sub", s.channel);
          chip.append(
            button("×", "chip-button", () =>
              act("POST", `${userPath(user)}/unsubscribe`, { channel: s.channel }, `unsubscribe ${user} from ${s.channel}`).then(() => refreshUser()),
            ),
          );
          chip.lastChild.setAttribute("aria-label", `Unsubscribe ${user} from ${s.channel}`);
          subs.append(chip, " ");
        }
        const close = button("Disconnect", "secondary danger", () =>
          act("POST", `${userPath(user)}/disconnect`, { clientId: c.clientId, code: Number($("close-code").value) }, `disconnect ${c.clientId} (${$("close-code").value})`).then(() => refreshUser()),
        );
        tr.append(
          el("td", "mono", c.clientId),
          el("td", "mono", c.remoteAddress ?? "–"),
          el("td", null, since(c.connectedAt)),
          el("td", "mono", (c.roles ?? []).join(", ") || "–"),
          subs,
          el("td", null, ""),
        );
        tr.lastChild.append(close);
        return tr;
      }),
    );
  }

  $("find-user").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = $("find-user-id").value.trim();
    if (user) findUser(user);
  });
  $("disconnect-all").addEventListener("click", () => {
    const user = state.user;
    if (user === null) return;
    const code = Number($("close-code").value);
    act("POST", `${userPath(user)}/disconnect`, { code }, `disconnect every connection of ${user} (${code})`).then(() => refreshUser());
  });

  $("send-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const target = String(form.get("target"));
    const name = String(form.get("name") ?? "").trim();
    let data;
    try {
      data = JSON.parse(String(form.get("data") || "null"));
    } catch (error) {
      log("error", `data is not JSON: ${error.message}`);
      return;
    }
    const type = String(form.get("type"));
    const routes = {
      channel: ["/api/publish", { channel: name, type, data }, `publish to ${name}`],
      user: [`${userPath(name)}/send`, { type, data }, `send to user ${name}`],
      role: [`/api/roles/${encodeURIComponent(name)}/send`, { type, data }, `send to role ${name}`],
      all: ["/api/broadcast", { type, data }, "broadcast"],
    };
    const [path, body, what] = routes[target];
    const result = await act("POST", path, body, what);
    $("send-result").textContent = result.ok ? JSON.stringify(result.data) : (result.data?.error?.message ?? `HTTP ${result.status}`);
  });
  const nameRow = () => {
    const target = $("send-target").value;
    $("send-name-row").hidden = target === "all";
    $("send-name-label").textContent = { channel: "Channel", user: "User id", role: "Role" }[target] ?? "";
  };
  $("send-target").addEventListener("change", nameRow);
  nameRow();

  $("room-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const room = $("room-id").value.trim();
    if (!room) return;
    const path = `/api/rooms/${encodeURIComponent(room)}`;
    const [info, members] = await Promise.all([call("GET", path), call("GET", `${path}/members`)]);
    $("room-result").hidden = false;
    if (!info.ok) {
      $("room-info").textContent = info.data?.error?.message ?? `HTTP ${info.status}`;
      $("members").querySelector("tbody").replaceChildren();
      return;
    }
    $("room-info").textContent = `${info.data.name ?? info.data.id}: ${info.data.lastSeq} messages, created ${new Date(info.data.createdAt).toLocaleString()}`;
    $("members").querySelector("tbody").replaceChildren(
      ...(members.data?.members ?? []).map((m) => {
        const tr = el("tr");
        tr.append(el("td", "mono", m.userId), el("td", null, m.role), el("td", "num", m.lastReadSeq), el("td"));
        tr.lastChild.append(
          button("Remove", "secondary danger", () =>
            act("DELETE", `${path}/members/${encodeURIComponent(m.userId)}`, undefined, `remove ${m.userId} from ${room}`).then(() =>
              $("room-form").requestSubmit(),
            ),
          ),
        );
        return tr;
      }),
    );
  });
  $("clear-log").addEventListener("click", () => $("event-log").replaceChildren());

  return { poll: () => refreshUser() };
}
