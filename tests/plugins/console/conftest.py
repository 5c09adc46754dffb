"""A real headless browser for the console tests: Python playwright driving Debian's chromium
(never a downloaded one). A missing browser fails the tests: CI installs it (.ci/run)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 # without these chromium keeps calling home, which floods a closed network
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    path = os.environ.get("WARMGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(f"the console tests need Debian's chromium at {path} (apt-get install -y chromium), "
                    "or WARMGATE_CHROMIUM pointing at one")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context per test (its own sessionStorage); page errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], f"the console raised in the browser: {errors}"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $WARMGATE_ARTIFACTS (kept by CI), else a pytest temporary directory."""
    configured = os.environ.get("WARMGATE_ARTIFACTS")
    target = Path(configured) / "console" if configured else tmp_path_factory.mktemp("console-artifacts")
    target.mkdir(parents=True, exist_ok=True)
    return target
