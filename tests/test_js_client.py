"""The JavaScript client (clients/js; served as /tidings.js) tested with Node's test runner.

Each ``tests/js/*.test.mjs`` file runs as one pytest test: ``node --test`` against real
``tidings serve`` processes that the Node tests start themselves (they restart them on the
same port). The npm packages the Node tests use (``ws``, ``eventsource``, React,
TypeScript) are pinned by ``tests/js/package-lock.json`` and installed with ``npm ci``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.protocol import CLOSE_CODES

from .conftest import API_KEY, SECRET, TIMEOUT

JS = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")


def npm_ci(folder: Path) -> None:
    """Install ``folder/node_modules`` from its lock file when it is missing or stale."""
    stamp = folder / "node_modules" / ".package-lock.json"
    lock = folder / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed to install the Node tests' packages"
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, check=True
    )


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """tests/js/node_modules, installed with npm ci if needed (Node 20 must be there)."""
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing: the JavaScript client's tests need Node 20 and npm")
        pytest.skip("node is not installed")
    npm_ci(JS)
    return JS / "node_modules"


async def run_node(*args: str, timeout: float, cwd: Path = JS) -> tuple[int, str]:
    """Run node with the test secrets in its environment; its exit code and output."""
    assert NODE is not None
    env = dict(os.environ)
    env.update(
        TIDINGS_PYTHON=sys.executable,
        TIDINGS_TEST_SECRET=SECRET,
        TIDINGS_TEST_API_KEY=API_KEY,
    )
    proc = await asyncio.create_subprocess_exec(
        NODE,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.timeout(TIMEOUT * 24)
@pytest.mark.parametrize("path", sorted(p.name for p in JS.glob("*.test.mjs")))
async def test_node(path: str, node_modules: Path) -> None:
    """Every Node test file passes (node --test) against real tidings servers."""
    code, out = await run_node(
        "--import",
        "./register.mjs",
        "--test",
        "--test-reporter=tap",
        f"--test-timeout={int(TIMEOUT * 6 * 1000)}",
        # A failed test may leave a client reconnecting: do not wait for it to give up.
        "--test-force-exit",
        path,
        timeout=TIMEOUT * 20,
    )
    assert code == 0, out
    assert "\n# fail 0\n" in out, out
    assert "\n# pass 0\n" not in out, out


async def test_close_code_table_is_the_servers(node_modules: Path) -> None:
    """The JS client carries exactly protocol.py's close-code table (reason and policy)."""
    code, out = await run_node(
        "--input-type=module",
        "-e",
        "import { CLOSE_CODES } from '../../clients/js/src/index.js';"
        "console.log(JSON.stringify(CLOSE_CODES));",
        timeout=TIMEOUT,
    )
    assert code == 0, out
    table = json.loads(out)
    expected = {
        str(int(c)): {"reason": info.reason, "reconnect": info.reconnect}
        for c, info in CLOSE_CODES.items()
    }
    assert table == expected


async def test_type_declarations_compile(node_modules: Path) -> None:
    """tidings.d.ts and react.d.ts type-check a program that uses them (tsc --noEmit)."""
    tsc = node_modules / "typescript" / "bin" / "tsc"
    code, out = await run_node(str(tsc), "-p", "tsconfig.json", timeout=TIMEOUT * 6)
    assert code == 0, out
