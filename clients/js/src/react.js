// useTidings: a React hook around the tidings client (no JSX, no build step).
//
//   import { useTidings } from "tidings/react";   // React is a peer: imported from "react"
//   const { status, lastMessage, unreadCount, client } = useTidings({
//     url: "wss://notify.example.com/ws", token: getToken, channels: ["activities"],
//   });
//
// One client per mounted component (per url/token owner): it connects on mount, is
// closed on unmount, and is rebuilt when `url`, `enabled` or `channels` change. Other
// options (the Client options: ack, transport, WebSocket, ...) are read when it connects.

import { createElement, useCallback, useEffect, useRef, useState } from "react";
import { Client } from "./index.js";
import { defineElements } from "./inbox/elements.js";

const SYNTHETIC = new Set(["_connected", "_disconnected", "_resubscribed", "_unread"]);
const UNREAD_CHANGES = new Set(["notification_read", "notification_archived", "notification_deleted"]);

/**
 * Connect while mounted; re-render on what arrives.
 *
 * Returns { status, connected, client, welcome, lastMessage, messages, notifications,
 * unreadCount, subscribed, closeCode, closeReason, error, markRead, archive, remove }.
 * unreadCount is the client's (the server's count, kept by every inbox event: see
 * Client.unreadCount). markRead(ids) (or markRead({all: true})), archive(ids) and
 * remove(ids) update notifications at once; the user's other tabs follow through the
 * server's events. status is "idle" (not enabled),
 * "connecting", "open", "reconnecting" or "closed" (for good: see closeCode).
 */
export function useTidings(options) {
  const { url, token, channels = [], keep = 50, enabled = true, ...clientOptions } = options;
  const tokenRef = useRef(token);
  tokenRef.current = token;
  const optionsRef = useRef(clientOptions);
  optionsRef.current = clientOptions;
  const channelsKey = JSON.stringify(channels);
  const [state, setState] = useState(() => initial(enabled ? "connecting" : "idle"));

  useEffect(() => {
    if (!enabled || !url) {
      setState(initial("idle"));
      return undefined;
    }
    let alive = true;
    const client = new Client(
      url,
      () => (typeof tokenRef.current === "function" ? tokenRef.current() : tokenRef.current),
      // The hook reads events by callback: keep none for an iterator unless asked to.
      { eventBuffer: 0, ...optionsRef.current },
    );
    setState({ ...initial("connecting"), client });
    const update = (change) => {
      if (alive) setState((prev) => ({ ...prev, ...change(prev) }));
    };
    const off = client.on("*", (msg) => {
      if (msg.type === "_unread") {
        update(() => ({ unreadCount: msg.unreadCount }));
      } else if (msg.type === "_connected") {
        update(() => ({ status: "open", connected: true, welcome: msg.welcome }));
      } else if (msg.type === "_disconnected") {
        update(() => ({
          status: msg.reconnect ? "reconnecting" : "closed",
          connected: false,
          closeCode: msg.code,
          closeReason: msg.reason,
        }));
      } else if (!SYNTHETIC.has(msg.type) && msg.type !== "welcome") {
        update((prev) => {
          const change = { lastMessage: msg, messages: [...prev.messages, msg].slice(-keep) };
          if (msg.channel !== undefined) {
            // A channel publication, whatever its type: never the user's inbox.
          } else if (msg.type === "notification") {
            change.notifications = [msg.data, ...prev.notifications].slice(0, keep);
          } else if (UNREAD_CHANGES.has(msg.type)) {
            Object.assign(change, inboxChange(prev, msg.type, msg.data, msg.timestamp ?? new Date().toISOString()));
          }
          return change;
        });
      }
    });
    const subscribed = JSON.parse(channelsKey);
    client.connect().then(
      () => {
        for (const channel of subscribed) {
          client.subscribe(channel).then(
            () => update((prev) => ({ subscribed: [...prev.subscribed, channel] })),
            (error) => update(() => ({ error })),
          );
        }
      },
      (error) => update(() => ({ status: "closed", connected: false, error, closeCode: client.closeCode })),
    );
    return () => {
      alive = false;
      off();
      client.close();
    };
  }, [url, enabled, channelsKey, keep]);

  // The client consumes the replies to its own requests, so the hook applies them itself.
  const applyChange = useCallback((type, data) => {
    setState((prev) => ({ ...prev, ...inboxChange(prev, type, data, new Date().toISOString()) }));
    return data;
  }, []);
  const client = state.client;
  const run = useCallback(
    async (method, type, ids) => {
      if (client === null) throw new Error("useTidings: not connected yet");
      return applyChange(type, await client[method](ids));
    },
    [client, applyChange],
  );
  const markRead = useCallback((ids) => run("markRead", "notification_read", ids), [run]);
  const archive = useCallback((ids) => run("archive", "notification_archived", ids), [run]);
  const remove = useCallback((ids) => run("delete", "notification_deleted", ids), [run]);
  return { ...state, markRead, archive, remove };
}

function inboxChange(prev, type, data, now) {
  const change = {};
  if (!data || !Array.isArray(data.ids)) return change;
  const ids = new Set(data.ids ?? []);
  if (type === "notification_read") {
    change.notifications = prev.notifications.map((n) => (ids.has(n.id) && !n.readAt ? { ...n, readAt: now } : n));
  } else {
    change.notifications = prev.notifications.filter((n) => !ids.has(n.id));
  }
  return change;
}

function initial(status) {
  return {
    status,
    connected: false,
    client: null,
    welcome: null,
    lastMessage: null,
    messages: [],
    notifications: [],
    subscribed: [],
    unreadCount: 0,
    closeCode: null,
    closeReason: null,
    error: null,
  };
}

// --- the inbox elements as React components ------------------------------------------

function useElement(tag, { client = null, store = null, strings = null, onAction, onError, ...attrs }) {
  const ref = useRef(null);
  // ref.current is null where nothing is rendered to a DOM (a test renderer, say).
  useEffect(() => {
    if (ref.current === null) return;
    if (store !== null) ref.current.store = store;
    else ref.current.client = client;
  }, [client, store]);
  useEffect(() => {
    if (ref.current !== null && strings !== null) ref.current.strings = strings;
  }, [strings]);
  useEffect(() => {
    // React 18 does not pass custom events of custom elements: listen here.
    const el = ref.current;
    const offs = [];
    if (el === null) return undefined;
    for (const [type, handler] of [["tidings-action", onAction], ["tidings-error", onError]]) {
      if (typeof handler !== "function") continue;
      el.addEventListener(type, handler);
      offs.push(() => el.removeEventListener(type, handler));
    }
    return () => offs.forEach((off) => off());
  }, [onAction, onError]);
  defineElements();
  return createElement(tag, { ref, ...attrs });
}

/**
 * <tidings-inbox> for React: props `client` (a Client, e.g. useTidings().client) or
 * `store` (an InboxStore shared with a bell), `strings`, `onAction`, `onError`, and the
 * element's attributes (`theme`, `lang`, `tabs`, `page-size`, `channels`, `className`,
 * `style`).
 */
export function TidingsInbox(props) {
  return useElement("tidings-inbox", props);
}

/** <tidings-bell> for React: the same props as TidingsInbox. */
export function TidingsBell(props) {
  return useElement("tidings-bell", props);
}
