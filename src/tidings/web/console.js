// The tidings web console: a notification centre (the <tidings-bell> and <tidings-inbox>
// components of /inbox.js), a live operations view, and (under
// `tidings serve --dev` only) forms to mint a token and publish test messages.
// Plain DOM, no framework, no build step; everything it loads is served by tidings.
// Untrusted text (titles, messages, channel names) is only ever set as textContent.

import { Client } from "/tidings.js";
import { InboxStore } from "/inbox.js";
import { setUpActions } from "/ops.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const CHART_POINTS = 60;
const POLL_MS = 1000;
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

const state = {
  dev: null, // the /dev/config answer, under --dev only
  client: null,
  store: null, // the InboxStore behind the bell and the inbox (components from /inbox.js)
  actions: null, // the operations view's forms (/ops.js), acting with the watched key
  watching: null, // {key, timer}
  samples: new Map(), // instance -> {last: {out, at}, rates: number[]}
  totalRates: [],
};

// --- views ---------------------------------------------------------------------------

function showView() {
  const wanted = (location.hash || "#notifications").slice(1);
  const view = ["notifications", "operations", "dev"].includes(wanted) ? wanted : "notifications";
  for (const name of ["notifications", "operations", "dev"]) {
    $(`view-${name}`).hidden = name !== view || (name === "dev" && state.dev === null);
  }
  for (const link of document.querySelectorAll(".tabs a")) {
    link.classList.toggle("active", link.dataset.view === view);
  }
  if (view === "operations" && state.watching === null && $("apikey").value) startWatching($("apikey").value);
}

// --- the notification centre ---------------------------------------------------------

function wsUrl() {
  const path = state.dev?.wsPath ?? params.get("ws") ?? "/ws";
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.dataset.state = kind;
}

function showUnread() {
  const unread = state.store?.unreadCount ?? 0;
  document.title = unread ? `(${unread}) tidings` : "tidings";
}

async function mint(userId, roles = [], ttl = 3600) {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ userId, roles, ttl }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error?.message ?? `HTTP ${response.status}`);
  return body.token;
}

async function signIn(token) {
  await signOut();
  $("signin-error").textContent = "";
  setStatus("connecting…", "connecting");
  // Callbacks only: nothing is kept for an async iterator (eventBuffer 0).
  const client = new Client(wsUrl(), token, { transport: params.get("transport") ?? "auto", eventBuffer: 0 });
  state.client = client;
  client.on("_connected", (event) => {
    if (state.client === client) setStatus(`online (${event.transport})`, "online");
  });
  client.on("_disconnected", (event) => {
    if (state.client !== client) return;
    if (event.reconnect) setStatus("reconnecting…", "connecting");
    else setStatus(`disconnected (${event.code}${event.reason ? ": " + event.reason : ""})`, "offline");
  });
  // One store behind both views of the inbox (the bell's popover and the page), so the
  // user's notifications are read once; it loads the first page after each connection.
  const store = new InboxStore(client, { pageSize: 20 });
  state.store = store;
  store.addEventListener("change", showUnread);
  $("bell").store = store;
  $("inbox-list").store = store;
  try {
    await client.connect();
  } catch (error) {
    if (state.client === client) {
      state.client = null;
      setStatus("signed out", "offline");
      $("signin-error").textContent = `Could not connect: ${error.message ?? error}`;
    }
    return;
  }
  sessionStorage.setItem("tidings-token", token);
  $("signin").hidden = true;
  $("inbox").hidden = false;
  $("inbox-user").textContent = client.welcome.userId;
}

async function signOut() {
  const client = state.client;
  state.client = null;
  state.store?.detach();
  state.store = null;
  $("bell").store = null;
  $("inbox-list").store = null;
  sessionStorage.removeItem("tidings-token");
  showUnread();
  $("signin").hidden = false;
  $("inbox").hidden = true;
  setStatus("signed out", "offline");
  if (client !== null) await client.close();
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// --- the operations view -------------------------------------------------------------

function startWatching(key) {
  stopWatching();
  state.watching = { key, timer: null };
  state.samples = new Map();
  state.totalRates = [];
  $("ops-error").textContent = "";
  poll();
  state.actions?.follow(); // the server's event log, live
}

function stopWatching() {
  if (state.watching !== null) clearTimeout(state.watching.timer);
  state.watching = null;
  state.actions?.unfollow();
}

async function poll() {
  const watching = state.watching;
  if (watching === null) return;
  try {
    const headers = { Authorization: `Bearer ${watching.key}` };
    // Cluster-wide, with one entry per instance; a single instance answers the same shape.
    let response = await fetch("/api/stats?scope=cluster", { headers });
    let note = "";
    if (response.status === 503) {
      note = "the cluster is unreachable: showing this instance only";
      response = await fetch("/api/stats", { headers });
    }
    const body = await response.json().catch(() => ({}));
    if (state.watching !== watching) return;
    if (!response.ok) {
      $("ops-error").textContent = body.error?.message ?? `HTTP ${response.status}`;
      if (response.status === 401 || response.status === 403) {
        stopWatching();
        return;
      }
    } else {
      $("ops-error").textContent = note;
      showStats(body, performance.now());
    }
  } catch (error) {
    if (state.watching === watching) $("ops-error").textContent = `stats unavailable: ${error.message ?? error}`;
  }
  if (state.watching === watching) {
    state.actions?.poll();
    watching.timer = setTimeout(poll, POLL_MS);
  }
}

function rate(name, out, at) {
  let sample = state.samples.get(name);
  if (!sample) {
    sample = { last: null, rates: [] };
    state.samples.set(name, sample);
  }
  let value = null;
  if (sample.last !== null && at > sample.last.at && out >= sample.last.out) {
    value = ((out - sample.last.out) * 1000) / (at - sample.last.at);
  }
  sample.last = { out, at };
  if (value !== null) {
    sample.rates.push(value);
    if (sample.rates.length > CHART_POINTS) sample.rates.shift();
  }
  return value;
}

function showStats(stats, at) {
  $("ops").hidden = false;
  const channels = Object.entries(stats.channelCounts ?? {}).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  $("ops-connections").textContent = String(stats.totalConnections ?? 0);
  $("ops-users").textContent = String(stats.totalUsers ?? 0);
  $("ops-channels").textContent = String(channels.length);
  const instances = Array.isArray(stats.instances) && stats.instances.length ? stats.instances : [stats];
  const rows = [];
  let total = 0;
  for (const inst of instances) {
    const name = String(inst.instance ?? "this instance");
    const value = rate(name, Number(inst.messagesOut ?? 0), at);
    total += value ?? 0;
    const tr = el("tr");
    tr.append(
      el("td", "mono", name),
      el("td", "num", inst.totalConnections ?? 0),
      el("td", "num", value === null ? "–" : value.toFixed(1)),
      el("td", "num", inst.uptimeSeconds === undefined ? "–" : `${Math.round(inst.uptimeSeconds)} s`),
    );
    rows.push(tr);
  }
  $("instances").tBodies[0].replaceChildren(...rows);
  const first = state.samples.values().next().value;
  if (first && first.rates.length) {
    state.totalRates.push(total);
    if (state.totalRates.length > CHART_POINTS) state.totalRates.shift();
    $("ops-rate").textContent = total.toFixed(1);
  }
  $("channels").tBodies[0].replaceChildren(
    ...channels.map(([name, count]) => {
      const tr = el("tr");
      tr.append(el("td", "mono", name), el("td", "num", count));
      return tr;
    }),
  );
  $("channels-empty").hidden = channels.length > 0;
  drawChart();
}

function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 640;
  const height = canvas.clientHeight || 160;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const series = [...state.samples.entries()];
  const lines = series.length > 1 ? series.map(([name, s]) => [name, s.rates]) : [["total", state.totalRates]];
  const max = Math.max(1, ...lines.flatMap(([, values]) => values));
  const pad = { left: 36, right: 8, top: 8, bottom: 16 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  ctx.strokeStyle = "#d4d4d8";
  ctx.fillStyle = "#71717a";
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (const fraction of [0, 0.5, 1]) {
    const y = pad.top + plotH * (1 - fraction);
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(width - pad.right, y);
    ctx.stroke();
    ctx.fillText((max * fraction).toFixed(max < 10 ? 1 : 0), 2, y + 4);
  }
  ctx.fillText(`last ${CHART_POINTS} s`, pad.left, height - 3);
  const legend = [];
  lines.forEach(([name, values], index) => {
    const color = PALETTE[index % PALETTE.length];
    legend.push(name);
    if (values.length === 0) return;
    if (values.length === 1) {
      // One sample so far: a dot at the right edge, where the line will start.
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.arc(pad.left + plotW, pad.top + plotH * (1 - values[0] / max), 3, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    values.forEach((value, i) => {
      const x = pad.left + (plotW * (CHART_POINTS - values.length + i)) / (CHART_POINTS - 1);
      const y = pad.top + plotH * (1 - value / max);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  });
  $("chart-legend").replaceChildren(
    ...legend.map((name, index) => {
      const span = el("span", "legend-item", name);
      span.style.setProperty("--swatch", PALETTE[index % PALETTE.length]);
      return span;
    }),
  );
}

// --- the dev forms -------------------------------------------------------------------

async function callApi(path, body) {
  const key = $("apikey").value || state.dev?.apiKey;
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return `${response.status} ${text}`;
}

function showResult(form, text) {
  form.querySelector(".result").textContent = text;
}

function setUpDevForms() {
  $("dev-token").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const roles = String(form.get("roles") ?? "")
      .split(",")
      .map((r) => r.trim())
      .filter(Boolean);
    try {
      $("dev-token-out").value = await mint(String(form.get("userId")), roles, Number(form.get("ttl")) || 3600);
      $("dev-use-token").disabled = false;
    } catch (error) {
      $("dev-token-out").value = `error: ${error.message ?? error}`;
      $("dev-use-token").disabled = true;
    }
  });
  $("dev-use-token").addEventListener("click", () => {
    location.hash = "#notifications";
    signIn($("dev-token-out").value);
  });
  $("dev-publish").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    let data;
    try {
      data = JSON.parse(String(form.get("data") || "null"));
    } catch (error) {
      showResult(event.target, `data is not JSON: ${error.message}`);
      return;
    }
    const body = { channel: form.get("channel"), type: form.get("type"), data };
    showResult(event.target, await callApi("/api/publish", body));
  });
  $("dev-notify").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const actions = String(form.get("actions") ?? "")
      .split("\n")
      .map((line) => line.split("|").map((part) => part.trim()))
      .filter((parts) => parts[0])
      .map(([id, label, url]) => (url ? { id, label: label || id, url } : { id, label: label || id }));
    const body = {
      userId: form.get("userId"),
      title: form.get("title"),
      priority: form.get("priority"),
      actions,
    };
    if (form.get("message")) body.message = form.get("message");
    showResult(event.target, await callApi("/api/notifications", body));
  });
}

// --- start ---------------------------------------------------------------------------

async function loadDevConfig() {
  try {
    const response = await fetch("/dev/config", { headers: { Accept: "application/json" } });
    if (!response.ok) return null;
    return await response.json();
  } catch {
    return null;
  }
}

async function main() {
  window.addEventListener("hashchange", showView);
  $("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("signin-token").value.trim();
    const user = $("signin-user").value.trim();
    try {
      if (token) await signIn(token);
      else if (user && state.dev?.canMintTokens) await signIn(await mint(user));
      else $("signin-error").textContent = state.dev ? "Enter a user id or a token." : "Paste a token.";
    } catch (error) {
      $("signin-error").textContent = String(error.message ?? error);
    }
  });
  $("signout").addEventListener("click", () => signOut());
  $("apikey-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("apikey").value.trim();
    if (key) startWatching(key);
  });

  state.actions = setUpActions(() => state.watching?.key ?? "");
  state.dev = await loadDevConfig();
  $("dev-tab").hidden = state.dev === null;
  $("signin-user-row").hidden = !state.dev?.canMintTokens;
  if (state.dev) {
    if (state.dev.apiKey) $("apikey").value = state.dev.apiKey;
    setUpDevForms();
  }
  showView();
  document.body.dataset.ready = "true";

  const saved = sessionStorage.getItem("tidings-token");
  const user = params.get("user");
  try {
    if (user && state.dev?.canMintTokens) {
      $("signin-user").value = user;
      await signIn(await mint(user));
    } else if (saved) {
      await signIn(saved);
    }
  } catch (error) {
    $("signin-error").textContent = String(error.message ?? error);
  }
}

main();
