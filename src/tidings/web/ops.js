// The operations view's actions: find a user and act on their connections (disconnect,
// unsubscribe) and read their notifications' delivery logs, send (publish, to a user, to a
// role, broadcast), read a channel's history, look at a room (members, who is online,
// recent messages), and an event log: the server's connects and disconnects, followed
// live, with what the console did. Every action is a call of the documented HTTP API with
// the operator's key (docs/http-api.md): the console has no power of its own.

import { CLOSE_CODES } from "/tidings.js";

const $ = (id) => document.getElementById(id);
const LOG_SIZE = 200;
const RETRY_MS = 2000;

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

const when = (iso) => {
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? "–" : at.toLocaleString();
};

const closeCode = (code) => {
  const info = CLOSE_CODES[code];
  return info ? `${code} (${info.reason})` : String(code);
};

/** Split a text/event-stream buffer into its complete events: [{event, id, data}], rest. */
function sseEvents(buffer) {
  const events = [];
  let end;
  while ((end = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    const event = { event: "message", id: null, data: "" };
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event.event = value;
      else if (field === "id") event.id = value;
      else if (field === "data") event.data += value;
    }
    if (event.data) events.push(event);
  }
  return [events, buffer];
}

/**
 * Wire the forms. `key()` is the operator's API key (from the Operations form), or "".
 * Returns {poll()} for the view's one-second tick (it follows the found user), and
 * {follow(), unfollow()} to start and stop following the server's event log.
 */
export function setUpActions(key) {
  const state = { user: null, following: null };

  /** Add a line, newest first; a `user` is shown as a button that finds them. */
  function log(kind, text, at, user) {
    const list = $("event-log");
    const item = el("li", `log-${kind}`);
    const time = el("time", "muted", (at ? new Date(at) : new Date()).toLocaleTimeString());
    const what = el("span", null, text);
    if (user) {
      const find = button(user, "link-button", () => {
        $("find-user-id").value = user;
        findUser(user);
      });
      find.setAttribute("aria-label", `Find user ${user}`);
      what.prepend(find);
    }
    item.append(time, " ", el("span", "log-kind", kind), " ", what);
    list.prepend(item);
    while (list.childElementCount > LOG_SIZE) list.lastElementChild.remove();
  }

  // --- the server's event log, live (GET /api/events/stream) --------------------------

  function showEvent(e) {
    const who = `: ${e.clientId} (${e.transport}) from ${e.remoteAddress ?? "?"}`;
    if (e.event === "connect") log("connect", who, e.at, e.userId);
    else if (e.event === "disconnect") log("disconnect", `${who}, code ${closeCode(e.code)}`, e.at, e.userId);
  }

  function setFollowState(text, kind) {
    $("events-state").textContent = text;
    $("events-state").dataset.state = kind;
  }

  /**
   * Follow the event stream until unfollow(); reconnect after a break, resuming. Every
   * instance's events (scope=cluster); this instance's alone while the cluster is
   * unreachable (the two scopes' positions differ: a switch starts afresh).
   */
  async function follow() {
    unfollow();
    const run = { abort: new AbortController(), lastId: null, scope: "cluster" };
    state.following = run;
    while (state.following === run) {
      try {
        const headers = { Authorization: `Bearer ${key()}` };
        if (run.lastId !== null) headers["Last-Event-ID"] = run.lastId;
        const url = `/api/events/stream?scope=${run.scope}`;
        const response = await fetch(url, { headers, signal: run.abort.signal });
        if (response.status === 503 && run.scope === "cluster") {
          run.scope = "instance";
          run.lastId = null;
          continue;
        }
        if (!response.ok) {
          const body = await response.json().catch(() => null);
          setFollowState(`not following: ${body?.error?.message ?? `HTTP ${response.status}`}`, "off");
          if (response.status === 401 || response.status === 403) return;
        } else {
          setFollowState(run.scope === "cluster" ? "live" : "live (this instance only)", "live");
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            let events;
            [events, buffer] = sseEvents(buffer + value);
            for (const event of events) {
              if (event.id !== null) run.lastId = event.id;
              if (event.event === "gap") log("error", "some events were missed (the console fell behind)");
              else showEvent(JSON.parse(event.data));
            }
          }
          if (state.following === run) setFollowState("reconnecting…", "off");
          if (run.scope === "instance") {
            run.scope = "cluster"; // try the whole cluster again
            run.lastId = null;
          }
        }
      } catch (error) {
        if (state.following !== run) return;
        setFollowState(`reconnecting… (${error.message ?? error})`, "off");
      }
      // Wait before trying again; unfollow() ends the wait at once.
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, RETRY_MS);
        run.abort.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  function unfollow() {
    const run = state.following;
    state.following = null;
    if (run !== null) run.abort.abort();
    setFollowState("not following", "off");
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
    $("user-result").hidden = false;
    $("user-name").textContent = user;
    $("deliveries").hidden = true;
    await refreshUser(true);
  }

  async function refreshUser(first = false) {
    const user = state.user;
    if (user === null || !key()) return;
    const [connections, inbox] = await Promise.all([
      call("GET", `${userPath(user)}/connections`),
      first ? call("GET", `${userPath(user)}/notifications?limit=10`) : Promise.resolve(null),
    ]);
    if (state.user !== user) return;
    if (!connections.ok) {
      $("user-error").textContent = connections.data?.error?.message ?? `HTTP ${connections.status}`;
      return;
    }
    $("user-error").textContent = "";
    if (inbox?.ok) {
      $("user-unread").textContent = String(inbox.data.unreadCount);
      renderNotifications(user, inbox.data.items ?? []);
    }
    renderConnections(user, connections.data.connections ?? []);
  }

  function renderNotifications(user, items) {
    $("user-notifications-empty").hidden = items.length > 0;
    $("user-notifications").querySelector("tbody").replaceChildren(
      ...items.map((n) => {
        const tr = el("tr");
        tr.dataset.notification = n.id;
        tr.append(
          el("td", null, n.title ?? n.type),
          el("td", null, when(n.createdAt)),
          el("td", null, n.readAt ? "yes" : "no"),
          el("td"),
        );
        const open = button("Deliveries", "secondary", () => showDeliveries(user, n));
        open.setAttribute("aria-label", `Deliveries of ${n.title ?? n.id}`);
        tr.lastChild.append(open);
        return tr;
      }),
    );
  }

  async function showDeliveries(user, n) {
    const result = await call("GET", `${userPath(user)}/notifications/${encodeURIComponent(n.id)}/deliveries`);
    $("deliveries").hidden = false;
    $("deliveries-title").textContent = n.title ?? n.id;
    const list = $("deliveries-list");
    if (!result.ok) {
      $("deliveries-empty").hidden = true;
      list.replaceChildren(el("p", "error", result.data?.error?.message ?? `HTTP ${result.status}`));
      return;
    }
    const deliveries = result.data.deliveries ?? [];
    $("deliveries-empty").hidden = deliveries.length > 0;
    list.replaceChildren(
      ...deliveries.map((d) => {
        const box = el("div", "delivery");
        box.dataset.channel = d.channel;
        const head = el("p");
        head.append(
          el("strong", null, d.channel),
          " ",
          el("span", `state state-${d.state}`, d.state),
          ` · ${d.attempts} attempt${d.attempts === 1 ? "" : "s"} · unless ${d.unless}`,
          d.dueAt ? ` · due ${new Date(d.dueAt * 1000).toLocaleString()}` : "",
        );
        const events = el("ol", "log");
        for (const e of d.log ?? []) {
          const item = el("li", `log-${e.event}`);
          item.append(
            el("time", "muted", new Date(e.at * 1000).toLocaleTimeString()),
            " ",
            el("span", "log-kind", e.event),
            e.attempt ? ` attempt ${e.attempt}` : "",
            e.reason ? `: ${e.reason}` : "",
            e.nextAttemptAt ? ` (next at ${new Date(e.nextAttemptAt * 1000).toLocaleTimeString()})` : "",
          );
          events.append(item);
        }
        box.append(head, events);
        return box;
      }),
    );
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
          el("td", null, c.transport ?? "–"),
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

  $("history-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const channel = $("history-channel").value.trim();
    if (!channel) return;
    const result = await call("GET", `/api/channels/${encodeURIComponent(channel)}/history`); // the newest 50, or history_size
    $("history-result").hidden = false;
    const body = $("history").querySelector("tbody");
    if (!result.ok) {
      $("history-info").textContent = result.data?.error?.message ?? `HTTP ${result.status}`;
      body.replaceChildren();
      return;
    }
    const pubs = result.data.publications ?? [];
    $("history-info").textContent =
      `${channel}: ${pubs.length} kept publication${pubs.length === 1 ? "" : "s"} shown, ` +
      `stream at offset ${result.data.offset} (epoch ${result.data.epoch})`;
    body.replaceChildren(
      ...pubs
        .slice()
        .reverse()
        .map((p) => {
          const tr = el("tr");
          tr.append(
            el("td", "num", p.offset),
            el("td", "mono", p.type),
            el("td", null, when(p.timestamp)),
            el("td", "mono data", JSON.stringify(p.data)),
          );
          return tr;
        }),
    );
  });

  $("room-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const room = $("room-id").value.trim();
    if (!room) return;
    const path = `/api/rooms/${encodeURIComponent(room)}`;
    const [info, members, presence, messages] = await Promise.all([
      call("GET", path),
      call("GET", `${path}/members`),
      call("GET", `${path}/presence`),
      call("GET", `${path}/messages?limit=20`),
    ]);
    $("room-result").hidden = false;
    if (!info.ok) {
      $("room-info").textContent = info.data?.error?.message ?? `HTTP ${info.status}`;
      $("members").querySelector("tbody").replaceChildren();
      $("room-messages").replaceChildren();
      return;
    }
    const online = new Set(presence.ok ? presence.data.online : []);
    $("room-info").textContent =
      `${info.data.name ?? info.data.id}: ${info.data.lastSeq} messages, ${online.size} online, ` +
      `created ${new Date(info.data.createdAt).toLocaleString()}` +
      (presence.ok ? "" : ` (presence unavailable: ${presence.data?.error?.message ?? presence.status})`);
    const recent = messages.ok ? messages.data.messages : [];
    $("room-messages-empty").hidden = recent.length > 0;
    $("room-messages").replaceChildren(
      ...recent.map((m) => {
        const item = el("li", m.isDeleted ? "deleted" : null);
        item.append(
          el("time", "muted", when(m.createdAt)),
          " ",
          el("strong", null, m.authorName ?? m.authorId),
          " ",
          el("span", null, m.isDeleted ? "(deleted)" : typeof m.content === "string" ? m.content : JSON.stringify(m.content)),
          m.isEdited ? el("span", "muted", " (edited)") : "",
        );
        return item;
      }),
    );
    $("members").querySelector("tbody").replaceChildren(
      ...(members.data?.members ?? []).map((m) => {
        const tr = el("tr");
        tr.dataset.member = m.userId;
        tr.append(
          el("td", "mono", m.userId),
          el("td", null, m.role),
          el("td", online.has(m.userId) ? "online" : "muted", online.has(m.userId) ? "online" : "–"),
          el("td", "num", m.lastReadSeq),
          el("td"),
        );
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

  return { poll: () => refreshUser(), follow, unfollow };
}
