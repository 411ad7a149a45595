// Build the files the server serves (src/tidings/web/) from this package:
//   /tidings.js  one ES module bundling src/index.js
//   /react.js    src/react.js, importing "./tidings.js", "./inbox.js" and "react"
//   /inbox.js    src/inbox/index.js (the Web Components), importing "./tidings.js"
//   /tidings-sw.js  src/sw.js, the Web Push service worker, as a classic script
//   /tidings.d.ts, /react.d.ts, /inbox.d.ts  the declarations
// Each is stamped with the version. The output is committed, so `make serve` needs no
// npm; tests/test_js_package.py fails when it differs from a fresh build.
//
//   node scripts/build.mjs            write into ../../src/tidings/web
//   node scripts/build.mjs --out DIR  write into DIR (the test compares)

import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const at = process.argv.indexOf("--out");
const out = at >= 0 ? resolve(process.argv[at + 1]) : resolve(root, "../../src/tidings/web");

// Entry points served beside each other: an import of another entry becomes an import
// of its served file, so the page loads each once.
const SERVED = {
  [join(root, "src/index.js")]: "./tidings.js",
  [join(root, "src/inbox/index.js")]: "./inbox.js",
  [join(root, "src/inbox/elements.js")]: "./inbox.js",
};
function siblings(name) {
  return {
    name: "served-siblings",
    setup(build) {
      build.onResolve({ filter: /^\./ }, (args) => {
        const served = SERVED[resolve(args.resolveDir, args.path)];
        // Part of the file being built: bundled; part of another: imported from it.
        if (served === undefined || served === `./${name}`) return undefined;
        return { path: served, external: true };
      });
    },
  };
}

function banner(name) {
  return (
    `// ${name}: tidings ${pkg.version}, built from clients/js (the npm package "${pkg.name}") by\n` +
    `// clients/js/scripts/build.mjs. Do not edit: change clients/js/src and rebuild.`
  );
}

async function bundle(entry, name, external = [], format = "esm") {
  const result = await esbuild.build({
    entryPoints: [join(root, entry)],
    bundle: true,
    format,
    target: "es2022",
    platform: "neutral",
    external,
    plugins: [siblings(name)],
    banner: { js: banner(name) },
    charset: "utf8",
    legalComments: "none",
    write: false,
  });
  writeFileSync(join(out, name), result.outputFiles[0].text);
}

function types(from, name) {
  const text = readFileSync(join(root, "types", from), "utf8").replace(/from "\.\/index\.js"/g, 'from "./tidings.js"');
  writeFileSync(join(out, name), banner(name) + "\n\n" + text);
}

mkdirSync(out, { recursive: true });
await bundle("src/index.js", "tidings.js");
await bundle("src/react.js", "react.js", ["react"]);
await bundle("src/inbox/index.js", "inbox.js");
// A classic script: every browser registers it without { type: "module" }.
await bundle("src/sw.js", "tidings-sw.js", [], "iife");
types("index.d.ts", "tidings.d.ts");
types("react.d.ts", "react.d.ts");
types("inbox.d.ts", "inbox.d.ts");
