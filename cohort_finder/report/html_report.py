"""report.html: the investigator's report (contract §2, §5).

The templates do the layout: patient.html.j2 one patient (a card, or one line), report.html.j2
the page. This module turns results into plain display values (labels, badge classes,
evidence lines) so the templates stay free of clinical logic. Everything from the record
reaches a template as a plain string and is escaped by Jinja's autoescape; nothing here builds
markup. The one Markup made here wraps a patient's fragment that patient.html.j2 rendered
(escaped there) for the page, which places it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from cohort_finder.model import (
    CriterionResult,
    Evidence,
    PatientResult,
    Result,
    RunResult,
    Status,
)
from cohort_finder.store.changes import Change, Diff
from cohort_finder.store.decisions import Decision

_TEMPLATES = Path(__file__).resolve().parent / "templates"

SECTIONS = (
    (Status.CANDIDATE, "Candidates"),
    (Status.POSSIBLE, "Possible"),
    (Status.EXCLUDED, "Excluded"),
)


@dataclass(frozen=True, slots=True)
class CriterionRow:
    id: str
    kind: str
    text: str
    result: str
    badge: str  # ok | bad | unknown | manual: the result's effect on eligibility
    evidence: tuple[tuple[str, ...], ...]  # one tuple of display strings per resource
    note: str | None


@dataclass(frozen=True, slots=True)
class PatientCard:
    patient: PatientResult
    rows: tuple[CriterionRow, ...]
    manual: tuple[CriterionRow, ...]
    deciding: tuple[str, ...]  # criterion ids that excluded the patient / left it possible

    @property
    def deciding_text(self) -> str:
        # joined here, not with Jinja's join filter: that one escapes item by item, and the
        # compact list of a hospital-sized run calls it once per excluded patient
        return ", ".join(self.deciding)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # FileSystemLoader on the package's own folder: works from a checkout and from an
    # installed package (as long as templates/*.j2 ships as package data).
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,  # every output is HTML; never rely on file-extension detection
        undefined=jinja2.StrictUndefined,  # a typo in the template fails loudly, not blank
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _number(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):  # int has no is_integer on 3.11
        return str(int(value))
    text = f"{value:.6g}"  # enough precision for a clinician; the JSON keeps it all
    return repr(value) if "e" in text else text


def _quantity(value: float | str | None, unit: str | None) -> str:
    if value is None:
        return ""
    return f"{_number(value)} {unit}" if unit else _number(value)


def _evidence_lines(ev: Evidence) -> tuple[str, ...]:
    lines = [ev.resource]
    if ev.code:
        lines.append(ev.code)
    if ev.value is not None:
        lines.append(_quantity(ev.value, ev.unit))
    if ev.original_value is not None:
        lines.append(f"converted from {_quantity(ev.original_value, ev.original_unit)}")
    if ev.date:
        lines.append(ev.date)
    if ev.uln is not None:
        # Contract §3: a ULN taken from the mappings rather than the lab must be named as such.
        origin = "default ULN" if ev.uln_source == "default" else "reference range"
        lines.append(f"ULN {_number(ev.uln)} ({origin})")
    if ev.matched_by == "name":
        # A match by ingredient name, not code, deserves the reviewer's second look.
        lines.append("matched by name")
    return tuple(lines)


def _badge(cr: CriterionResult) -> str:
    if cr.result is Result.MANUAL:
        return "manual"
    if cr.result is Result.UNKNOWN:
        return "unknown"
    supports = (cr.result is Result.MET) == (cr.kind == "inclusion")
    return "ok" if supports else "bad"


def _row(cr: CriterionResult, texts: dict[str, str]) -> CriterionRow:
    return CriterionRow(
        id=cr.id,
        kind=cr.kind,
        text=texts.get(cr.id, ""),
        result=cr.result.value,
        badge=_badge(cr),
        evidence=tuple(_evidence_lines(ev) for ev in cr.evidence),
        note=cr.note,
    )


SharedRows = dict[tuple[str, str, str, str | None], CriterionRow]


def _card(p: PatientResult, texts: dict[str, str], shared: SharedRows) -> PatientCard:
    rows = []
    for cr in p.criteria:
        if cr.evidence:
            rows.append(_row(cr, texts))
            continue
        # results without evidence repeat across patients: one row each (keyed by value, never
        # by identity, as results are freed batch by batch and their ids reused)
        key = (cr.id, cr.kind, cr.result.value, cr.note)
        row = shared.get(key)
        if row is None:
            row = shared[key] = _row(cr, texts)
        rows.append(row)
    wanted = {Status.EXCLUDED: "bad", Status.POSSIBLE: "unknown"}.get(p.status)
    return PatientCard(
        patient=p,
        rows=tuple(rows),
        manual=tuple(r for r in rows if r.badge == "manual"),
        deciding=tuple(r.id for r in rows if r.badge == wanted),
    )


# Above this many excluded patients (a nightly run over a whole hospital), each excluded
# patient gets one line naming what excludes them, not a full card: the report stays small
# enough to open, and candidates.json keeps every excluded patient's evidence.
COMPACT_EXCLUDED = 500


def _compact(p: PatientResult) -> PatientCard:
    deciding = tuple(
        cr.id
        for cr in p.criteria
        if (cr.kind == "inclusion" and cr.result is Result.NOT_MET)
        or (cr.kind == "exclusion" and cr.result is Result.MET)
    )
    return PatientCard(patient=p, rows=(), manual=(), deciding=deciding)


@lru_cache(maxsize=1)
def _patient_macros() -> Any:
    return _environment().get_template("patient.html.j2").module


def change_text(change: Change | None, status: str = "") -> str | None:
    """What changed since the previous complete run, in words (None: nothing)."""
    if change is None:
        return None
    because = f": {', '.join(change.criteria)}" if change.criteria else ""
    if change.status_before == "absent":
        return f"new since run {change.since_run}"
    if change.status_before == "excluded" and status != "excluded":
        return f"new since run {change.since_run} (was excluded{because})"
    if change.status_before != "excluded" and status == "excluded":
        return f"dropped since run {change.since_run} (was {change.status_before}{because})"
    return f"changed since run {change.since_run} (was {change.status_before}{because})"


def review_text(review: Decision | None) -> str | None:
    if review is None:
        return None
    who = f" by {review.by}" if review.by else ""
    return f"decision: {review.decision.replace('_', ' ')}{who} on {review.at[:10]}"


def card_html(
    p: PatientResult,
    texts: dict[str, str],
    shared: SharedRows,
    incomplete: bool,
    change: Change | None = None,
    review: Decision | None = None,
) -> str:
    """A patient's full card (autoescaped Markup, as text)."""
    card = _card(p, texts, shared)
    text = change_text(change, p.status.value)
    return str(_patient_macros().full(card, incomplete, text, review_text(review), review))


def line_html(p: PatientResult, change: Change | None = None, review: Decision | None = None) -> str:
    """An excluded patient's one line (autoescaped Markup, as text)."""
    return str(_patient_macros().line(_compact(p), change_text(change, p.status.value), review_text(review)))


def page_html(
    run: RunResult,
    counts: dict[str, int],
    sections: list[tuple[str, str, list[str], bool]],
    since: Diff | None = None,
) -> bytes:
    """report.html bytes (UTF-8), self-contained: inline CSS, no scripts, no external links.
    `sections`: (label, status, rendered patients, compact?) in display order; the patients'
    fragments were rendered by card_html/line_html, so they are marked safe here. `since`:
    what changed since the previous complete run, shown first."""
    template = _environment().get_template("report.html.j2")
    safe = [(label, status, [Markup(f) for f in fragments], compact) for label, status, fragments, compact in sections]
    return template.render(run=run, summary=counts, sections=safe, since=since).encode("utf-8")
