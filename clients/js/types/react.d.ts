// TypeScript declarations for "tidings/react" (the useTidings hook; /react.js).

import type { Client, ClientOptions, Message, Notification, TokenSource, Welcome } from "./index.js";
import type { InboxStore, InboxStrings, TidingsActionDetail } from "./inbox.js";

export interface UseTidingsOptions extends ClientOptions {
  /** The WebSocket endpoint, e.g. wss://notify.example.com/ws. */
  url: string;
  /** A JWT, or a function returning (a promise of) a fresh one for each connection. */
  token: TokenSource;
  /** Channels to subscribe to once connected (a change reconnects). */
  channels?: string[];
  /** How many recent messages and notifications to keep. Default 50. */
  keep?: number;
  /** false: stay disconnected (e.g. until the user signs in). Default true. */
  enabled?: boolean;
}

export interface TidingsState {
  status: "idle" | "connecting" | "open" | "reconnecting" | "closed";
  connected: boolean;
  client: Client | null;
  welcome: Welcome | null;
  lastMessage: Message | null;
  messages: Message[];
  /** Newest first. */
  notifications: Notification[];
  unreadCount: number;
  /** Channels of `channels` subscribed so far. */
  subscribed: string[];
  closeCode: number | null;
  closeReason: string | null;
  error: unknown;
  /** Mark read (ids, or {all: true}) and update notifications and unreadCount. */
  markRead(ids: string[] | { all?: boolean; ids?: string[] }): Promise<{ ids: string[]; unreadCount: number }>;
  /** Archive and drop them from notifications. */
  archive(ids: string[]): Promise<{ ids: string[]; unreadCount: number }>;
  /** Delete and drop them from notifications. */
  remove(ids: string[]): Promise<{ ids: string[]; unreadCount: number }>;
}

export function useTidings(options: UseTidingsOptions): TidingsState;

export interface InboxProps {
  /** The client whose user's inbox to show (e.g. useTidings().client). */
  client?: Client | null;
  /** Or a store shared with other elements. */
  store?: InboxStore | null;
  strings?: Partial<InboxStrings>;
  onAction?: (event: CustomEvent<TidingsActionDetail>) => void;
  onError?: (event: CustomEvent<{ error: unknown }>) => void;
  theme?: "light" | "dark";
  lang?: string;
  tabs?: string;
  "page-size"?: number;
  /** The preferences panel's channels: "inApp,push,email,sms" (any subset). */
  channels?: string;
  className?: string;
  style?: Record<string, string | number>;
}
/** <tidings-inbox> as a React component. */
export function TidingsInbox(props: InboxProps): unknown;
/** <tidings-bell> as a React component. */
export function TidingsBell(props: InboxProps): unknown;
