// Size of each entry point, minified and gzipped, beside other realtime clients measured
// the same way: esbuild bundles what an application imports for the browser (peer
// dependencies such as react left out), minifies it, and zlib gzips it at level 9.
//
//   node scripts/size.mjs     prints a Markdown table (docs/clients.md has it)

import { gzipSync } from "node:zlib";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

// [what is imported, the import statement, what it brings]
const ENTRIES = [
  ["`tidings`", 'export { Client } from "./src/index.js";', "the client"],
  ["`tidings/react`: `useTidings`", 'export { useTidings } from "./src/react.js";', "the hook and the client"],
  ["`tidings/inbox`", 'export * from "./src/inbox/index.js";', "`<tidings-inbox>`, `<tidings-bell>`, the store (the client not included)"],
  ["`tidings` + `tidings/inbox`", 'export { Client } from "./src/index.js"; export * from "./src/inbox/index.js";', "what a page with a bell loads"],
  ["`tidings/react`: all", 'export * from "./src/react.js";', "the hook, the client, `<TidingsBell>`, `<TidingsInbox>`"],
  ["`tidings`: `subscribePush`", 'export { subscribePush } from "./src/index.js";', "the Web Push helper alone"],
  ["`tidings/sw`", 'export * from "./src/sw.js";', "the Web Push service worker (`/tidings-sw.js`)"],
  ["centrifuge 5.7.4", 'export { Centrifuge } from "centrifuge";', "Centrifugo's client"],
  ["pusher-js 8.6.0", 'export { default } from "pusher-js";', "Pusher's client"],
];

async function measure(contents) {
  const result = await esbuild.build({
    stdin: { contents, resolveDir: root, loader: "js" },
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
console.log("| Import | What it brings | Minified | Minified + gzip |");
console.log("|-------------|------|---------:|----------------:|");
for (const [name, target, what] of ENTRIES) {
  const size = await measure(target);
  console.log(`| ${name} | ${what} | ${kb(size.min)} | ${kb(size.gzip)} |`);
}
