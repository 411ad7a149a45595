// tidings/inbox: the drop-in inbox as framework-free Web Components. Importing this
// module defines <tidings-inbox> and <tidings-bell> (where customElements exists);
// defineElements() is there for a registry of your own.
//
//   import "tidings/inbox";
//   document.querySelector("tidings-bell").client = client;   // a tidings Client

import { defineElements } from "./elements.js";

export { defineElements, TidingsBell, TidingsInbox } from "./elements.js";
export { InboxStore } from "./store.js";
export { STRINGS, mergeStrings, relativeTime } from "./strings.js";
export {
  CHANNELS,
  httpOrigin,
  loadChannelPreferences,
  loadPreferences,
  saveChannelPreferences,
  savePreferences,
  switchedOn,
} from "./preferences.js";

defineElements();
