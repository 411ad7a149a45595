// inbox.d.ts: tidings 0.1.0, built from clients/js (the npm package "tidings") by
// clients/js/scripts/build.mjs. Do not edit: change clients/js/src and rebuild.

// TypeScript declarations for "tidings/inbox" (the Web Components; /inbox.js).

import type { Client, Notification } from "./tidings.js";

/** What the inbox says; every field may be overridden (see strings.js). */
export interface InboxStrings {
  title: string;
  all: string;
  unread: string;
  archived: string;
  tabs: string;
  markAllRead: string;
  markRead: string;
  archive: string;
  unarchive: string;
  delete: string;
  loadMore: string;
  loading: string;
  empty: string;
  emptyUnread: string;
  emptyCategory: string;
  emptyArchived: string;
  offline: string;
  error: string;
  preferences: string;
  preferencesIntro: string;
  everythingElse: string;
  category: string;
  channels: Record<PreferenceChannel, string>;
  channelSwitch(category: string, channel: string): string;
  save: string;
  saved: string;
  close: string;
  justNow: string;
  priority: Record<"LOW" | "MEDIUM" | "HIGH" | "CRITICAL", string>;
  bell(unread: number): string;
  arrived(title: string): string;
  itemAction(action: string, title: string): string;
}
export const STRINGS: Readonly<InboxStrings>;
export function mergeStrings(overrides?: Partial<InboxStrings>): InboxStrings;
/** "5 minutes ago" for an ISO time ("just now" under 45 seconds). */
export function relativeTime(iso: string, now?: number, locale?: string, strings?: InboxStrings): string;

/** A tab: "all", "unread", "archived" or "category:<name>". */
export type InboxTab = "all" | "unread" | "archived" | `category:${string}`;

/** The inbox's state, following a client's events; "change" after each change. */
export class InboxStore extends EventTarget {
  constructor(client: Client, options?: { pageSize?: number });
  readonly client: Client;
  items: Map<string, Notification>;
  /** The archived notifications loaded (the "archived" tab). */
  archived: Map<string, Notification>;
  loading: boolean;
  error: unknown;
  online: boolean;
  unreadCount: number;
  latest: Notification | null;
  view(tab?: InboxTab): Notification[];
  categories(): string[];
  hasMore(tab?: InboxTab): boolean;
  reload(): Promise<void>;
  loadMore(tab?: InboxTab): Promise<void>;
  markRead(ids: string[]): Promise<void>;
  markAllRead(): Promise<void>;
  archive(ids: string[]): Promise<void>;
  unarchive(ids: string[]): Promise<void>;
  remove(ids: string[]): Promise<void>;
  detach(): void;
}

export interface InboxElement extends HTMLElement {
  client: Client | null;
  store: InboxStore | null;
  strings: Partial<InboxStrings>;
}
export const TidingsInbox: { new (): InboxElement; prototype: InboxElement };
export interface BellElement extends InboxElement {
  readonly open: boolean;
  show(): void;
  close(refocus?: boolean): void;
}
export const TidingsBell: { new (): BellElement; prototype: BellElement };

/** Define <tidings-inbox> and <tidings-bell> (importing the module already does). */
export function defineElements(registry?: CustomElementRegistry): void;

export function httpOrigin(wsUrl: string): string;
/** The channels of /api/me/preferences, in the panel's order. */
export type PreferenceChannel = "inApp" | "push" | "email" | "sms";
export const CHANNELS: readonly PreferenceChannel[];
/** Every channel's switches by category ("*": every other category). */
export type ChannelPreferences = Record<PreferenceChannel, Record<string, boolean>> & {
  quietHours: { start: string; end: string } | null;
};
export function loadChannelPreferences(client: Client): Promise<ChannelPreferences>;
/** Replace the switches of the channels given; the others are left alone. */
export function saveChannelPreferences(
  client: Client,
  switches: Partial<Record<PreferenceChannel, Record<string, boolean>>>,
): Promise<ChannelPreferences>;
/** A switch as the server decides it: the category's own, else "*", else on. */
export function switchedOn(prefs: Partial<ChannelPreferences>, channel: PreferenceChannel, category: string): boolean;
export function loadPreferences(client: Client): Promise<Record<string, boolean>>;
export function savePreferences(client: Client, inApp: Record<string, boolean>): Promise<Record<string, boolean>>;

/** Events the elements dispatch (bubbling, composed). */
export interface TidingsActionDetail {
  notification: Notification;
  action: { id: string; label: string; url?: string };
}
declare global {
  interface HTMLElementTagNameMap {
    "tidings-inbox": InboxElement;
    "tidings-bell": BellElement;
  }
}
