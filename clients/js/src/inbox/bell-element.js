// <tidings-bell>: a bell button with the unread count as a badge; it opens a popover
// holding a <tidings-inbox> (full screen on a phone). Escape or a click elsewhere closes
// it and gives the focus back to the bell. Same client/store/strings properties and
// attributes (lang, theme, page-size, tabs, channels) as <tidings-inbox>, passed on to it.

import { h, icon } from "./dom.js";
import { InboxStore } from "./store.js";
import { mergeStrings } from "./strings.js";
import { adopt, BELL_CSS } from "./styles.js";

const Base = globalThis.HTMLElement ?? class {};
const PASSED = ["lang", "theme", "page-size", "tabs", "channels"];
let instances = 0;

export class TidingsBell extends Base {
  static observedAttributes = PASSED;

  constructor() {
    super();
    this._uid = `tb${(instances += 1)}`;
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
        onclick: () => (this.open ? this.close() : this.show()),
      },
      icon("bell"),
      this._badge,
    );
    this._inbox = document.createElement("tidings-inbox");
    this._popover = h(
      "div",
      { class: "popover", id: `${this._uid}-pop`, role: "dialog", "aria-label": this._strings.title, hidden: true, onkeydown: (e) => this._key(e) },
      this._inbox,
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
}
