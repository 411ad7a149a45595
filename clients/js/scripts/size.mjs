// Size of each entry point, minified and gzipped, beside other realtime clients measured
// the same way: esbuild bundles `import * as m from "<entry>"` for the browser (peer
// dependencies such as react left out), minifies it, and zlib gzips it at level 9.
//
//   node scripts/size.mjs     prints a Markdown table (docs/clients.md has it)

import { gzipSync } from "node:zlib";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const ENTRIES = [
  ["tidings", "./src/index.js", "the client"],
  ["tidings/react", "./src/react.js", "useTidings (imports the client)"],
  ["tidings/inbox", "./src/inbox/index.js", "`<tidings-inbox>`, `<tidings-bell>` (imports the client)"],
  ["centrifuge 5.7.4", "centrifuge", "Centrifugo's client"],
  ["pusher-js 8.6.0", "pusher-js", "Pusher's client"],
];

async function measure(target) {
  const result = await esbuild.build({
    stdin: { contents: `export * from ${JSON.stringify(target)};`, resolveDir: root, loader: "js" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2020",
    external: ["react", "react-dom"],
    write: false,
    logLevel: "silent",
  });
  const bytes = result.outputFiles[0].contents;
  return { min: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}

const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log("| Entry point | What | Minified | Minified + gzip |");
console.log("|-------------|------|---------:|----------------:|");
for (const [name, target, what] of ENTRIES) {
  let size;
  try {
    size = await measure(target);
  } catch {
    continue; // an entry not built yet
  }
  console.log(`| \`${name}\` | ${what} | ${kb(size.min)} | ${kb(size.gzip)} |`);
}
