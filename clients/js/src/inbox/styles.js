// The elements' styles, adopted into their shadow roots as constructed stylesheets (so a
// page with a strict Content-Security-Policy, style-src 'self', needs nothing inline).
// Themable from outside with CSS custom properties; theme="dark" or "light" forces one,
// otherwise the user's prefers-color-scheme picks.

const LIGHT = `
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
const DARK = `
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

const BASE = `
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

export const INBOX_CSS = `${BASE}
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

export const BELL_CSS = `${BASE}
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

const cache = new Map();

/** Adopt `css` into a shadow root (one constructed sheet per text, shared). */
export function adopt(root, css) {
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function") {
    let sheet = cache.get(css);
    if (sheet === undefined) {
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
