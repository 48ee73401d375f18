"""report.html in a real browser (Debian's Chromium through Playwright): the overview filters,
searches and sorts, a name opens the patient's detail, record values stay text, and print gives
a worklist. Screenshots land in test-artifacts/screenshots/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..chromium import browser, screenshot
from ..e2e import run_trial
from ..paths import CRITERIA, FIXTURES


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-browser")
    done = run_trial(CRITERIA / "nct07183761.yaml", FIXTURES / "fhir_bundles", out, "2026-06-30")
    assert done.exit_code == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as b:
        yield b


@pytest.fixture
def page(chromium: Any, report: Path) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto((report / "report.html").as_uri())
    yield page
    assert dialogs == [], "a record value ran as script"
    context.close()


def _visible_rows(page: Any) -> int:
    return int(page.locator("table.overview tbody tr:not([hidden])").count())


def _document(report: Path) -> dict[str, Any]:
    return json.loads((report / "candidates.json").read_text())  # type: ignore[no-any-return]


def test_filters_search_and_sort(page: Any, report: Path) -> None:
    summary = _document(report)["summary"]
    assert _visible_rows(page) == summary["candidate"] + summary["possible"]
    screenshot(page, "report-overview")
    page.select_option("select[name=status]", "possible")
    assert _visible_rows(page) == summary["possible"]
    assert (
        page.locator("#shown").inner_text()
        == f"{summary['possible']} of {summary['candidate'] + summary['possible']} shown"
    )
    page.select_option("select[name=status]", "")
    # by criterion: the patients whose eGFR rule is unknown
    document = _document(report)
    index = [c["id"] for c in document["criteria"]].index("egfr_under_30")
    unknown = [
        p for p in document["patients"] if p["status"] != "excluded" and p["criteria"][index]["result"] == "unknown"
    ]
    assert unknown, "the fixtures hold a patient with no eGFR"
    page.select_option("select[name=criterion]", str(index))
    page.select_option("select[name=result]", "u")
    assert _visible_rows(page) == len(unknown)
    screenshot(page, "report-filtered-egfr-unknown")
    page.select_option("select[name=criterion]", "")
    page.fill("input[name=q]", "age-18-today")
    assert _visible_rows(page) == 1
    page.fill("input[name=q]", "")
    page.click("table.overview th:has-text('Age')")
    ages = [a for a in page.locator("table.overview tbody tr td:nth-child(3)").all_inner_texts() if a.strip()]
    assert [int(a) for a in ages] == sorted(int(a) for a in ages)
    page.click("table.overview th:has-text('Age')")
    ages = [a for a in page.locator("table.overview tbody tr td:nth-child(3)").all_inner_texts() if a.strip()]
    assert [int(a) for a in ages] == sorted((int(a) for a in ages), reverse=True)


def test_a_name_opens_the_patients_detail(page: Any) -> None:
    detail = page.locator("#patient-age-18-today-met")
    assert not detail.evaluate("d => d.open")
    page.locator("tr[data-id='age-18-today-met'] td.name a").click()
    assert detail.evaluate("d => d.open")
    assert detail.locator("h4", has_text="To check by hand").count() == 1
    assert detail.locator(".ev .what", has_text="Hemoglobin A1c").count() >= 1
    screenshot(page, "report-patient-detail")


def test_hostile_names_stay_text(page: Any) -> None:
    page.fill("input[name=q]", "html-name-script-tag")
    assert _visible_rows(page) == 1
    cell = page.locator("tr[data-id='html-name-script-tag'] td.name a")
    assert cell.inner_text() == "<script>alert(1)</script> Demoford"  # the given name, as text


def test_funnel_and_print_worklist(page: Any, report: Path) -> None:
    page.goto((report / "report.html").as_uri() + "#funnel")
    assert page.locator("#funnel svg rect.kept").count() == len(_document(report)["criteria"]) + 1
    screenshot(page, "report-funnel")
    page.emulate_media(media="print")
    # on paper: no filters, every candidate's detail shown, a decision column to write in
    assert not page.locator("#filters").is_visible()
    assert page.locator("#patient-age-18-today-met .group").first.is_visible()
    assert page.locator("table.overview td.print-only").first.is_visible()
    page.pdf(path=str(screenshot(page, "report-print").with_suffix(".pdf")))
