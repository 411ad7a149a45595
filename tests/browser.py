"""Headless Chromium for browser tests: Debian's ``chromium`` driven by Playwright.

Use it from a test module with ``from tests.browser import browser  # noqa: F401``
(pytest finds the fixture by name). Playwright never downloads a browser here: it drives
the system's ``/usr/bin/chromium`` (``scripts/services.sh`` installs it) through
``executable_path``, in a new, empty profile per launch.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

CHROMIUM = os.environ.get("TIDINGS_CHROMIUM", "/usr/bin/chromium")
# No sandbox (root in a container), no GPU, and nothing that phones home or updates
# itself while a test runs.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium; each ``browser.new_context()`` is a separate user profile."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 (one stat, before any I/O loop)
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/services.sh installs it")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or make test)")
    async with async_playwright() as pw:
        # launch() gives every run a fresh temporary profile and removes it at close.
        instance = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            await instance.close()


def page_errors(page: Page) -> list[str]:
    """Collect the page's uncaught errors and console errors (assert it stays empty)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(f"console.error: {msg.text}")

    page.on("console", console)
    return errors


async def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG under ``test-artifacts/`` (gitignored) and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    await page.screenshot(path=str(path), full_page=True)
    return path
