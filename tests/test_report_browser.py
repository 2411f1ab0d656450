"""report.html as people see it: a real report (the stores of tests/report_stores.py) opened in
headless Chromium at a laptop's and a desktop's window width."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import browser
import pytest
from mlflow.tracking import MlflowClient
from report_stores import ARCHS, STUDY, fill_mlflow, fill_optuna, make_study

from harness.report.build import Report, build_report
from harness.report.comparisons import HEADLINE_METRICS
from harness.report.page import BADGE

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

WIDTHS = (1280, 1400, 1440)  # CSS pixels: laptop to desktop windows the page is laid out for


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    browser.require()
    with browser.chromium() as opened:
        yield opened


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    root = tmp_path_factory.mktemp("report-browser")
    tracking_uri, storage_url = f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'optuna.db'}"
    client = MlflowClient(tracking_uri)
    fill_mlflow(client, client.create_experiment(STUDY, (root / "artifacts").as_uri()))
    fill_optuna(storage_url)
    return build_report(make_study(STUDY, ARCHS), tracking_uri, storage_url, root / "report")


@pytest.fixture(scope="module", params=WIDTHS, ids=lambda width: f"{width}px")
def page(request: pytest.FixtureRequest, chromium: Browser, report: Report) -> Iterator[Page]:
    """The page, loaded (images decoded) in a window `request.param` pixels wide."""
    opened = browser.open_page(chromium, report.paths["html"], request.param)
    assert opened.evaluate("innerWidth") == request.param
    yield opened
    opened.close()


def test_nothing_scrolls_sideways(page: Page) -> None:
    widths = page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth,
            window: innerWidth,
            // a table may scroll inside its box; at these widths none needs to
            tables: [...document.querySelectorAll('.scroll')].map(
                box => box.scrollWidth - box.clientWidth),
        })"""
    )
    assert widths["page"] <= widths["window"]
    assert widths["tables"] and max(widths["tables"]) <= 0


def test_the_verdict_comes_first_in_full(page: Page, report: Report) -> None:
    order = page.evaluate(
        """() => {
            const box = document.querySelector('main > section');
            const follows = el => Boolean(
                box.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING);
            return {
                before: [...document.querySelector('main').children].indexOf(box),
                title: document.querySelector('main > header h1').textContent,
                heading: document.querySelector('h2') === box.querySelector('h2'),
                text: box.querySelector('h2').textContent,
                className: box.className,
                top: box.getBoundingClientRect().top,
                window: innerHeight,
                beforeTables: [...document.querySelectorAll('table')].every(follows),
                beforeImages: [...document.images].every(follows),
                lines: [...box.querySelectorAll('.finding')].map(li => li.textContent),
            };
        }"""
    )
    assert order["before"] == 1 and order["title"] == STUDY  # the title, then the verdict
    assert order["heading"] and order["text"] == "Verdict" and order["className"] == "headline"
    assert order["top"] < order["window"]  # seen without scrolling down
    assert order["beforeTables"] and order["beforeImages"]
    assert order["lines"] == report.headline  # every line verbatim, badges aside


def test_each_clause_is_badged_by_its_records_kind(page: Page, report: Report) -> None:
    """The badge comes from the clause's record (`Clause.kind`), never from its words, and
    each kind looks unlike the others."""
    clauses = page.evaluate(
        """() => [...document.querySelectorAll('.finding .clauses > li')].map(li => {
            const badge = getComputedStyle(li, '::before');
            return {
                kind: li.className,
                badge: [badge.content, badge.backgroundColor, badge.color].join(' '),
            };
        })"""
    )
    expected = [kind for line in report.overall for kind in (BADGE[line.kind], "info")]
    for verdict in report.verdicts:
        if verdict.config_hash is None or not verdict.samples[verdict.contender].runs:
            expected.append("unknown")
            continue
        expected += [BADGE[c.kind] for c in verdict.clauses if c.metric in HEADLINE_METRICS]
        expected += ["info"] if verdict.target else []
    assert [clause["kind"] for clause in clauses] == expected
    looks = {clause["kind"]: clause["badge"] for clause in clauses}
    assert len(set(looks.values())) == len(looks) >= 3


def test_every_chart_loads_and_fits(page: Page) -> None:
    images = page.evaluate(
        """() => [...document.images].map(img => {
            const box = img.getBoundingClientRect();
            return {
                alt: img.alt,
                loaded: img.complete && img.naturalWidth > 0,
                left: box.left,
                right: box.right,
                window: innerWidth,
            };
        })"""
    )
    assert [image["alt"] for image in images] == [
        "accuracy chart",
        "time chart",
        "optimization history chart",
    ]
    for image in images:
        assert image["loaded"] and 0 <= image["left"] and image["right"] <= image["window"], image


def test_the_page_fetches_nothing_and_runs_no_script(page: Page) -> None:
    """Self-contained: MLflow's viewer and a mail attachment show it whole, offline."""
    found = page.evaluate(
        """() => ({
            scripts: document.scripts.length,
            fetched: performance.getEntriesByType('resource').map(entry => entry.name)
                .filter(name => !name.startsWith('data:')),
            links: document.querySelectorAll('link[href], iframe, object, embed').length,
        })"""
    )
    assert found == {"scripts": 0, "fetched": [], "links": 0}
