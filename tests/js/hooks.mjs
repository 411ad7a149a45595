// Resolve hook: bare imports from clients/js/src (react.js imports "react", a peer
// dependency) resolve from tests/js/node_modules, as a bundler or import map would; the
// package's own names ("tidings", "tidings/server", ...), as the docs' examples write
// them, resolve to clients/js through its package.json exports, as after npm install; and
// a relative import without an extension (guide 003's `'../services/socket'`) finds its
// `.js` file, as a bundler does.
import { readFileSync } from "node:fs";

const here = new URL("./", import.meta.url).href;
const pkg = new URL("../../clients/js/", import.meta.url);
const { exports } = JSON.parse(readFileSync(new URL("package.json", pkg), "utf8"));

export async function resolve(specifier, context, nextResolve) {
  if (specifier === "tidings" || specifier.startsWith("tidings/")) {
    const entry = exports[specifier.replace(/^tidings/, ".")];
    if (entry) return { url: new URL(entry.node ?? entry.default, pkg).href, shortCircuit: true };
  }
  const bare = !/^(node:|data:|file:|\.{0,2}\/)/.test(specifier);
  if (bare && context.parentURL && !context.parentURL.startsWith(here)) {
    return nextResolve(specifier, { ...context, parentURL: here + "hooks.mjs" });
  }
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    if (error?.code !== "ERR_MODULE_NOT_FOUND" || !/^\.{1,2}\/[^.]*$/.test(specifier)) throw error;
    return nextResolve(specifier + ".js", context);
  }
}
