"""The npm package in clients/js: versioned with the server, packed by ``npm pack``, usable
from an installed tarball in Node and in Chromium, and the source of the files the server
serves at ``/tidings.js``.

The package's development tools (esbuild) and the scratch project's packages come from
lock files (``npm ci``); the scratch project installs the packed tarball itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from playwright.async_api import Browser, Route

from tidings.protocol import PROTOCOL_VERSION

from .browser import browser, page_errors  # noqa: F401 (browser is a fixture)
from .conftest import TIMEOUT, ServerFactory, token
from .test_js_client import JS, NODE, npm_ci, run_node

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clients" / "js"
WEB = ROOT / "src" / "tidings" / "web"
# Served name -> the package file it is built from.
BUILT = ["tidings.js", "tidings.d.ts", "react.js", "react.d.ts", "inbox.js", "inbox.d.ts"]
BUILT += ["tidings-sw.js"]
ENTRIES = {"tidings": ["Client", "connect", "CLOSE_CODES", "VERSION", "PROTOCOL_VERSION"]}
ENTRIES["tidings"] += ["subscribePush", "unsubscribePush", "pushSupported"]
ENTRIES["tidings/react"] = ["useTidings", "TidingsInbox", "TidingsBell"]
ENTRIES["tidings/inbox"] = ["TidingsInbox", "TidingsBell", "InboxStore", "defineElements"]
ENTRIES["tidings/sw"] = ["installPushHandlers", "showPush", "notificationOptions", "openOrFocus"]
# Entries for Node only (the server SDK uses node:crypto): not bundled for the browser.
NODE_ENTRIES = {"tidings/server": ["TidingsServer", "TidingsError", "TransportError"]}


def _npm(*args: str, cwd: Path) -> str:
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed for the package's tests"
    done = subprocess.run(
        [npm, *args, "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 12,
    )
    return done.stdout


@pytest.fixture(scope="module")
def package_tools() -> Path:
    """clients/js/node_modules (esbuild), installed with npm ci if needed."""
    if NODE is None:
        pytest.skip("node is not installed")
    npm_ci(PACKAGE)
    npm_ci(JS)
    return PACKAGE / "node_modules"


@pytest.fixture(scope="module")
def scratch(package_tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new project with the packed tarball installed (and React beside it)."""
    out = tmp_path_factory.mktemp("pack")
    packed = json.loads(_npm("pack", "--json", "--pack-destination", str(out), cwd=PACKAGE))
    tarball = out / packed[0]["filename"]
    project = tmp_path_factory.mktemp("scratch")
    (project / "package.json").write_text(
        json.dumps({"name": "scratch", "private": True, "type": "module"})
    )
    react = _version(JS / "node_modules" / "react")
    react_dom = _version(JS / "node_modules" / "react-dom")
    _npm(
        "install",
        "--prefer-offline",
        str(tarball),
        f"react@{react}",
        f"react-dom@{react_dom}",
        cwd=project,
    )
    return project


def _read(root: Path, path: str) -> bytes | None:
    """A file under ``root`` by URL path, or None (nothing outside it is served)."""
    file = (root / path.lstrip("/")).resolve()
    if not file.is_relative_to(root.resolve()) or not file.is_file():
        return None
    return file.read_bytes()


def _version(folder: Path) -> str:
    return str(json.loads((folder / "package.json").read_text())["version"])


def test_versions_are_the_servers() -> None:
    """package.json, the VERSION export and the protocol version match the server's."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    version = pyproject["project"]["version"]
    assert _version(PACKAGE) == version
    source = (PACKAGE / "src" / "version.js").read_text()
    assert f'export const VERSION = "{version}";' in source
    assert f"export const PROTOCOL_VERSION = {PROTOCOL_VERSION};" in source
    for name in BUILT:
        assert f"tidings {version}, built from clients/js" in (WEB / name).read_text()


def test_modules_are_small() -> None:
    """Each module of the package is under about 400 lines (issue 12: no 1,100-line file)."""
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "src").rglob("*.js")}
    assert sizes
    assert max(sizes.values()) <= 420, sizes


async def test_served_files_are_a_fresh_build(package_tools: Path, tmp_path: Path) -> None:
    """src/tidings/web holds exactly what scripts/build.mjs builds from the package now."""
    code, out = await run_node(
        "scripts/build.mjs", "--out", str(tmp_path), timeout=TIMEOUT * 3, cwd=PACKAGE
    )
    assert code == 0, out
    for name in BUILT:
        assert (tmp_path / name).read_text() == (WEB / name).read_text(), (
            f"{name} is stale: run `npm run build` in clients/js and commit"
        )


async def test_tarball_entry_points_import_in_node(scratch: Path) -> None:
    """Each entry point of the installed tarball imports in Node with its exports."""
    for entry, names in {**ENTRIES, **NODE_ENTRIES}.items():
        script = (
            f"const m = await import({json.dumps(entry)});"
            "console.log(JSON.stringify(Object.keys(m).sort()));"
        )
        code, out = await run_node(
            "--input-type=module", "-e", script, timeout=TIMEOUT * 2, cwd=scratch
        )
        assert code == 0, out
        assert set(names) <= set(json.loads(out)), (entry, out)
    # Only what the exports map names is reachable.
    private = "await import('tidings/src/wire.js')"
    code, out = await run_node("--input-type=module", "-e", private, timeout=TIMEOUT, cwd=scratch)
    assert code != 0
    assert "ERR_PACKAGE_PATH_NOT_EXPORTED" in out


async def test_tarball_types_resolve(scratch: Path) -> None:
    """TypeScript finds each entry point's declarations through the exports map."""
    (scratch / "use.ts").write_text(
        'import { Client, VERSION, type Notification } from "tidings";\n'
        'import { useTidings, TidingsBell, type TidingsState } from "tidings/react";\n'
        'import { InboxStore, type InboxElement } from "tidings/inbox";\n'
        'import { TidingsServer, type Sent } from "tidings/server";\n'
        'import { installPushHandlers, type PushPayload } from "tidings/sw";\n'
        'import { subscribePush } from "tidings";\n'
        'export const sdk: TidingsServer = new TidingsServer({ url: "http://x", apiKey: "k" });\n'
        "export type Sends = Sent;\n"
        'const c: Client = new Client("ws://x/ws", "t");\n'
        "const n: number | null = c.unreadCount;\n"
        "const v: string = VERSION;\n"
        "const s: InboxStore = new InboxStore(c);\n"
        "const b: unknown = TidingsBell({\n"
        "  store: s, theme: 'dark', onAction: (e) => e.detail.action.id,\n"
        "});\n"
        "export const all: unknown[] = [n, v, useTidings, b, installPushHandlers, subscribePush];\n"
        "export type Used = [Notification, TidingsState, InboxElement, PushPayload];\n"
    )
    (scratch / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "target": "ES2022",
                    "module": "NodeNext",
                    "moduleResolution": "NodeNext",
                    "strict": True,
                    "noEmit": True,
                    "skipLibCheck": True,
                    "types": [],
                    "lib": ["ES2022", "DOM"],
                },
                "files": ["use.ts"],
            }
        )
    )
    tsc = JS / "node_modules" / "typescript" / "bin" / "tsc"
    code, out = await run_node(str(tsc), "-p", "tsconfig.json", timeout=TIMEOUT * 6, cwd=scratch)
    assert code == 0, out


async def test_tarball_entry_points_import_in_chromium(
    scratch: Path,
    browser: Browser,  # noqa: F811
) -> None:
    """In Chromium: the client entry as plain ES modules (an import map), and every entry
    through a bundler (esbuild resolving the package's exports map)."""
    lines = [f"import * as e{i} from {json.dumps(e)};" for i, e in enumerate(ENTRIES)]
    lines.append(
        "window.bundled = {"
        + ", ".join(f"{json.dumps(e)}: Object.keys(e{i})" for i, e in enumerate(ENTRIES))
        + "};"
    )
    (scratch / "entry.js").write_text("\n".join(lines) + "\n")
    build = {
        "absWorkingDir": str(scratch),
        "entryPoints": ["entry.js"],
        "bundle": True,
        "format": "esm",
        "outfile": "bundle.js",
        "logLevel": "error",
    }
    code, out = await run_node(
        "--input-type=module",
        "-e",
        f"await (await import('esbuild')).build({json.dumps(build)});",
        timeout=TIMEOUT * 3,
        cwd=PACKAGE,
    )
    assert code == 0, out

    origin = "http://pkg.test"
    page_html = (
        "<!doctype html><script type=importmap>"
        + json.dumps({"imports": {"tidings": "/node_modules/tidings/src/index.js"}})
        + "</script><script type=module>"
        "import * as t from 'tidings'; window.plain = Object.keys(t);"
        "</script><script type=module src=/bundle.js></script>"
    )

    async def serve(route: Route) -> None:
        path = route.request.url.removeprefix(origin).split("?")[0]
        if path == "/":
            await route.fulfill(body=page_html, content_type="text/html")
            return
        body = _read(scratch, path)
        if body is None:
            await route.fulfill(status=404, body="")
            return
        await route.fulfill(body=body, content_type="text/javascript")

    context = await browser.new_context()
    page = await context.new_page()
    errors = page_errors(page)
    await page.route(f"{origin}/**", serve)
    await page.goto(origin + "/")
    await page.wait_for_function("window.plain && window.bundled", timeout=TIMEOUT * 1000)
    plain = await page.evaluate("window.plain")
    bundled = await page.evaluate("window.bundled")
    assert set(ENTRIES["tidings"]) <= set(plain)
    for entry, names in ENTRIES.items():
        assert set(names) <= set(bundled[entry]), (entry, bundled)
    assert errors == []
    await context.close()


APP = """
import { createElement as h } from "react";
import { createRoot } from "react-dom/client";
import { useTidings, TidingsBell, TidingsInbox } from "tidings/react";

function App({ url, token }) {
  const { client, unreadCount, status } = useTidings({ url, token });
  return h("div", null,
    h("p", { id: "hook" }, status + " " + unreadCount),
    client && h(TidingsBell, { client, theme: "dark" }),
    client && h(TidingsInbox, {
      client, lang: "es", strings: { title: "Avisos", markAllRead: "Marcar todo" },
    }),
  );
}
createRoot(document.getElementById("root")).render(h(App, window.appProps));
"""


async def test_react_components_from_the_tarball_in_chromium(
    scratch: Path,
    browser: Browser,  # noqa: F811
    make_server: ServerFactory,
) -> None:
    """A React app bundled from the installed tarball renders the hook, <TidingsBell> and
    <TidingsInbox> (translated) against a real server, all showing the server's count."""
    h = await make_server()
    for title in ("uno", "dos"):
        status, _ = await h.api("POST", "/api/notifications", {"userId": "rosa", "title": title})
        assert status == 201
    (scratch / "app.js").write_text(APP)
    build = {
        "absWorkingDir": str(scratch),
        "entryPoints": ["app.js"],
        "bundle": True,
        "format": "esm",
        "outfile": "app.bundle.js",
        "logLevel": "error",
    }
    code, out = await run_node(
        "--input-type=module",
        "-e",
        f"await (await import('esbuild')).build({json.dumps(build)});",
        timeout=TIMEOUT * 3,
        cwd=PACKAGE,
    )
    assert code == 0, out
    bundle = _read(scratch, "app.bundle.js")
    assert bundle is not None

    async def serve(route: Route) -> None:
        await route.fulfill(body=bundle, content_type="text/javascript")

    context = await browser.new_context()
    page = await context.new_page()
    errors = page_errors(page)
    await page.route(f"{h.url}/app/bundle.js", serve)
    # A document the server really sent (Chromium's local-network checks look at where
    # it came from), with the app put into it, on the server's origin.
    await page.goto(f"{h.url}/health/live")
    await page.evaluate(
        "(props) => { document.body.innerHTML = '<div id=root></div>'; window.appProps = props; }",
        {"url": h.ws_url, "token": token("rosa")},
    )
    await page.add_script_tag(url="/app/bundle.js", type="module")
    await page.locator("#hook", has_text="open 2").wait_for(timeout=TIMEOUT * 1000)
    await page.wait_for_function(
        "() => document.querySelector('tidings-bell')?.shadowRoot"
        ".querySelector('.badge').textContent === '2'",
        timeout=TIMEOUT * 1000,
    )
    inbox = page.locator("#root > div > tidings-inbox")  # not the bell's
    await inbox.locator("li.item").nth(1).wait_for(timeout=TIMEOUT * 1000)
    assert await inbox.locator("h2").text_content() == "Avisos"
    await inbox.locator("button.mark-all", has_text="Marcar todo").click()
    await page.locator("#hook", has_text="open 0").wait_for(timeout=TIMEOUT * 1000)
    assert errors == []
    await context.close()
