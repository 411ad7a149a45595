// What the inbox says, in English by default. Set `element.strings` to a partial object
// to translate (functions take the values they name); times follow the `lang` attribute.

export const STRINGS = Object.freeze({
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
  bell: (unread) => (unread > 0 ? `Notifications, ${unread} unread` : "Notifications"),
  /** Announced to screen readers when a live notification arrives. */
  arrived: (title) => `New notification: ${title}`,
  /** An item's tool, named with the notification's title for screen readers. */
  itemAction: (action, title) => `${action}: ${title}`,
});

/** The defaults with `overrides` laid over them (nested `priority` merged too). */
export function mergeStrings(overrides = {}) {
  return {
    ...STRINGS,
    ...overrides,
    priority: { ...STRINGS.priority, ...(overrides.priority ?? {}) },
    channels: { ...STRINGS.channels, ...(overrides.channels ?? {}) },
  };
}

const UNITS = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["week", 7 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
];

/** "5 minutes ago", "yesterday", … for an ISO time, in `locale`; "just now" under 45 s. */
export function relativeTime(iso, now = Date.now(), locale = undefined, strings = STRINGS) {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "";
  const seconds = Math.round((then - now) / 1000);
  if (Math.abs(seconds) < 45) return strings.justNow;
  const format = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return format.format(Math.round(seconds / 60), "minute");
}
