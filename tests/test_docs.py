"""The docs' code examples run: every Python block compiles, and the blocks marked
``<!-- test: run -->`` run for real (Python as a script; the README's shell walk-through
against a real `tidings serve --dev`)."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import TIMEOUT, serve_process

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
RUN_MARK = "<!-- test: run -->"
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def blocks(path: Path, lang: str) -> list[tuple[int, str, bool]]:
    """(line, code, marked to run) for each fenced block of ``lang`` in ``path``."""
    text = path.read_text()
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1) != lang:
            continue
        before = text[: match.start()].rstrip("\n")
        marked = before.endswith(RUN_MARK)
        found.append((text.count("\n", 0, match.start()) + 1, match.group(2), marked))
    return found


def _python_blocks() -> list[tuple[Path, int, str, bool]]:
    return [(p, line, code, run) for p in DOCS for line, code, run in blocks(p, "python")]


@pytest.mark.parametrize(
    ("path", "line", "code", "run"),
    _python_blocks(),
    ids=[f"{p.name}:{line}" for p, line, _, _ in _python_blocks()],
)
def test_python_examples_compile(path: Path, line: int, code: str, run: bool) -> None:
    """Each Python example in the docs is valid Python (top-level await allowed)."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT | ast.PyCF_ONLY_AST
    compile(textwrap.dedent(code), f"{path.name}:{line}", "exec", flags=flags)


def _runnable_python() -> list[tuple[Path, int, str]]:
    return [(p, line, code) for p, line, code, run in _python_blocks() if run]


def test_some_examples_are_marked_to_run() -> None:
    """The run markers are in place (a renamed marker would silently skip every example)."""
    assert _runnable_python()
    assert any(run for _, _, run in blocks(ROOT / "README.md", "sh"))


@pytest.mark.parametrize(
    ("path", "line", "code"),
    _runnable_python(),
    ids=[f"{p.name}:{line}" for p, line, _ in _runnable_python()],
)
async def test_python_examples_run(path: Path, line: int, code: str, tmp_path: Path) -> None:
    """A marked Python example runs as a script and exits 0 (port 0, in-memory store)."""
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "JWT_"))}
    env.update(TIDINGS_PORT="0", TIDINGS_STORE_URL=":memory:")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIMEOUT * 3):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"{path.name}:{line}\n{err.decode()}"
    assert b"Traceback" not in err


async def test_readme_walk_through_runs(tmp_path: Path) -> None:
    """The README's marked shell blocks, run in order against `tidings serve --dev`, all
    get 2xx answers (each curl prints the JSON answer; no error object)."""
    script = "\n".join(code for _, code, run in blocks(ROOT / "README.md", "sh") if run)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "JWT_"))}
    env["TIDINGS_STORE_URL"] = ":memory:"
    async with serve_process("--dev", env=env, cwd=tmp_path) as (_, port):
        script = script.replace("http://127.0.0.1:8000", f"http://127.0.0.1:{port}")
        script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
        # -w: each answer's status on a line of its own, to check beside its body.
        script = script.replace("curl -s ", "curl -s -w '\\nHTTP %{http_code}\\n' ")
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            script,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(TIMEOUT * 3):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    statuses = re.findall(r"^HTTP (\d+)$", out.decode(), re.M)
    assert len(statuses) >= 5, out.decode()
    assert all(s.startswith("2") for s in statuses), out.decode()
    assert '"error"' not in out.decode()
