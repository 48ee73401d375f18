"""Each patient's part of every output, rendered on its own: a line of candidates.json, a row of
candidates.csv, and for report.html an overview row and a detail (candidates and possibles) or
one line (excluded patients).

Patients are rendered where they are evaluated, worker processes included (pipeline), and the
three files are assembled from the parts in patient order; so rendering, like evaluation,
parallelises by patient, and no worker has to send results back as objects. Outputs still
never recompute clinical logic: they read PatientResult only. The HTML of a candidate or
possible is rendered from its candidates.json line (report/views.py), as the review app
renders it from the same line in the run store, so the two show the same.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import orjson

from cohort_finder.model import CriterionInfo, PatientResult, RunError, Status
from cohort_finder.report.csv_report import CsvRows
from cohort_finder.report.html_report import detail_html, line_html, row_html
from cohort_finder.report.json_report import SharedResults, patient_json
from cohort_finder.report.views import patient_view
from cohort_finder.store.changes import RunState, change_of, encode_results
from cohort_finder.store.decisions import Decision


@dataclass(frozen=True, slots=True)
class RenderedPatient:
    id: str
    status: Status
    json: bytes
    csv: bytes
    row: str | None  # the overview row (candidates and possibles)
    detail: str | None  # the criteria and evidence (candidates and possibles)
    line: str | None  # the one-line form (excluded patients)
    results: str = ""  # one letter per criterion (store/changes.py), for the run store and funnel
    name: str | None = None  # for the worklist of candidates and possibles (never logged)
    identifier: str | None = None


def incomplete_patients(errors: Sequence[RunError]) -> set[str]:
    """Patients some error names: their details say that some data could not be read (§4)."""
    return {e.patient_id for e in errors if e.patient_id}


class PatientRenderer:
    """Renders patients batch by batch; one per process (it holds the shared caches).
    `previous`: the previous complete run of the trial (each patient's `change` against it);
    `decisions`: the reviewers' current decisions (`review`)."""

    def __init__(
        self,
        criteria: Sequence[CriterionInfo],
        incomplete: Collection[str],
        previous: RunState | None = None,
        decisions: Mapping[str, Decision] | None = None,
        as_of: date | None = None,
    ) -> None:
        self.criteria = tuple(criteria)
        self.criteria_ids = tuple(c.id for c in criteria)
        self.incomplete = incomplete
        self.previous = previous
        self.decisions = decisions or {}
        self.as_of = as_of or date.today()
        self.csv = CsvRows(criteria)
        self._json_shared: SharedResults = {}

    def render(self, patients: Sequence[PatientResult]) -> list[RenderedPatient]:
        out = []
        for p in patients:
            letters = encode_results([c.result for c in p.criteria])
            change = change_of(p.status.value, letters, self.criteria_ids, self.previous, p.id)
            review = self.decisions.get(p.id)
            line = patient_json(p, self._json_shared, change, review)
            row = detail = excluded = None
            if p.status is Status.EXCLUDED:
                # excluded patients are one line each: the report stays readable (and small)
                # at a hospital's size, and candidates.json keeps their evidence
                changed = None
                if change is not None:
                    changed = {
                        "since_run": change.since_run,
                        "status_before": change.status_before,
                        "criteria": change.criteria,
                    }
                excluded = line_html(p, changed, review.decision if review else None)
            else:
                view = patient_view(
                    orjson.loads(line), self.criteria, self.as_of, p.name, p.identifier, p.id in self.incomplete
                )
                row, detail = row_html(view), detail_html(view)
            out.append(
                RenderedPatient(
                    p.id,
                    p.status,
                    line,
                    self.csv.row(p),
                    row,
                    detail,
                    excluded,
                    letters,
                    None if p.status is Status.EXCLUDED else p.name,
                    None if p.status is Status.EXCLUDED else p.identifier,
                )
            )
        return out
