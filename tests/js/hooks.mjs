// Resolve hook: bare imports from clients/js/src (react.js imports "react", a peer
// dependency) resolve from tests/js/node_modules, as a bundler or import map would.
const here = new URL("./", import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  const bare = !/^(node:|data:|file:|\.{0,2}\/)/.test(specifier);
  if (bare && context.parentURL && !context.parentURL.startsWith(here)) {
    return nextResolve(specifier, { ...context, parentURL: here + "hooks.mjs" });
  }
  return nextResolve(specifier, context);
}
