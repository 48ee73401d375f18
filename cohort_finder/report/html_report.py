"""report.html: the investigator's report (contract §2, §5), and the templates the review app
shares with it.

Layout lives in the templates: views.html.j2 holds the pieces both the report and the app
show (overview row, patient detail, excluded line, funnel, criteria), report.html.j2 the page.
This module renders them from views (report/views.py), so no clinical logic reaches a
template. Everything from the record reaches a template as a plain string and is escaped by
Jinja's autoescape; nothing here builds markup. The Markup made here wraps fragments that
views.html.j2 rendered (escaped there), and our own CSS and script files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from cohort_finder.model import PatientResult, RunResult, rules_out
from cohort_finder.report.funnel import bars, funnel
from cohort_finder.report.views import PatientView, change_words
from cohort_finder.store.changes import Diff
from cohort_finder.store.decisions import DECISIONS

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment(*extra: Path) -> jinja2.Environment:
    """Jinja for HTML: autoescape always on, undefined names fail loudly. `extra`: folders
    searched first (the review app's own templates), this one after them."""
    return jinja2.Environment(
        # FileSystemLoader on the package's own folders: works from a checkout and from an
        # installed package (templates ship as package data).
        loader=jinja2.FileSystemLoader([*extra, TEMPLATES]),
        autoescape=True,  # every output is HTML; never rely on file-extension detection
        undefined=jinja2.StrictUndefined,  # a typo in the template fails loudly, not blank
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return environment()


@lru_cache(maxsize=1)
def _macros() -> Any:
    return _environment().get_template("views.html.j2").module


@cache
def asset(name: str) -> Markup:
    """report.css or overview.js, our own files, placed in the page as they are."""
    return Markup((TEMPLATES / name).read_text(encoding="utf-8"))


def anchor(pid: str) -> str:
    """A patient's detail inside the report."""
    return f"#patient-{pid}"


def row_html(view: PatientView, link: Callable[[str], str] = anchor) -> str:
    """A candidate's or possible patient's row of the overview (autoescaped Markup, as text)."""
    return str(_macros().row(view, link))


def detail_html(view: PatientView) -> str:
    """A patient's detail: criteria grouped by effect, evidence in words."""
    return str(_macros().detail(view))


def _deciding(p: PatientResult) -> str:
    return ", ".join(cr.id for cr in p.criteria if rules_out(cr.kind, cr.result))


def line_html(p: PatientResult, change: dict[str, Any] | None, decision: str | None) -> str:
    """An excluded patient's one line: who, and the criteria that exclude them."""
    text, _ = change_words(change, p.status.value)
    shown = f"decision: {decision.replace('_', ' ')}" if decision else None
    return str(_macros().line(p.id, p.name, p.age, p.gender, _deciding(p), text, shown))


def page_html(
    run: RunResult,
    counts: dict[str, int],
    rows: Sequence[str],
    details: Sequence[str],
    excluded: Sequence[str],
    results: Sequence[str],
    since: Diff | None = None,
) -> bytes:
    """report.html bytes (UTF-8), self-contained. `rows`, `details`, `excluded`: the patients'
    fragments rendered by row_html/detail_html/line_html (marked safe here); `results`: every
    patient's result letters, for the funnel; `since`: what changed since the previous
    complete run, shown near the top."""
    shape = funnel(run.criteria, results)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            run=run,
            summary=counts,
            rows=[Markup(r) for r in rows],
            details=[Markup(d) for d in details],
            excluded=[Markup(x) for x in excluded],
            funnel=shape,
            bars=bars(shape),
            since=since,
            link=anchor,
            decisions=DECISIONS,
            css=asset("report.css"),
            script=asset("overview.js"),
        )
        .encode("utf-8")
    )
