"""One headless Chromium for the console's tests, driven by Playwright.

The browser is Debian's ``chromium`` package (``/usr/bin/chromium``); nothing
downloads one. Without it (or without the ``playwright`` package) the tests
are skipped with one line, unless RUNTARA_TEST_REQUIRE_BROWSER=1 (as in CI),
which makes that a failure. Screenshots go to RUNTARA_TEST_SCREENSHOTS, by
default ``test-output/screenshots`` in the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("RUNTARA_TEST_REQUIRE_BROWSER") == "1"
ARGUMENTS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # Without these Chromium keeps calling home, and a closed network refuses it.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]


def _missing(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason}, and RUNTARA_TEST_REQUIRE_BROWSER=1")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """Chromium for the tests of one module. Playwright's synchronous API keeps an
    asyncio loop running on the main thread while it is open: it must be closed
    before tests that run asyncio themselves."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        _missing(f"Chromium not found at {CHROMIUM} (Debian package chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGUMENTS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(
        os.environ.get("RUNTARA_TEST_SCREENSHOTS") or ROOT / "test-output" / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder
