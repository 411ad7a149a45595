// react.js: tidings 0.1.0, built from clients/js (the npm package "tidings") by
// clients/js/scripts/build.mjs. Do not edit: change clients/js/src and rebuild.

// src/react.js
import { createElement, useCallback, useEffect, useRef, useState } from "react";
import { Client } from "./tidings.js";
import { defineElements } from "./inbox.js";
var SYNTHETIC = /* @__PURE__ */ new Set(["_connected", "_disconnected", "_resubscribed", "_unread"]);
var UNREAD_CHANGES = /* @__PURE__ */ new Set(["notification_read", "notification_archived", "notification_deleted"]);
function useTidings(options) {
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
      return void 0;
    }
    let alive = true;
    const client2 = new Client(
      url,
      () => typeof tokenRef.current === "function" ? tokenRef.current() : tokenRef.current,
      // The hook reads events by callback: keep none for an iterator unless asked to.
      { eventBuffer: 0, ...optionsRef.current }
    );
    setState({ ...initial("connecting"), client: client2 });
    const update = (change) => {
      if (alive) setState((prev) => ({ ...prev, ...change(prev) }));
    };
    const off = client2.on("*", (msg) => {
      if (msg.type === "_unread") {
        update(() => ({ unreadCount: msg.unreadCount }));
      } else if (msg.type === "_connected") {
        update(() => ({ status: "open", connected: true, welcome: msg.welcome }));
      } else if (msg.type === "_disconnected") {
        update(() => ({
          status: msg.reconnect ? "reconnecting" : "closed",
          connected: false,
          closeCode: msg.code,
          closeReason: msg.reason
        }));
      } else if (!SYNTHETIC.has(msg.type) && msg.type !== "welcome") {
        update((prev) => {
          const change = { lastMessage: msg, messages: [...prev.messages, msg].slice(-keep) };
          if (msg.channel !== void 0) {
          } else if (msg.type === "notification") {
            change.notifications = [msg.data, ...prev.notifications].slice(0, keep);
          } else if (UNREAD_CHANGES.has(msg.type)) {
            Object.assign(change, inboxChange(prev, msg.type, msg.data, msg.timestamp ?? (/* @__PURE__ */ new Date()).toISOString()));
          }
          return change;
        });
      }
    });
    const subscribed = JSON.parse(channelsKey);
    client2.connect().then(
      () => {
        for (const channel of subscribed) {
          client2.subscribe(channel).then(
            () => update((prev) => ({ subscribed: [...prev.subscribed, channel] })),
            (error) => update(() => ({ error }))
          );
        }
      },
      (error) => update(() => ({ status: "closed", connected: false, error, closeCode: client2.closeCode }))
    );
    return () => {
      alive = false;
      off();
      client2.close();
    };
  }, [url, enabled, channelsKey, keep]);
  const applyChange = useCallback((type, data) => {
    setState((prev) => ({ ...prev, ...inboxChange(prev, type, data, (/* @__PURE__ */ new Date()).toISOString()) }));
    return data;
  }, []);
  const client = state.client;
  const run = useCallback(
    async (method, type, ids) => {
      if (client === null) throw new Error("useTidings: not connected yet");
      return applyChange(type, await client[method](ids));
    },
    [client, applyChange]
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
    change.notifications = prev.notifications.map((n) => ids.has(n.id) && !n.readAt ? { ...n, readAt: now } : n);
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
    error: null
  };
}
function useElement(tag, { client = null, store = null, strings = null, onAction, onError, ...attrs }) {
  const ref = useRef(null);
  useEffect(() => {
    if (ref.current === null) return;
    if (store !== null) ref.current.store = store;
    else ref.current.client = client;
  }, [client, store]);
  useEffect(() => {
    if (ref.current !== null && strings !== null) ref.current.strings = strings;
  }, [strings]);
  useEffect(() => {
    const el = ref.current;
    const offs = [];
    if (el === null) return void 0;
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
function TidingsInbox(props) {
  return useElement("tidings-inbox", props);
}
function TidingsBell(props) {
  return useElement("tidings-bell", props);
}
export {
  TidingsBell,
  TidingsInbox,
  useTidings
};
