"""A full-page screenshot of a report, or of any page (the MLflow UI), in headless Chromium.

Run from the repository root, with the test extra installed (Playwright) and a system Chromium:

    python docs/scripts/screenshots.py REPORT.html OUT_FOLDER       # writes OUT_FOLDER/report.png
    python docs/scripts/screenshots.py http://127.0.0.1:5000 mlflow.png --wait-for "imdb-quick"
    python docs/scripts/screenshots.py \
        "http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning" \
        docs/screenshots/mlflow-runs.png --wait-for "imdb-quick report" --close Close

TARGET is a URL or a file. OUT ending in .png is the picture; anything else is a folder, and the
picture is named after TARGET's file (report.html: report.png). --wait-for waits for a CSS
selector, or for text on the page when it is no selector, before the picture is taken: pages
that draw themselves with JavaScript, like the MLflow UI, have loaded before their content has.
The browser is opened as the tests open it (tests/browser.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import browser  # noqa: E402  (tests/browser.py: found and opened as the tests do)

# Whether --wait-for parses as a CSS selector; text that does not ("Runs (3)") is text only.
IS_SELECTOR = "s => { try { document.querySelector(s); return true } catch { return false } }"
WAIT_MS = 30_000  # for --wait-for: a cold MLflow UI takes seconds to draw its first table


def output_path(target: str, out: Path) -> Path:
    """OUT when it names a .png, else OUT/<target's file name>.png (page.png for a URL)."""
    if out.suffix == ".png":
        return out
    return out / f"{'page' if '://' in target else Path(target).stem}.png"


def screenshot(
    target: str,
    out: Path,
    width: int,
    wait_for: str | None = None,
    close: tuple[str, ...] = (),
    window_only: bool = False,
) -> Path:
    """Save `target`'s whole page, `width` CSS pixels wide, to `out`; returns the file.
    `close`: the labels of buttons to press first (a side panel's "Close")."""
    path = output_path(target, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with browser.chromium() as chromium:
        page = browser.open_page(chromium, target, width)
        if wait_for:
            shown = page.get_by_text(wait_for)
            if page.evaluate(IS_SELECTOR, wait_for):
                shown = page.locator(wait_for).or_(shown)
            shown.first.wait_for(timeout=WAIT_MS)
        for label in close:
            page.get_by_role("button", name=label, exact=True).first.click()
        page.screenshot(path=str(path), full_page=not window_only)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a URL, or a file such as report.html")
    parser.add_argument("out", type=Path, help="a .png file, or a folder for <name>.png")
    parser.add_argument("--width", type=int, default=1400, help="window width in CSS pixels")
    parser.add_argument(
        "--wait-for", help="a CSS selector or text to wait for before the picture is taken"
    )
    parser.add_argument(
        "--close",
        action="append",
        default=[],
        help="the label of a button to press before the picture (repeatable), e.g. Close",
    )
    parser.add_argument(
        "--window-only",
        action="store_true",
        help="only what a 900 px high window shows first, not the whole page",
    )
    args = parser.parse_args()
    try:
        print(
            screenshot(
                args.target,
                args.out,
                args.width,
                args.wait_for,
                tuple(args.close),
                args.window_only,
            )
        )
    except RuntimeError as error:  # no browser here: say what to install
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
