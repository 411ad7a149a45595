// inbox.js: tidings 0.1.0, built from clients/js (the npm package "tidings") by
// clients/js/scripts/build.mjs. Do not edit: change clients/js/src and rebuild.

// src/inbox/dom.js
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === void 0 || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === void 0 || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}
var PATHS = {
  bell: "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1z",
  check: "M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4z",
  archive: "M20.5 5.2 19.1 3.5A1.5 1.5 0 0 0 18 3H6a1.5 1.5 0 0 0-1.1.5L3.5 5.2A2 2 0 0 0 3 6.5V19a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V6.5a2 2 0 0 0-.5-1.3zM12 17.5 6.5 12H10v-2h4v2h3.5zM5.1 5l.8-1h12l.9 1z",
  unarchive: "M20.5 5.2 19.1 3.5A1.5 1.5 0 0 0 18 3H6a1.5 1.5 0 0 0-1.1.5L3.5 5.2A2 2 0 0 0 3 6.5V19a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V6.5a2 2 0 0 0-.5-1.3zM12 9.5l5.5 5.5H14v2h-4v-2H6.5zM5.1 5l.8-1h12l.9 1z",
  delete: "M6 19a2 2 0 0 0 2 2h8a2 2 0 0 0 2-2V7H6zM19 4h-3.5l-1-1h-5l-1 1H5v2h14z",
  gear: "M19.4 13a7.5 7.5 0 0 0 0-2l2.1-1.6-2-3.5-2.5 1a7.4 7.4 0 0 0-1.7-1L15 3h-4l-.4 2.8a7.4 7.4 0 0 0-1.7 1l-2.5-1-2 3.5L6.6 11a7.5 7.5 0 0 0 0 2l-2.1 1.6 2 3.5 2.5-1a7.4 7.4 0 0 0 1.7 1L11 21h4l.4-2.8a7.4 7.4 0 0 0 1.7-1l2.5 1 2-3.5zM13 15.5a3.5 3.5 0 1 1 0-7 3.5 3.5 0 0 1 0 7z"
};
function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", PATHS[name]);
  svg.append(path);
  return svg;
}
function safeUrl(url) {
  if (typeof url !== "string") return null;
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}

// src/inbox/store.js
var REMOVED = /* @__PURE__ */ new Set(["notification_archived", "notification_deleted"]);
var bySeq = (a, b) => (b.seq ?? 0) - (a.seq ?? 0);
var InboxStore = class extends EventTarget {
  /**
   * @param client a tidings Client (connected or not; the store follows its events)
   * @param options.pageSize notifications per page (1 to 100, default 20)
   */
  constructor(client, { pageSize = 20 } = {}) {
    super();
    this.client = client;
    this.pageSize = pageSize;
    this.items = /* @__PURE__ */ new Map();
    this.archived = /* @__PURE__ */ new Map();
    this.cursors = { all: void 0, unread: void 0, archived: void 0 };
    this.floors = { all: Infinity, unread: Infinity, archived: Infinity };
    this.loading = false;
    this.error = null;
    this.online = client.connected;
    this.unreadCount = client.unreadCount ?? 0;
    this.latest = null;
    this._off = [];
    this._attach();
    if (client.connected) this.reload();
  }
  /** Stop following the client. */
  detach() {
    for (const off of this._off) off();
    this._off = [];
  }
  /** The loaded notifications of a tab ("all", "unread", "archived" or "category:<name>"), newest first. */
  view(tab = "all") {
    const floor = this.floors[listOf(tab)];
    if (tab === "archived") return [...this.archived.values()].filter((n) => (n.seq ?? 0) >= floor).sort(bySeq);
    const all = [...this.items.values()].filter((n) => (n.seq ?? 0) >= floor).sort(bySeq);
    if (tab === "unread") return all.filter((n) => !n.readAt);
    if (tab.startsWith("category:")) {
      const category = tab.slice("category:".length);
      return all.filter((n) => n.category === category);
    }
    return all;
  }
  /** Categories of the loaded notifications, sorted. */
  categories() {
    const names = /* @__PURE__ */ new Set();
    for (const n of this.items.values()) if (n.category) names.add(n.category);
    return [...names].sort();
  }
  /** Whether a tab's list has more pages on the server. */
  hasMore(tab = "all") {
    return this.cursors[listOf(tab)] !== null;
  }
  /** The first page again (after each connection: the server's list is the truth). */
  async reload() {
    this.cursors = { all: void 0, unread: void 0, archived: void 0 };
    this.floors = { all: Infinity, unread: Infinity, archived: Infinity };
    this.items = /* @__PURE__ */ new Map();
    this.archived = /* @__PURE__ */ new Map();
    await this.loadMore("all");
  }
  /** The next page of a tab's list. */
  async loadMore(tab = "all") {
    const list = listOf(tab);
    const cursor = this.cursors[list];
    if (cursor === null || this.loading) return;
    this.loading = true;
    this.error = null;
    this._changed();
    try {
      const page = await this.client.getNotifications({
        limit: this.pageSize,
        unreadOnly: list === "unread",
        archived: list === "archived",
        cursor: cursor ?? null
      });
      const into = list === "archived" ? this.archived : this.items;
      for (const n of page.items ?? []) {
        if (!into.has(n.id)) into.set(n.id, n);
        this.floors[list] = Math.min(this.floors[list], n.seq ?? 0);
      }
      this.cursors[list] = page.nextCursor ?? null;
      if (this.cursors[list] === null) this.floors[list] = 0;
    } catch (error) {
      this.error = error;
    } finally {
      this.loading = false;
      this._changed();
    }
  }
  async markRead(ids) {
    this._apply("notification_read", await this.client.markRead(ids));
  }
  async markAllRead() {
    this._apply("notification_read", await this.client.markRead({ all: true }));
  }
  async archive(ids) {
    this._apply("notification_archived", await this.client.archive(ids));
  }
  async unarchive(ids) {
    this._apply("notification_unarchived", await this.client.unarchive(ids));
  }
  async remove(ids) {
    this._apply("notification_deleted", await this.client.delete(ids));
  }
  _attach() {
    const c = this.client;
    const own = (msg) => msg.channel === void 0;
    this._off.push(
      c.on("_connected", () => {
        this.online = true;
        this._changed();
        this.reload();
      }),
      c.on("_disconnected", () => {
        this.online = false;
        this._changed();
      }),
      c.on("_unread", (event) => {
        this.unreadCount = event.unreadCount;
        this._changed();
      }),
      c.on("notification", (msg) => {
        if (!own(msg) || !msg.data || typeof msg.data.id !== "string") return;
        const known = this.items.has(msg.data.id);
        this.items.set(msg.data.id, { ...this.items.get(msg.data.id), ...msg.data });
        if (!known && !msg.data.recovered) this.latest = msg.data;
        this._changed();
      })
    );
    for (const type of ["notification_read", "notification_unarchived", ...REMOVED]) {
      this._off.push(c.on(type, (msg) => own(msg) && this._apply(type, msg.data)));
    }
  }
  _apply(type, data) {
    if (!data || !Array.isArray(data.ids)) return;
    const now = (/* @__PURE__ */ new Date()).toISOString();
    let unknown = false;
    for (const id of data.ids) {
      if (type === "notification_unarchived") {
        const n2 = this.archived.get(id) ?? this.items.get(id);
        this.archived.delete(id);
        if (n2 === void 0) unknown = true;
        else this.items.set(id, withoutArchivedAt(n2));
        continue;
      }
      const n = this.items.get(id);
      if (type === "notification_deleted") this.archived.delete(id);
      if (n === void 0) continue;
      if (REMOVED.has(type)) this.items.delete(id);
      else if (!n.readAt) this.items.set(id, { ...n, readAt: now });
      if (type === "notification_archived") this.archived.set(id, { ...n, archivedAt: now });
    }
    if (unknown && this.online) this.reload();
    this._changed();
  }
  _changed() {
    this.dispatchEvent(new Event("change"));
  }
};
function listOf(tab) {
  return tab === "unread" || tab === "archived" ? tab : "all";
}
function withoutArchivedAt(n) {
  const { archivedAt: _, ...rest } = n;
  return rest;
}

// src/inbox/strings.js
var STRINGS = Object.freeze({
  title: "Notifications",
  all: "All",
  unread: "Unread",
  archived: "Archived",
  tabs: "Show",
  markAllRead: "Mark all read",
  markRead: "Mark read",
  archive: "Archive",
  unarchive: "Move to inbox",
  delete: "Delete",
  loadMore: "Load more",
  loading: "Loading…",
  empty: "You're all caught up.",
  emptyUnread: "No unread notifications.",
  emptyCategory: "Nothing in this category.",
  emptyArchived: "No archived notifications.",
  offline: "Offline. Reconnecting…",
  error: "Could not load notifications.",
  preferences: "Preferences",
  preferencesIntro: "How each kind of notification may reach you:",
  everythingElse: "Everything else",
  category: "Category",
  channels: { inApp: "In app", push: "Push", email: "Email", sms: "SMS" },
  /** A switch's accessible name: the category and the channel. */
  channelSwitch: (category, channel) => `${category}: ${channel}`,
  save: "Save",
  saved: "Saved.",
  close: "Close",
  justNow: "just now",
  priority: { LOW: "Low", MEDIUM: "Medium", HIGH: "High", CRITICAL: "Critical" },
  /** The bell's accessible name. */
  bell: (unread) => unread > 0 ? `Notifications, ${unread} unread` : "Notifications",
  /** Announced to screen readers when a live notification arrives. */
  arrived: (title) => `New notification: ${title}`,
  /** An item's tool, named with the notification's title for screen readers. */
  itemAction: (action, title) => `${action}: ${title}`
});
function mergeStrings(overrides = {}) {
  return {
    ...STRINGS,
    ...overrides,
    priority: { ...STRINGS.priority, ...overrides.priority ?? {} },
    channels: { ...STRINGS.channels, ...overrides.channels ?? {} }
  };
}
var UNITS = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["week", 7 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60]
];
function relativeTime(iso, now = Date.now(), locale = void 0, strings = STRINGS) {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "";
  const seconds = Math.round((then - now) / 1e3);
  if (Math.abs(seconds) < 45) return strings.justNow;
  const format = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return format.format(Math.round(seconds / 60), "minute");
}

// src/inbox/styles.js
var LIGHT = `
  --_bg: var(--tidings-bg, #ffffff);
  --_fg: var(--tidings-fg, #111827);
  --_muted: var(--tidings-muted, #4b5563);
  --_border: var(--tidings-border, #d1d5db);
  --_accent: var(--tidings-accent, #1d4ed8);
  --_accent-fg: var(--tidings-accent-fg, #ffffff);
  --_unread-bg: var(--tidings-unread-bg, #eff6ff);
  --_hover: var(--tidings-hover, #f3f4f6);
  --_danger: var(--tidings-danger, #b91c1c);
  --_focus: var(--tidings-focus, #2563eb);
`;
var DARK = `
  --_bg: var(--tidings-bg, #111827);
  --_fg: var(--tidings-fg, #f9fafb);
  --_muted: var(--tidings-muted, #d1d5db);
  --_border: var(--tidings-border, #4b5563);
  --_accent: var(--tidings-accent, #93c5fd);
  --_accent-fg: var(--tidings-accent-fg, #0b1220);
  --_unread-bg: var(--tidings-unread-bg, #1e293b);
  --_hover: var(--tidings-hover, #1f2937);
  --_danger: var(--tidings-danger, #fca5a5);
  --_focus: var(--tidings-focus, #93c5fd);
`;
var BASE = `
:host { ${LIGHT} display: block; color: var(--_fg); font: var(--tidings-font, 14px/1.45 system-ui, sans-serif); }
:host([theme="dark"]) { ${DARK} }
@media (prefers-color-scheme: dark) { :host(:not([theme="light"])) { ${DARK} } }
[hidden] { display: none !important; }
button, a.action { font: inherit; cursor: pointer; border-radius: var(--tidings-radius, 6px); }
button { background: transparent; color: var(--_fg); border: 1px solid var(--_border); padding: 4px 10px; }
button:hover { background: var(--_hover); }
button:disabled { opacity: .55; cursor: default; }
:focus-visible { outline: 2px solid var(--_focus); outline-offset: 2px; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
`;
var INBOX_CSS = `${BASE}
.inbox { background: var(--_bg); border: 1px solid var(--_border); border-radius: var(--tidings-radius, 8px); display: flex; flex-direction: column; max-height: var(--tidings-max-height, none); }
.head { display: flex; align-items: center; gap: 8px; padding: 10px 12px; border-bottom: 1px solid var(--_border); flex-wrap: wrap; }
.head h2 { font-size: 1.05em; margin: 0; flex: 1; }
.tools { display: flex; gap: 6px; }
.offline, .error { margin: 0; padding: 6px 12px; background: var(--_hover); color: var(--_fg); border-bottom: 1px solid var(--_border); }
.tabs { display: flex; gap: 4px; padding: 6px 8px 0; border-bottom: 1px solid var(--_border); overflow-x: auto; }
.tabs [role="tab"] { border: none; border-bottom: 2px solid transparent; border-radius: 0; padding: 6px 10px; color: var(--_muted); white-space: nowrap; }
.tabs [role="tab"][aria-selected="true"] { color: var(--_fg); border-bottom-color: var(--_accent); font-weight: 600; }
.tab-count { margin-left: 4px; font-size: .85em; }
.panel { overflow-y: auto; flex: 1; }
.list { list-style: none; margin: 0; padding: 0; }
.item { display: flex; gap: 10px; padding: 10px 12px; border-bottom: 1px solid var(--_border); }
.item.unread { background: var(--_unread-bg); }
.dot { flex: none; width: 8px; height: 8px; margin-top: 7px; border-radius: 50%; background: transparent; }
.item.unread .dot { background: var(--_accent); }
.body { flex: 1; min-width: 0; }
.item-head { display: flex; gap: 6px; align-items: baseline; flex-wrap: wrap; }
.title { font-weight: 600; overflow-wrap: anywhere; }
.item:not(.unread) .title { font-weight: 500; }
time { color: var(--_muted); font-size: .85em; margin-left: auto; white-space: nowrap; }
.message { margin: 2px 0 0; color: var(--_fg); overflow-wrap: anywhere; }
.meta { color: var(--_muted); font-size: .85em; }
.chip { font-size: .75em; padding: 0 6px; border-radius: 999px; border: 1px solid var(--_border); color: var(--_muted); }
.priority-high .chip { background: #c2410c; border-color: #c2410c; color: #fff; }
.priority-critical .chip { background: #b91c1c; border-color: #b91c1c; color: #fff; }
.actions { display: flex; gap: 6px; margin-top: 6px; flex-wrap: wrap; }
.action { padding: 4px 12px; text-decoration: none; display: inline-block; border: 1px solid var(--_border); color: var(--_fg); }
.action.primary { background: var(--_accent); border-color: var(--_accent); color: var(--_accent-fg); }
.action.primary:hover { filter: brightness(1.08); background: var(--_accent); }
.item-tools { display: flex; gap: 2px; align-self: flex-start; }
.item-tools button { border: none; padding: 5px; line-height: 0; color: var(--_muted); }
.item-tools button.delete:hover { color: var(--_danger); }
.item-tools svg { width: 17px; height: 17px; fill: currentColor; }
.empty { text-align: center; color: var(--_muted); padding: 28px 12px; margin: 0; }
.more { display: block; margin: 10px auto; }
.prefs { padding: 10px 12px; border-bottom: 1px solid var(--_border); }
.prefs p { margin: 0 0 6px; }
.prefs label { display: flex; gap: 8px; align-items: center; padding: 3px 0; }
.prefs-table { border-collapse: collapse; width: 100%; }
.prefs-table th, .prefs-table td { padding: 4px 6px; text-align: center; font-weight: 500; }
.prefs-table th[scope=row], .prefs-table thead th:first-child { text-align: start; overflow-wrap: anywhere; }
.prefs-table thead th { color: var(--_muted); font-size: 0.85em; }
.prefs-table input { width: 18px; height: 18px; margin: 0; }
.prefs .row { display: flex; gap: 8px; align-items: center; margin-top: 8px; }
.prefs-status { color: var(--_muted); }
@media (max-width: 480px) {
  .item { padding: 12px 10px; }
  .item { flex-wrap: wrap; }
  .body { flex-basis: calc(100% - 30px); }
  .item-tools { margin-left: 12px; gap: 8px; }
  .item-tools button { padding: 9px; }
}
`;
var BELL_CSS = `${BASE}
:host { display: inline-block; position: relative; }
.bell { position: relative; border: none; padding: 6px; line-height: 0; color: inherit; border-radius: 50%; }
.bell svg { width: 24px; height: 24px; fill: currentColor; }
.badge { position: absolute; top: 0; right: 0; min-width: 18px; height: 18px; padding: 0 5px; box-sizing: border-box; border-radius: 9px; background: #b91c1c; color: #fff; font-size: 11px; line-height: 18px; font-weight: 700; text-align: center; }
.popover { position: absolute; right: 0; top: calc(100% + 6px); z-index: var(--tidings-z, 1000); width: var(--tidings-popover-width, 380px); box-shadow: 0 10px 30px rgba(0,0,0,.25); border-radius: var(--tidings-radius, 8px); }
.popover tidings-inbox { --tidings-max-height: min(70vh, 560px); }
@media (max-width: 480px) {
  .popover { position: fixed; inset: 0; width: auto; border-radius: 0; box-shadow: none; }
  .popover tidings-inbox { --tidings-max-height: 100vh; height: 100%; }
}
`;
var cache = /* @__PURE__ */ new Map();
function adopt(root, css) {
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function") {
    let sheet = cache.get(css);
    if (sheet === void 0) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      cache.set(css, sheet);
    }
    root.adoptedStyleSheets = [sheet];
    return;
  }
  const style = root.ownerDocument.createElement("style");
  style.textContent = css;
  root.append(style);
}

// src/inbox/bell-element.js
var Base = globalThis.HTMLElement ?? class {
};
var PASSED = ["lang", "theme", "page-size", "tabs", "channels"];
var instances = 0;
var TidingsBell = class extends Base {
  static observedAttributes = PASSED;
  constructor() {
    super();
    this._uid = `tb${instances += 1}`;
    this._strings = mergeStrings();
    this._overrides = {};
    this._store = null;
    this._onChange = () => this._render();
    this._outside = (event) => {
      if (!event.composedPath().includes(this)) this.close(false);
    };
    this.attachShadow({ mode: "open" });
    adopt(this.shadowRoot, BELL_CSS);
    this._badge = h("span", { class: "badge", part: "badge", hidden: true, "aria-hidden": "true" });
    this._button = h(
      "button",
      {
        type: "button",
        class: "bell",
        part: "button",
        "aria-haspopup": "dialog",
        "aria-expanded": "false",
        "aria-controls": `${this._uid}-pop`,
        onclick: () => this.open ? this.close() : this.show()
      },
      icon("bell"),
      this._badge
    );
    this._inbox = document.createElement("tidings-inbox");
    this._popover = h(
      "div",
      { class: "popover", id: `${this._uid}-pop`, role: "dialog", "aria-label": this._strings.title, hidden: true, onkeydown: (e) => this._key(e) },
      this._inbox
    );
    this.shadowRoot.append(this._button, this._popover);
  }
  set client(client) {
    this.store = client ? new InboxStore(client, { pageSize: Number(this.getAttribute("page-size")) || 20 }) : null;
  }
  get client() {
    return this._store?.client ?? null;
  }
  set store(store) {
    this._store?.removeEventListener("change", this._onChange);
    this._store = store ?? null;
    this._store?.addEventListener("change", this._onChange);
    this._inbox.store = this._store;
    this._render();
  }
  get store() {
    return this._store;
  }
  set strings(overrides) {
    this._overrides = overrides ?? {};
    this._strings = mergeStrings(this._overrides);
    this._inbox.strings = this._overrides;
    this._popover.setAttribute("aria-label", this._strings.title);
    this._render();
  }
  get strings() {
    return this._strings;
  }
  get open() {
    return !this._popover.hidden;
  }
  /** Open the popover and move the focus into it. */
  show() {
    this._popover.hidden = false;
    this._button.setAttribute("aria-expanded", "true");
    document.addEventListener("pointerdown", this._outside, true);
    const first = this._inbox.shadowRoot?.querySelector('[role="tab"][tabindex="0"], button:not([disabled])');
    first?.focus();
  }
  /** Close the popover (and give the focus back to the bell unless `refocus` is false). */
  close(refocus = true) {
    if (this._popover.hidden) return;
    this._popover.hidden = true;
    this._button.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", this._outside, true);
    if (refocus) this._button.focus();
  }
  connectedCallback() {
    for (const name of PASSED) this.attributeChangedCallback(name);
    this._render();
  }
  disconnectedCallback() {
    document.removeEventListener("pointerdown", this._outside, true);
  }
  attributeChangedCallback(name) {
    const value = this.getAttribute(name);
    if (value === null) this._inbox.removeAttribute(name);
    else this._inbox.setAttribute(name, value);
  }
  _key(event) {
    if (event.key === "Escape") {
      event.stopPropagation();
      this.close();
    }
  }
  _render() {
    const unread = this._store?.unreadCount ?? 0;
    this._badge.hidden = unread === 0;
    this._badge.textContent = unread > 99 ? "99+" : String(unread);
    this._button.setAttribute("aria-label", this._strings.bell(unread));
  }
};

// src/wire.js
function httpOrigin(wsUrl) {
  const url = new URL(wsUrl);
  const scheme = url.protocol === "wss:" ? "https:" : url.protocol === "ws:" ? "http:" : url.protocol;
  return `${scheme}//${url.host}`;
}

// src/inbox/preferences.js
var CHANNELS = Object.freeze(["inApp", "push", "email", "sms"]);
async function call(client, method, body) {
  const token = await client.getToken();
  const response = await fetch(`${httpOrigin(client.url)}/api/me/preferences`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === void 0 ? void 0 : JSON.stringify(body)
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error?.message ?? `HTTP ${response.status}`);
  return data;
}
function loadChannelPreferences(client) {
  return call(client, "GET");
}
function saveChannelPreferences(client, switches) {
  return call(client, "PUT", switches);
}
async function loadPreferences(client) {
  return (await call(client, "GET")).inApp ?? {};
}
async function savePreferences(client, inApp) {
  return (await call(client, "PUT", { inApp })).inApp ?? {};
}
function switchedOn(prefs, channel, category) {
  const mine = prefs?.[channel] ?? {};
  return mine[category] ?? mine["*"] ?? true;
}

// src/inbox/inbox-element.js
var Base2 = globalThis.HTMLElement ?? class {
};
var PRIORITIES = ["LOW", "MEDIUM", "HIGH", "CRITICAL"];
var instances2 = 0;
var TidingsInbox = class extends Base2 {
  static observedAttributes = ["lang", "tabs", "page-size", "channels"];
  constructor() {
    super();
    this._uid = `ti${instances2 += 1}`;
    this._strings = mergeStrings();
    this._store = null;
    this._ownStore = false;
    this._tab = "all";
    this._rows = /* @__PURE__ */ new Map();
    this._announced = null;
    this._onChange = () => this._render();
    this.attachShadow({ mode: "open" });
    adopt(this.shadowRoot, INBOX_CSS);
  }
  /** The Client whose user's inbox to show (the element makes its own store). */
  set client(client) {
    this.store = client ? new InboxStore(client, { pageSize: this._pageSize() }) : null;
    this._ownStore = client !== null && client !== void 0;
  }
  get client() {
    return this._store?.client ?? null;
  }
  /** An InboxStore to show (shared with a <tidings-bell>, say). */
  set store(store) {
    if (this._store !== null) {
      this._store.removeEventListener("change", this._onChange);
      if (this._ownStore) this._store.detach();
    }
    this._store = store ?? null;
    this._ownStore = false;
    this._tab = "all";
    this._rows = /* @__PURE__ */ new Map();
    if (this._store !== null) this._store.addEventListener("change", this._onChange);
    this._build();
  }
  get store() {
    return this._store;
  }
  /** Partial strings over the English defaults (see strings.js). */
  set strings(overrides) {
    this._strings = mergeStrings(overrides ?? {});
    this._rows = /* @__PURE__ */ new Map();
    this._build();
  }
  get strings() {
    return this._strings;
  }
  connectedCallback() {
    this._build();
    this._clock = setInterval(() => this._retime(), 6e4);
  }
  disconnectedCallback() {
    clearInterval(this._clock);
    this._observer?.disconnect();
  }
  attributeChangedCallback() {
    if (this.isConnected) this._build();
  }
  _pageSize() {
    const n = Number(this.getAttribute("page-size"));
    return Number.isInteger(n) && n >= 1 && n <= 100 ? n : 20;
  }
  _tabs() {
    const wanted = (this.getAttribute("tabs") ?? "all,unread,archived,categories").split(",").map((s) => s.trim());
    const tabs = [];
    if (wanted.includes("all")) tabs.push({ id: "all", label: this._strings.all });
    if (wanted.includes("unread")) tabs.push({ id: "unread", label: this._strings.unread });
    if (wanted.includes("archived")) tabs.push({ id: "archived", label: this._strings.archived });
    if (wanted.includes("categories") && this._store !== null) {
      for (const c of this._store.categories()) tabs.push({ id: `category:${c}`, label: c });
    }
    return tabs;
  }
  /** The element's skeleton; the list itself is filled by _render(). */
  _build() {
    if (!this.shadowRoot) return;
    const s = this._strings;
    const id = (name) => `${this._uid}-${name}`;
    this._observer?.disconnect();
    this._rows = /* @__PURE__ */ new Map();
    this._els = {
      markAll: h("button", { type: "button", class: "mark-all", onclick: () => this._do(() => this._store.markAllRead()) }, s.markAllRead),
      prefsToggle: h(
        "button",
        { type: "button", class: "prefs-toggle", "aria-expanded": "false", "aria-controls": id("prefs"), onclick: () => this._togglePrefs() },
        s.preferences
      ),
      offline: h("p", { class: "offline", role: "status", hidden: true }, s.offline),
      error: h("p", { class: "error", role: "alert", hidden: true }, s.error),
      tabs: h("div", { class: "tabs", role: "tablist", "aria-label": s.tabs, onkeydown: (e2) => this._tabKey(e2) }),
      prefs: h("section", { class: "prefs", id: id("prefs"), hidden: true, "aria-label": s.preferences }),
      list: h("ul", { class: "list", id: "notifications", role: "list" }),
      empty: h("p", { class: "empty", hidden: true }),
      more: h("button", { type: "button", class: "more", hidden: true, onclick: () => this._more() }, s.loadMore),
      sentinel: h("div", { class: "sentinel", "aria-hidden": "true" }),
      live: h("div", { class: "sr-only", "aria-live": "polite" })
    };
    const e = this._els;
    e.panel = h("div", { class: "panel", role: "tabpanel", id: id("panel") }, e.list, e.empty, e.more, e.sentinel);
    const inbox = h(
      "div",
      { class: "inbox", part: "inbox", role: "region", "aria-labelledby": id("title") },
      h("div", { class: "head", part: "head" }, h("h2", { id: id("title") }, s.title), h("div", { class: "tools" }, e.markAll, e.prefsToggle)),
      e.offline,
      e.error,
      e.prefs,
      e.tabs,
      e.panel,
      e.live
    );
    this.shadowRoot.replaceChildren(inbox);
    if (typeof IntersectionObserver === "function") {
      this._observer = new IntersectionObserver((entries) => {
        if (entries.some((x) => x.isIntersecting)) this._more();
      });
      this._observer.observe(e.sentinel);
    }
    this._render();
  }
  _render() {
    const e = this._els;
    const store = this._store;
    if (!e) return;
    const s = this._strings;
    if (store === null) {
      e.list.replaceChildren();
      e.empty.hidden = false;
      e.empty.textContent = s.offline;
      return;
    }
    this._renderTabs();
    const own = this._tab === "unread" || this._tab === "archived" ? this._tab : null;
    if (own && store.cursors[own] === void 0 && store.online && !store.loading && store.error === null) {
      queueMicrotask(() => this._more());
    }
    const items = store.view(this._tab);
    const seen = /* @__PURE__ */ new Set();
    const rows = items.map((n) => {
      seen.add(n.id);
      const sig = JSON.stringify([n.readAt, n.archivedAt, n.title, n.message, n.priority, n.actions, n.category, n.createdAt]);
      const row = this._rows.get(n.id);
      if (row && row.sig === sig) return row.li;
      const li = this._item(n);
      this._rows.set(n.id, { li, sig });
      return li;
    });
    for (const id of [...this._rows.keys()]) if (!seen.has(id)) this._rows.delete(id);
    e.list.replaceChildren(...rows);
    const loaded = this._tab === "archived" ? store.cursors.archived !== void 0 : store.cursors.all !== void 0 || store.cursors.unread !== void 0;
    e.empty.hidden = items.length > 0 || store.loading || !loaded;
    const empty = { all: s.empty, unread: s.emptyUnread, archived: s.emptyArchived };
    e.empty.textContent = empty[this._tab] ?? s.emptyCategory;
    e.list.setAttribute("aria-busy", String(store.loading));
    e.more.hidden = !loaded || !store.hasMore(this._tab);
    e.more.disabled = store.loading;
    e.more.textContent = store.loading ? s.loading : s.loadMore;
    e.markAll.disabled = store.unreadCount === 0;
    e.offline.hidden = store.online;
    e.error.hidden = store.error === null;
    if (store.latest && store.latest !== this._announced) {
      this._announced = store.latest;
      e.live.textContent = s.arrived(store.latest.title ?? store.latest.type ?? "");
    }
  }
  _renderTabs() {
    const tabs = this._tabs();
    if (!tabs.some((t) => t.id === this._tab)) this._tab = tabs[0]?.id ?? "all";
    const key = JSON.stringify([tabs, this._tab, this._store.unreadCount]);
    if (key === this._tabsKey) return;
    this._tabsKey = key;
    const focused = this.shadowRoot.activeElement?.getAttribute("data-tab");
    const panel = this._els.panel;
    this._els.tabs.replaceChildren(
      ...tabs.map((t) => {
        const selected = t.id === this._tab;
        const count = t.id === "unread" && this._store.unreadCount > 0 ? h("span", { class: "tab-count" }, `(${this._store.unreadCount})`) : null;
        return h(
          "button",
          {
            type: "button",
            role: "tab",
            id: `${this._uid}-tab-${t.id}`,
            "data-tab": t.id,
            "aria-selected": String(selected),
            "aria-controls": panel.id,
            tabindex: selected ? "0" : "-1",
            onclick: () => this._select(t.id)
          },
          t.label,
          count
        );
      })
    );
    panel.setAttribute("aria-labelledby", `${this._uid}-tab-${this._tab}`);
    if (focused) this.shadowRoot.querySelector(`[data-tab="${CSS.escape(focused)}"]`)?.focus();
  }
  _select(tab) {
    this._tab = tab;
    this._render();
  }
  _tabKey(event) {
    const tabs = [...this._els.tabs.querySelectorAll('[role="tab"]')];
    const at = tabs.findIndex((t) => t.getAttribute("data-tab") === this._tab);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (to === void 0 || tabs.length === 0) return;
    event.preventDefault();
    const next = tabs[(to + tabs.length) % tabs.length];
    this._select(next.getAttribute("data-tab"));
    this.shadowRoot.querySelector(`[data-tab="${CSS.escape(next.getAttribute("data-tab"))}"]`)?.focus();
  }
  _item(n) {
    const s = this._strings;
    const priority = PRIORITIES.includes(n.priority) ? n.priority : "MEDIUM";
    const title = n.title ?? n.type ?? "";
    const archived = Boolean(n.archivedAt);
    const unread = !n.readAt && !archived;
    const tool = (name, label, run) => h("button", { type: "button", class: name, "aria-label": s.itemAction(label, title), title: label, onclick: () => this._do(run) }, icon(name === "mark-read" ? "check" : name));
    const when = h("time", { datetime: n.createdAt ?? "", title: n.createdAt ? new Date(n.createdAt).toLocaleString(this._lang()) : "" }, this._when(n));
    const actions = (Array.isArray(n.actions) ? n.actions : []).map((action, i) => this._action(n, action, i === 0));
    return h(
      "li",
      { class: `item priority-${priority.toLowerCase()}${unread ? " unread" : ""}`, "data-id": n.id, part: "item" },
      h("span", { class: "dot", "aria-hidden": "true" }),
      h(
        "div",
        { class: "body" },
        h(
          "div",
          { class: "item-head" },
          priority === "MEDIUM" ? null : h("span", { class: "chip" }, s.priority[priority] ?? priority),
          h("span", { class: "title" }, title),
          unread ? h("span", { class: "sr-only" }, `(${s.unread})`) : null,
          when
        ),
        n.message ? h("p", { class: "message" }, n.message) : null,
        n.category ? h("div", { class: "meta" }, n.category) : null,
        actions.length ? h("div", { class: "actions" }, ...actions) : null
      ),
      h(
        "div",
        { class: "item-tools" },
        unread ? tool("mark-read", s.markRead, () => this._store.markRead([n.id])) : null,
        archived ? tool("unarchive", s.unarchive, () => this._store.unarchive([n.id])) : tool("archive", s.archive, () => this._store.archive([n.id])),
        tool("delete", s.delete, () => this._store.remove([n.id]))
      )
    );
  }
  /** A notification's action: the first is the primary one, the rest secondary. */
  _action(n, action, primary) {
    const url = safeUrl(action.url);
    const cls = `action ${primary ? "primary" : "secondary"}`;
    const click = (event) => {
      const go = this.dispatchEvent(
        new CustomEvent("tidings-action", { detail: { notification: n, action }, bubbles: true, composed: true, cancelable: true })
      );
      if (!go) event.preventDefault();
      if (!n.readAt) this._do(() => this._store.markRead([n.id]));
    };
    const attrs = { class: cls, "data-action": action.id, onclick: click };
    return url ? h("a", { ...attrs, href: url }, action.label) : h("button", { ...attrs, type: "button" }, action.label);
  }
  _lang() {
    return this.getAttribute("lang") || this.ownerDocument?.documentElement?.lang || void 0;
  }
  _when(n) {
    return n.createdAt ? relativeTime(n.createdAt, Date.now(), this._lang(), this._strings) : "";
  }
  _retime() {
    for (const { li } of this._rows.values()) {
      const time = li.querySelector("time");
      if (time) time.textContent = this._when({ createdAt: time.getAttribute("datetime") });
    }
  }
  _more() {
    const store = this._store;
    if (store === null || !store.online || store.loading || !store.hasMore(this._tab)) return;
    this._do(() => store.loadMore(this._tab));
  }
  async _do(run) {
    try {
      await run();
    } catch (error) {
      this.dispatchEvent(new CustomEvent("tidings-error", { detail: { error }, bubbles: true, composed: true }));
    }
  }
  async _togglePrefs() {
    const e = this._els;
    const open = e.prefs.hidden;
    e.prefs.hidden = !open;
    e.prefsToggle.setAttribute("aria-expanded", String(open));
    if (open) await this._loadPrefs();
  }
  _channels() {
    const wanted = (this.getAttribute("channels") ?? CHANNELS.join(",")).split(",").map((c) => c.trim());
    const channels = CHANNELS.filter((c) => wanted.includes(c));
    return channels.length ? channels : [...CHANNELS];
  }
  /** The preferences panel: a switch per category (and "everything else") and channel. */
  async _loadPrefs() {
    const s = this._strings;
    const e = this._els;
    const status = h("span", { class: "prefs-status", role: "status" }, s.loading);
    e.prefs.replaceChildren(h("p", {}, s.preferencesIntro), status);
    let prefs;
    try {
      prefs = await loadChannelPreferences(this._store.client);
    } catch (error) {
      status.textContent = String(error.message ?? error);
      return;
    }
    const channels = this._channels();
    const stored = channels.flatMap((c) => Object.keys(prefs[c] ?? {}));
    const names = [.../* @__PURE__ */ new Set([...this._store.categories(), ...stored.filter((k) => k !== "*")])].sort();
    const boxes = [];
    const row = (category, label) => h(
      "tr",
      {},
      h("th", { scope: "row" }, label),
      ...channels.map((channel) => {
        const box = h("input", {
          type: "checkbox",
          name: `${channel}:${category}`,
          "data-channel": channel,
          "data-category": category,
          "aria-label": s.channelSwitch(label, s.channels[channel] ?? channel)
        });
        box.checked = switchedOn(prefs, channel, category);
        boxes.push(box);
        return h("td", {}, box);
      })
    );
    const save = async () => {
      const switches = Object.fromEntries(channels.map((c) => [c, {}]));
      for (const box of boxes) switches[box.dataset.channel][box.dataset.category] = box.checked;
      status.textContent = s.loading;
      try {
        await saveChannelPreferences(this._store.client, switches);
        status.textContent = s.saved;
      } catch (error) {
        status.textContent = String(error.message ?? error);
      }
    };
    status.textContent = "";
    e.prefs.replaceChildren(
      h("p", {}, s.preferencesIntro),
      h(
        "table",
        { class: "prefs-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, s.category), ...channels.map((c) => h("th", { scope: "col" }, s.channels[c] ?? c)))),
        h("tbody", {}, ...names.map((name) => row(name, name)), row("*", s.everythingElse))
      ),
      h("div", { class: "row" }, h("button", { type: "button", class: "prefs-save", onclick: save }, s.save), status)
    );
  }
};

// src/inbox/elements.js
function defineElements(registry = globalThis.customElements) {
  if (!registry) return;
  if (!registry.get("tidings-inbox")) registry.define("tidings-inbox", TidingsInbox);
  if (!registry.get("tidings-bell")) registry.define("tidings-bell", TidingsBell);
}

// src/inbox/index.js
defineElements();
export {
  CHANNELS,
  InboxStore,
  STRINGS,
  TidingsBell,
  TidingsInbox,
  defineElements,
  httpOrigin,
  loadChannelPreferences,
  loadPreferences,
  mergeStrings,
  relativeTime,
  saveChannelPreferences,
  savePreferences,
  switchedOn
};
