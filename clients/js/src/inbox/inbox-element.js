// <tidings-inbox>: a user's notifications with tabs (all, unread, archived, one per
// category), mark read / mark all read / archive / unarchive / delete, "load more" (and infinite scroll),
// relative times, primary and secondary action buttons, a preferences panel, empty and
// offline states. Give it a client (`el.client = client`) or a shared store
// (`el.store = new InboxStore(client)`). Attributes: `lang` (times), `theme`
// ("light" | "dark"), `page-size`, `tabs` ("all,unread,archived,categories", any subset),
// `channels` (the preferences' columns: "inApp,push,email,sms", any subset).
// Events: `tidings-action` {notification, action} (cancelable: no navigation) and
// `tidings-error` {error}. Translate with `el.strings = {...}` (see strings.js).

import { h, icon, safeUrl } from "./dom.js";
import { CHANNELS, loadChannelPreferences, saveChannelPreferences, switchedOn } from "./preferences.js";
import { InboxStore } from "./store.js";
import { mergeStrings, relativeTime } from "./strings.js";
import { adopt, INBOX_CSS } from "./styles.js";

const Base = globalThis.HTMLElement ?? class {};
const PRIORITIES = ["LOW", "MEDIUM", "HIGH", "CRITICAL"];
let instances = 0;

export class TidingsInbox extends Base {
  static observedAttributes = ["lang", "tabs", "page-size", "channels"];

  constructor() {
    super();
    this._uid = `ti${(instances += 1)}`;
    this._strings = mergeStrings();
    this._store = null;
    this._ownStore = false;
    this._tab = "all";
    this._rows = new Map(); // id -> {li, sig}
    this._announced = null;
    this._onChange = () => this._render();
    this.attachShadow({ mode: "open" });
    adopt(this.shadowRoot, INBOX_CSS);
  }

  /** The Client whose user's inbox to show (the element makes its own store). */
  set client(client) {
    this.store = client ? new InboxStore(client, { pageSize: this._pageSize() }) : null;
    this._ownStore = client !== null && client !== undefined;
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
    this._rows = new Map();
    if (this._store !== null) this._store.addEventListener("change", this._onChange);
    this._build();
  }

  get store() {
    return this._store;
  }

  /** Partial strings over the English defaults (see strings.js). */
  set strings(overrides) {
    this._strings = mergeStrings(overrides ?? {});
    this._rows = new Map();
    this._build();
  }

  get strings() {
    return this._strings;
  }

  connectedCallback() {
    this._build();
    // Relative times move on: once a minute is enough for "5 minutes ago".
    this._clock = setInterval(() => this._retime(), 60000);
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
    this._rows = new Map();
    this._els = {
      markAll: h("button", { type: "button", class: "mark-all", onclick: () => this._do(() => this._store.markAllRead()) }, s.markAllRead),
      prefsToggle: h(
        "button",
        { type: "button", class: "prefs-toggle", "aria-expanded": "false", "aria-controls": id("prefs"), onclick: () => this._togglePrefs() },
        s.preferences,
      ),
      offline: h("p", { class: "offline", role: "status", hidden: true }, s.offline),
      error: h("p", { class: "error", role: "alert", hidden: true }, s.error),
      tabs: h("div", { class: "tabs", role: "tablist", "aria-label": s.tabs, onkeydown: (e) => this._tabKey(e) }),
      prefs: h("section", { class: "prefs", id: id("prefs"), hidden: true, "aria-label": s.preferences }),
      list: h("ul", { class: "list", id: "notifications", role: "list" }),
      empty: h("p", { class: "empty", hidden: true }),
      more: h("button", { type: "button", class: "more", hidden: true, onclick: () => this._more() }, s.loadMore),
      sentinel: h("div", { class: "sentinel", "aria-hidden": "true" }),
      live: h("div", { class: "sr-only", "aria-live": "polite" }),
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
      e.live,
    );
    this.shadowRoot.replaceChildren(inbox);
    if (typeof IntersectionObserver === "function") {
      // Infinite scroll: the next page loads as the end of the list comes into view.
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
    // The unread and archived lists have their own pages; a reconnection reloads only the
    // inbox's first page, so the tab on show loads its own again (not after a failure).
    const own = this._tab === "unread" || this._tab === "archived" ? this._tab : null;
    if (own && store.cursors[own] === undefined && store.online && !store.loading && store.error === null) {
      queueMicrotask(() => this._more());
    }
    const items = store.view(this._tab);
    const seen = new Set();
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
    // Keep the focused row's node in place (replaceChildren moves, it does not rebuild).
    e.list.replaceChildren(...rows);
    const loaded = this._tab === "archived" ? store.cursors.archived !== undefined : store.cursors.all !== undefined || store.cursors.unread !== undefined;
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
            onclick: () => this._select(t.id),
          },
          t.label,
          count,
        );
      }),
    );
    panel.setAttribute("aria-labelledby", `${this._uid}-tab-${this._tab}`);
    if (focused) this.shadowRoot.querySelector(`[data-tab="${CSS.escape(focused)}"]`)?.focus();
  }

  _select(tab) {
    // The unread and archived lists have their own pages: _render loads the first one.
    this._tab = tab;
    this._render();
  }

  _tabKey(event) {
    const tabs = [...this._els.tabs.querySelectorAll('[role="tab"]')];
    const at = tabs.findIndex((t) => t.getAttribute("data-tab") === this._tab);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (to === undefined || tabs.length === 0) return;
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
    // Archived ones are out of the unread count: not shown as unread either.
    const unread = !n.readAt && !archived;
    const tool = (name, label, run) =>
      h("button", { type: "button", class: name, "aria-label": s.itemAction(label, title), title: label, onclick: () => this._do(run) }, icon(name === "mark-read" ? "check" : name));
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
          when,
        ),
        n.message ? h("p", { class: "message" }, n.message) : null,
        n.category ? h("div", { class: "meta" }, n.category) : null,
        actions.length ? h("div", { class: "actions" }, ...actions) : null,
      ),
      h(
        "div",
        { class: "item-tools" },
        unread ? tool("mark-read", s.markRead, () => this._store.markRead([n.id])) : null,
        archived ? tool("unarchive", s.unarchive, () => this._store.unarchive([n.id])) : tool("archive", s.archive, () => this._store.archive([n.id])),
        tool("delete", s.delete, () => this._store.remove([n.id])),
      ),
    );
  }

  /** A notification's action: the first is the primary one, the rest secondary. */
  _action(n, action, primary) {
    const url = safeUrl(action.url);
    const cls = `action ${primary ? "primary" : "secondary"}`;
    const click = (event) => {
      const go = this.dispatchEvent(
        new CustomEvent("tidings-action", { detail: { notification: n, action }, bubbles: true, composed: true, cancelable: true }),
      );
      if (!go) event.preventDefault();
      if (!n.readAt) this._do(() => this._store.markRead([n.id]));
    };
    const attrs = { class: cls, "data-action": action.id, onclick: click };
    return url ? h("a", { ...attrs, href: url }, action.label) : h("button", { ...attrs, type: "button" }, action.label);
  }

  _lang() {
    return this.getAttribute("lang") || this.ownerDocument?.documentElement?.lang || undefined;
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
    const names = [...new Set([...this._store.categories(), ...stored.filter((k) => k !== "*")])].sort();
    const boxes = [];
    const row = (category, label) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, label),
        ...channels.map((channel) => {
          const box = h("input", {
            type: "checkbox",
            name: `${channel}:${category}`,
            "data-channel": channel,
            "data-category": category,
            "aria-label": s.channelSwitch(label, s.channels[channel] ?? channel),
          });
          box.checked = switchedOn(prefs, channel, category);
          boxes.push(box);
          return h("td", {}, box);
        }),
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
        h("tbody", {}, ...names.map((name) => row(name, name)), row("*", s.everythingElse)),
      ),
      h("div", { class: "row" }, h("button", { type: "button", class: "prefs-save", onclick: save }, s.save), status),
    );
  }
}
