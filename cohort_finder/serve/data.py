"""What the review app reads from the run store: each trial's latest complete run, its
candidates and possibles (their candidates.json lines, kept by the store's worklist), every
patient's result letters (the funnel, the excluded lines), runs, diffs and decisions.

Views are built with report/views.py from the same lines the report renders, so the app and
report.html show the same thing; current decisions replace the `review` a line was written
with, since decisions change between runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from cohort_finder.model import CriterionInfo, rules_out
from cohort_finder.report.funnel import Funnel, funnel
from cohort_finder.report.views import PatientView, patient_view
from cohort_finder.store import decisions, runs
from cohort_finder.store.changes import RESULT_OF, RunState
from cohort_finder.store.runs import RunInfo


@dataclass(frozen=True, slots=True)
class Excluded:
    id: str
    deciding: str  # the criteria that exclude the patient


@dataclass(frozen=True, slots=True)
class TrialView:
    info: RunInfo
    criteria: tuple[CriterionInfo, ...]
    views: list[PatientView]  # candidates first, then possibles
    funnel: Funnel
    excluded: list[Excluded]
    errors: list[tuple[str, str]]
    state: RunState


def trials(con: sqlite3.Connection) -> list[RunInfo]:
    """The latest complete run of each trial, by trial id."""
    ids = [t for (t,) in con.execute("SELECT DISTINCT trial_id FROM runs WHERE state = 'complete' ORDER BY trial_id")]
    return [info for t in ids if (info := runs.last_complete(con, t)) is not None]


def latest(con: sqlite3.Connection, trial: str) -> RunInfo | None:
    return runs.last_complete(con, trial)


def _line(detail: str, review: decisions.Decision | None) -> dict[str, Any]:
    line: dict[str, Any] = orjson.loads(detail)
    line.pop("review", None)
    if review is not None:
        line["review"] = review.as_json()
    return line


def open_patients(con: sqlite3.Connection, info: RunInfo) -> list[PatientView]:
    """The candidates and possibles of the trial's latest complete run, as views."""
    current = decisions.latest(con, info.trial_id)
    rows = con.execute(
        "SELECT patient, name, identifier, status, detail FROM worklist WHERE trial_id = ? AND run = ?",
        (info.trial_id, info.run),
    ).fetchall()
    as_of = date.fromisoformat(info.as_of)
    views = [
        patient_view(_line(detail, current.get(pid)), info.infos, as_of, name, identifier)
        for pid, name, identifier, _status, detail in rows
    ]
    order = {"candidate": 0, "possible": 1}
    return sorted(views, key=lambda v: (order.get(v.status, 2), v.id))


def trial_view(con: sqlite3.Connection, info: RunInfo) -> TrialView:
    state = runs.state(con, info)
    criteria = info.infos
    excluded = []
    for pid, patient in sorted(state.patients.items()):
        if patient.status == "excluded":
            deciding = ", ".join(
                c.id
                for c, letter in zip(criteria, patient.results, strict=False)
                if rules_out(c.kind, RESULT_OF[letter])
            )
            excluded.append(Excluded(pid, deciding))
    return TrialView(
        info=info,
        criteria=criteria,
        views=open_patients(con, info),
        funnel=funnel(criteria, (p.results for p in state.patients.values())),
        excluded=excluded,
        errors=runs.errors_of(con, info.run),
        state=state,
    )


def patient(con: sqlite3.Connection, info: RunInfo, pid: str) -> PatientView | None:
    """A candidate's or possible patient's view; an excluded patient's from its result letters
    (the store keeps no evidence for them: candidates.json of that run has it)."""
    row = con.execute(
        "SELECT name, identifier, detail FROM worklist WHERE trial_id = ? AND run = ? AND patient = ?",
        (info.trial_id, info.run, pid),
    ).fetchone()
    history = decisions.history(con, info.trial_id, pid)
    current = history[-1] if history else None
    as_of = date.fromisoformat(info.as_of)
    if row is not None:
        name, identifier, detail = row
        return patient_view(_line(detail, current), info.infos, as_of, name, identifier)
    state = runs.patient_state(con, info, pid)
    if state is None:
        return None
    line: dict[str, Any] = {
        "id": pid,
        "status": state.status,
        "age": None,
        "gender": None,
        "criteria": [
            {"id": c.id, "kind": c.kind, "result": RESULT_OF[letter].value, "evidence": []}
            for c, letter in zip(info.infos, state.results, strict=False)
        ],
    }
    if current is not None:
        line["review"] = current.as_json()
    return patient_view(line, info.infos, as_of)


def decision_history(con: sqlite3.Connection, trial: str, pid: str) -> Sequence[decisions.Decision]:
    return list(reversed(decisions.history(con, trial, pid)))
