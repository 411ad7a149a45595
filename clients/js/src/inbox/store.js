// The inbox's model, without a DOM: the notifications loaded so far, a cursor per list
// (all, unread, archived), the server's unread count and whether the client is online, kept in
// step with the client's events. The elements render it; a test can drive it alone.

const REMOVED = new Set(["notification_archived", "notification_deleted"]);

/** A notification's place in the list: newest (highest seq) first. */
const bySeq = (a, b) => (b.seq ?? 0) - (a.seq ?? 0);

/**
 * The state behind <tidings-inbox> and <tidings-bell>: one per client, shared by every
 * element showing that user's inbox. Dispatches "change" after each change.
 */
export class InboxStore extends EventTarget {
  /**
   * @param client a tidings Client (connected or not; the store follows its events)
   * @param options.pageSize notifications per page (1 to 100, default 20)
   */
  constructor(client, { pageSize = 20 } = {}) {
    super();
    this.client = client;
    this.pageSize = pageSize;
    /** id -> notification data, every one loaded or received. */
    this.items = new Map();
    /** id -> archived notification, from the archived list's pages (and archives seen since). */
    this.archived = new Map();
    /** Per list ("all", "unread", "archived"): the next page's cursor, null at the end, undefined before the first. */
    this.cursors = { all: undefined, unread: undefined, archived: undefined };
    // Per list: the lowest seq its pages reached (0 once at the end). A notification below
    // it (a catch-up sends old unread ones) waits for "load more", so a list has no gaps.
    this.floors = { all: Infinity, unread: Infinity, archived: Infinity };
    this.loading = false;
    this.error = null;
    this.online = client.connected;
    this.unreadCount = client.unreadCount ?? 0;
    /** The latest live notification (for an announcement), or null. */
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
    const names = new Set();
    for (const n of this.items.values()) if (n.category) names.add(n.category);
    return [...names].sort();
  }

  /** Whether a tab's list has more pages on the server. */
  hasMore(tab = "all") {
    return this.cursors[listOf(tab)] !== null;
  }

  /** The first page again (after each connection: the server's list is the truth). */
  async reload() {
    this.cursors = { all: undefined, unread: undefined, archived: undefined };
    this.floors = { all: Infinity, unread: Infinity, archived: Infinity };
    this.items = new Map();
    this.archived = new Map();
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
        cursor: cursor ?? null,
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
    const own = (msg) => msg.channel === undefined; // a channel publication is never the inbox
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
      }),
    );
    for (const type of ["notification_read", "notification_unarchived", ...REMOVED]) {
      this._off.push(c.on(type, (msg) => own(msg) && this._apply(type, msg.data)));
    }
  }

  _apply(type, data) {
    if (!data || !Array.isArray(data.ids)) return;
    const now = new Date().toISOString();
    let unknown = false;
    for (const id of data.ids) {
      if (type === "notification_unarchived") {
        // Back in the inbox, as it was; one this tab never saw comes with the first page.
        const n = this.archived.get(id) ?? this.items.get(id);
        this.archived.delete(id);
        if (n === undefined) unknown = true;
        else this.items.set(id, withoutArchivedAt(n));
        continue;
      }
      const n = this.items.get(id);
      if (type === "notification_deleted") this.archived.delete(id);
      if (n === undefined) continue;
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
}

function listOf(tab) {
  return tab === "unread" || tab === "archived" ? tab : "all";
}

function withoutArchivedAt(n) {
  const { archivedAt: _, ...rest } = n;
  return rest;
}
