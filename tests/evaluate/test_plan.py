"""The evaluation plan (evaluate/plan.py) is a shortcut, not a rule: with it every patient gets
exactly the results the rules give without it, and patients with nothing a criterion can read
share one result object."""

from __future__ import annotations

import functools
import operator
from datetime import date
from pathlib import Path

import pytest

from cohort_finder.criteria import load_trial
from cohort_finder.engines import PythonEngine
from cohort_finder.evaluate import evaluate_criterion, evaluate_patient
from cohort_finder.evaluate.batch import link
from cohort_finder.evaluate.plan import Plan, plan_for
from cohort_finder.model import Fact, PatientRecord
from cohort_finder.rules.context import Context
from cohort_finder.sources.files import FileSource

from ..paths import CRITERIA, FIXTURES
from ..samples import SYNTHEA

AS_OF = date(2026, 6, 30)
CASES = [
    ("nct07183761.yaml", FIXTURES / "fhir_bundles"),
    ("nct03036150.yaml", FIXTURES / "nct03036150"),
    ("nct07183761.yaml", FIXTURES / "bad_input"),
    ("nct07183761.yaml", SYNTHEA),
]


def _bits(plan: Plan, facts: list[Fact]) -> int:
    """The rules some fact of these can matter to."""
    return functools.reduce(operator.or_, plan.relevant(facts)[1].values(), 0)


@pytest.mark.parametrize(("criteria", "source"), CASES, ids=lambda c: Path(c).name)
def test_every_result_is_what_the_rules_give_without_the_plan(criteria: str, source: Path) -> None:
    if not source.exists():
        pytest.skip(f"{source} not present")
    trial = load_trial(CRITERIA / criteria)
    linked = link(PythonEngine().collect(trial, FileSource(source)), plan_for(trial, AS_OF))
    plan = Plan(trial, AS_OF)
    shared = 0
    for pid in linked.ids:
        record = PatientRecord(linked.patients[pid], linked.by_patient[pid], linked.incomplete.get(pid, set()))
        with_plan = evaluate_patient(trial, record, AS_OF, plan)
        plain = Context(record, AS_OF, trial.terminology.converter, trial.terminology.known_medication_codes)
        assert with_plan.criteria == tuple(evaluate_criterion(c, plain) for c in trial.criteria), pid
        bits = _bits(plan, record.facts)
        shared += sum(1 for c in trial.criteria if c.id in plan.shared and plan.shareable(c, bits))
    assert shared > 0  # the shortcut was taken, so the comparison above tested it


def test_patients_with_nothing_to_read_share_one_result() -> None:
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    linked = link(PythonEngine().collect(trial, FileSource(FIXTURES / "fhir_bundles")), plan_for(trial, AS_OF))
    plan = Plan(trial, AS_OF)
    criterion = next(c for c in trial.criteria if c.id == "non_diabetic_neuropathy")
    found = []
    for pid in linked.ids:
        facts = linked.by_patient[pid]
        if not plan.shareable(criterion, _bits(plan, facts)):
            continue  # some fact can matter to the criterion's rule: it is evaluated
        record = PatientRecord(linked.patients[pid], facts)
        found.append(next(c for c in evaluate_patient(trial, record, AS_OF, plan).criteria if c.id == criterion.id))
    assert len(found) > 2
    assert len({id(c) for c in found}) == 1
    assert found[0].result.value == "not_met" and not found[0].evidence
