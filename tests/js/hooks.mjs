// Resolve hook: bare imports from clients/js/src (react.js imports "react", a peer
// dependency) resolve from tests/js/node_modules, as a bundler or import map would; and a
// relative import without an extension (guide 003's `'../services/socket'`) finds its
// `.js` file, as a bundler does.
const here = new URL("./", import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
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
