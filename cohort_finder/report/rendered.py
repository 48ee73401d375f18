"""Each patient's part of every output, rendered on its own: a line of candidates.json, a row of
candidates.csv, a card (or one line) of report.html.

Patients are rendered where they are evaluated, worker processes included (pipeline), and the
three files are assembled from the parts in patient order; so rendering, like evaluation,
parallelises by patient, and no worker has to send results back as objects. Outputs still
never recompute clinical logic: they read PatientResult only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from cohort_finder.model import CriterionInfo, PatientResult, RunError, Status
from cohort_finder.report import html_report
from cohort_finder.report.csv_report import CsvRows
from cohort_finder.report.html_report import SharedRows, card_html, line_html
from cohort_finder.report.json_report import SharedResults, patient_json
from cohort_finder.store.changes import RunState, change_of, encode_results
from cohort_finder.store.decisions import Decision


@dataclass(frozen=True, slots=True)
class RenderedPatient:
    id: str
    status: Status
    json: bytes
    csv: bytes
    # The full card; None for an excluded patient rendered among more than COMPACT_EXCLUDED
    # excluded ones (the report then lists every excluded patient on one line).
    card: str | None
    line: str | None  # the one-line form, for excluded patients
    results: str = ""  # one letter per criterion (store/changes.py), for the run store
    name: str | None = None  # for the worklist of candidates and possibles (never logged)
    identifier: str | None = None


def incomplete_patients(errors: Sequence[RunError]) -> set[str]:
    """Patients some error names: their cards say that some data could not be read (§4)."""
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
    ) -> None:
        self.texts = {c.id: c.text for c in criteria}
        self.criteria_ids = tuple(c.id for c in criteria)
        self.incomplete = incomplete
        self.previous = previous
        self.decisions = decisions or {}
        self.csv = CsvRows(criteria)
        self._json_shared: SharedResults = {}
        self._rows_shared: SharedRows = {}

    def render(self, patients: Sequence[PatientResult]) -> list[RenderedPatient]:
        # A batch with more excluded patients than the report shows as cards makes the whole
        # run's report compact, so their cards are not rendered at all.
        excluded = sum(1 for p in patients if p.status is Status.EXCLUDED)
        cards_for_excluded = excluded <= html_report.COMPACT_EXCLUDED
        out = []
        for p in patients:
            is_excluded = p.status is Status.EXCLUDED
            letters = encode_results([c.result for c in p.criteria])
            change = change_of(p.status.value, letters, self.criteria_ids, self.previous, p.id)
            review = self.decisions.get(p.id)
            card = None
            if cards_for_excluded or not is_excluded:
                card = card_html(p, self.texts, self._rows_shared, p.id in self.incomplete, change, review)
            out.append(
                RenderedPatient(
                    p.id,
                    p.status,
                    patient_json(p, self._json_shared, change, review),
                    self.csv.row(p),
                    card,
                    line_html(p, change, review) if is_excluded else None,
                    letters,
                    None if is_excluded else p.name,
                    None if is_excluded else p.identifier,
                )
            )
        return out
