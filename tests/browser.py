"""A headless Chromium through Playwright, in one place: the browser tests and
docs/scripts/screenshots.py find the browser and open pages the same way.

The system's Chromium is used (Debian: `apt-get install chromium`), never a browser Playwright
downloads: `playwright install` needs the internet, which CI machines may not have.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")  # Debian, Ubuntu, Google
HEIGHT = 900  # CSS pixels; a laptop's window, for what is "above the fold"


def executable() -> str | None:
    """The first Chromium on PATH, or None."""
    return next(filter(None, map(shutil.which, EXECUTABLES)), None)


def unavailable() -> str | None:
    """Why no headless Chromium can start here, as what to install; None when one can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is missing (pip install -e '.[test]')"
    if executable() is None:
        return f"no Chromium on PATH ({', '.join(EXECUTABLES)}; Debian: apt-get install chromium)"
    return None


def require() -> None:
    """For a test: skip it where no browser can start, but fail it under CI (`CI` or
    `RNNBENCH_REQUIRE_BROWSER` set: .ci/run installs one), so a broken install cannot pass as
    a skip."""
    import pytest  # here, so that the screenshot script needs no pytest

    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI") or os.environ.get("RNNBENCH_REQUIRE_BROWSER"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed on leaving; RuntimeError saying what is missing."""
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        # --no-sandbox: Chromium's sandbox refuses to start as root, as in CI containers.
        browser = driver.chromium.launch(executable_path=executable(), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def url_of(target: str | Path) -> str:
    """A URL as given; a file path as a file:// URL."""
    text = str(target)
    return text if "://" in text else Path(text).resolve().as_uri()


def open_page(browser: Browser, target: str | Path, width: int, height: int = HEIGHT) -> Page:
    """`target` (a URL or a file) in a new page `width` CSS pixels wide, after its load event:
    every image, data: URIs included, has loaded by then."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url_of(target), wait_until="load")
    return page
