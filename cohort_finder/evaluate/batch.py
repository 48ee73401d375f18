"""Evaluation of a catalogue: its errors placed and named, its patients linked to their facts,
and every patient evaluated (the python and duckdb engines' whole source, or one Spark group).

The engines and the pipeline both use this; neither imports the other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

from ..catalogue import Catalogue
from ..criteria import Trial
from ..model import ALL_PATIENTS, Fact, PatientFact, PatientRecord, PatientResult, RunError
from ..sources.base import Source
from . import evaluate_patient
from .plan import Plan, plan_for


def _name_patients(catalogue: Catalogue, errors: list[RunError]) -> tuple[list[RunError], dict[str, set[str]]]:
    """Resolve the patient each error names; say so in its message (contract §4: the patient
    is named in errors) and remember which of their data is missing."""
    incomplete: dict[str, set[str]] = {}
    named: list[RunError] = []
    for error in errors:
        if error.patient_id == ALL_PATIENTS:  # a failed search page: whose rows it held is unknown
            for every in catalogue.patients:
                incomplete.setdefault(every, set()).add(error.resource_type or "*")
            named.append(RunError(error.source, f"{error.message} (every patient's {error.resource_type or 'data'})"))
            continue
        pid = catalogue.resolve_patient(error.patient_id) if error.patient_id else None
        if pid is None or pid not in catalogue.patients:
            named.append(RunError(error.source, error.message))
            continue
        incomplete.setdefault(pid, set()).add(error.resource_type or "*")
        message = error.message if f"Patient/{pid}" in error.message else f"{error.message} (Patient/{pid})"
        named.append(RunError(error.source, message, pid, error.resource_type))
    return named, incomplete


def _natural(error: RunError) -> tuple[tuple[int, str, int], ...]:
    """File order, then line and entry numbers as numbers (a.ndjson:9 before a.ndjson:10):
    every engine reads in its own order, the errors come out in one."""
    return tuple(
        (0, part, 0) if not part.isdigit() else (1, "", int(part)) for part in re.split(r"(\d+)", error.source)
    )


def name_errors(
    catalogue: Catalogue, errors: list[RunError], place: Callable[[RunError], RunError] = lambda e: e
) -> tuple[list[RunError], dict[str, set[str]]]:
    """Errors placed (file:line), in one natural order, naming their patients; and which
    patients' data they leave incomplete."""
    placed = sorted((place(e) for e in errors), key=_natural)
    return _name_patients(catalogue, placed)


@dataclass(frozen=True, slots=True)
class Evaluated:
    patients: list[PatientResult]  # sorted by id
    errors: list[RunError]  # as name_errors gives them
    kept: int  # rows the trial's value sets use


@dataclass(frozen=True, slots=True)
class Linked:
    """A catalogue linked: every patient's facts, and the errors (named, placed)."""

    patients: dict[str, PatientFact]
    by_patient: dict[str, list[Fact]]
    errors: list[RunError]
    incomplete: dict[str, set[str]]  # patient id -> resource types that could not be read
    unusable: dict[str, list[tuple[int, str]]]  # patient id -> (rules' bits, why) of unusable resources

    @property
    def ids(self) -> list[str]:
        return sorted(self.by_patient)


def _unusable(
    catalogue: Catalogue, by_patient: dict[str, list[Fact]], plan: Plan, place: Callable[[RunError], RunError]
) -> tuple[list[RunError], dict[str, list[tuple[int, str]]]]:
    """Take the resources whose values are unusable (facts.py `problems`) out of the facts the
    rules read. Where some rule of the trial would read one, it is an error of its place and
    those rules cannot be decided (evaluate); where none would, it is ignored, as it is by an
    engine that never reads it."""
    errors: list[RunError] = []
    unusable: dict[str, list[tuple[int, str]]] = {}
    for pid, facts in by_patient.items():
        if not any(f.problems for f in facts):
            continue
        by_patient[pid] = [f for f in facts if not f.problems]
        for fact in facts:
            bits = plan.bits_of(fact) if fact.problems else 0
            if not bits:
                continue
            why = f"{fact.resource_type}/{fact.resource_id} {'; '.join(fact.problems)}"
            origin = catalogue.facts[(fact.resource_type, fact.resource_id)][1]
            errors.append(place(RunError(origin, f"{why} (Patient/{pid})", pid, fact.resource_type)))
            unusable.setdefault(pid, []).append((bits, why))
    return errors, unusable


def link(
    catalogue: Catalogue,
    plan: Plan,
    place: Callable[[RunError], RunError] = lambda e: e,
    known_errors: Sequence[RunError] = (),
) -> Linked:
    """`known_errors`, found outside the catalogue, only mark the data of the patients they
    name as incomplete."""
    by_patient, link_errors = catalogue.link()
    errors, incomplete = name_errors(catalogue, catalogue.errors + link_errors, place)
    value_errors, unusable = _unusable(catalogue, by_patient, plan, place)
    if value_errors:
        errors = sorted(errors + value_errors, key=_natural)
    if known_errors:
        for pid, kinds in _name_patients(catalogue, list(known_errors))[1].items():
            incomplete.setdefault(pid, set()).update(kinds)
    return Linked(catalogue.patients, by_patient, errors, incomplete, unusable)


def evaluate_patients(trial: Trial, linked: Linked, as_of: date, ids: Sequence[str]) -> tuple[list[PatientResult], int]:
    """Evaluate these patients (criteria.py's rules, evaluate/); also the number of rows the
    trial's rules can use. The evaluation plan (and its caches) is one per process."""
    plan = plan_for(trial, as_of)
    batch = [(pid, *plan.relevant(linked.by_patient[pid])) for pid in ids]  # the rows some rule can use
    answers = plan.answers(batch)  # the kinds decided by query: every patient of the batch at once
    kept = 0
    patients = []
    for pid, facts, fact_bits in batch:
        kept += len(facts)
        record = PatientRecord(
            linked.patients[pid], facts, linked.incomplete.get(pid, set()), linked.unusable.get(pid, [])
        )
        patients.append(evaluate_patient(trial, record, as_of, plan, fact_bits, answers))
    return patients, kept


def evaluate_catalogue(
    trial: Trial,
    catalogue: Catalogue,
    as_of: date,
    place: Callable[[RunError], RunError] = lambda e: e,
    known_errors: Sequence[RunError] = (),
) -> Evaluated:
    """Link, reduce and evaluate every patient of a catalogue: the whole source's (python and
    duckdb engines), or a few patients' (a Spark group)."""
    linked = link(catalogue, plan_for(trial, as_of), place, known_errors)
    patients, kept = evaluate_patients(trial, linked, as_of, linked.ids)
    return Evaluated(patients, linked.errors, kept)


@runtime_checkable
class EvaluatingEngine(Protocol):
    """An engine that evaluates where the rows are (spark: groups of patients on the cluster) and
    hands back the results and the errors, as evaluate_catalogue gives them."""

    def evaluate(self, trial: Trial, source: Source, as_of: date) -> Evaluated: ...
