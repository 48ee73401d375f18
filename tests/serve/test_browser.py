"""The review app in a real browser (Debian's Chromium through Playwright) against a real
uvicorn: sign in, filter, open a patient, record a decision and see it after a reload, sign out
and be refused. Screenshots land in test-artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..chromium import browser, screenshot
from .live import HOSTILE, TOKEN, TRIAL, LiveApp


@pytest.fixture
def page(app: LiveApp) -> Iterator[Any]:
    with browser() as b:
        context = b.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        yield page
        assert dialogs == [], "a record value ran as script"
        context.close()


def _sign_in(page: Any, app: LiveApp, name: str = "Ana Reviewer") -> None:
    page.goto(f"{app.base}/trials/{TRIAL}")
    assert page.url.startswith(f"{app.base}/login")  # nothing before signing in
    assert page.locator("table.overview").count() == 0
    screenshot(page, "app-login")
    page.fill("input[name=name]", name)
    page.fill("input[name=token]", TOKEN)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{app.base}/trials/{TRIAL}")


def test_review_a_patient_and_record_a_decision(page: Any, app: LiveApp) -> None:
    _sign_in(page, app)
    rows = page.locator("table.overview tbody tr:not([hidden])")
    total = rows.count()
    assert total > 0
    screenshot(page, "app-trial-overview")
    page.select_option("select[name=status]", "possible")
    assert 0 < rows.count() < total
    page.select_option("select[name=status]", "")
    page.fill("input[name=q]", "age-18-today")
    assert rows.count() == 1
    rows.first.locator("td.name a").click()
    page.wait_for_url(f"{app.base}/trials/{TRIAL}/patients/age-18-today-met")
    assert page.locator(".group.manual h4").inner_text().startswith("To check by hand")
    screenshot(page, "app-patient", full_page=True)
    page.select_option("select[name=decision]", "contacted")
    page.fill("input[name=note]", "phoned, call back Monday")
    page.click("button:has-text('Save decision')")
    page.wait_for_url("**?saved=1")
    page.reload()
    assert page.locator("select[name=decision]").input_value() == "contacted"
    assert page.locator("table.history tbody tr").first.inner_text().count("Ana Reviewer") == 1
    screenshot(page, "app-patient-decided")
    page.goto(f"{app.base}/trials/{TRIAL}")
    row = page.locator("tr[data-id='age-18-today-met']")
    assert row.get_attribute("data-decision") == "contacted"
    page.select_option("select[name=decision]", "contacted")
    assert page.locator("table.overview tbody tr:not([hidden])").count() == 1


def test_history_diff_and_signing_out(page: Any, app: LiveApp) -> None:
    _sign_in(page, app)
    page.click("nav a:has-text('Runs')")
    assert page.locator("table tbody tr").count() == 2
    screenshot(page, "app-runs")
    page.click("a:has-text('diff')")
    assert "run 1" in page.locator("h1").inner_text() and "run 2" in page.locator("h1").inner_text()
    screenshot(page, "app-diff")
    page.click("button:has-text('Sign out')")
    page.goto(f"{app.base}/trials/{TRIAL}/patients/age-18-today-met")
    assert page.url.startswith(f"{app.base}/login")


def test_hostile_names_stay_text(page: Any, app: LiveApp) -> None:
    _sign_in(page, app)
    page.goto(f"{app.base}/trials/{TRIAL}/patients/{HOSTILE}")
    assert page.locator("h1").inner_text() == "<script>alert(1)</script> Demoford"
    assert "<script>alert(1)</script>" in page.title()
