// The elements and their definition, without defining anything on import (index.js does
// that); the React wrappers import this, so a bundle of useTidings alone leaves them out.

import { TidingsBell } from "./bell-element.js";
import { TidingsInbox } from "./inbox-element.js";

export { TidingsBell, TidingsInbox };

/** Define <tidings-inbox> and <tidings-bell> once (a no-op without customElements). */
export function defineElements(registry = globalThis.customElements) {
  if (!registry) return;
  if (!registry.get("tidings-inbox")) registry.define("tidings-inbox", TidingsInbox);
  if (!registry.get("tidings-bell")) registry.define("tidings-bell", TidingsBell);
}
