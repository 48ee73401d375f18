"""The evaluation plan (evaluate/plan.py) is a shortcut, not a rule: with it every patient gets
exactly the results the rules give without it, and patients with nothing a criterion can read
share one result object.

Without the plan means: every rule reads all of the patient's facts (not only those that can
matter to it), nothing is shared, and the kinds decided by query are asked once over every
patient's facts, every rule of the kind (not over the facts the plan keeps for them)."""

from __future__ import annotations

import dataclasses
import functools
import operator
from datetime import date
from pathlib import Path

import pytest

from cohort_finder.criteria import load_trial
from cohort_finder.engines import PythonEngine
from cohort_finder.evaluate import evaluate_criterion
from cohort_finder.evaluate.batch import evaluate_patients, link
from cohort_finder.evaluate.plan import Plan, decide_by_query, plan_for
from cohort_finder.model import Fact, PatientRecord
from cohort_finder.rules import Rule, leaves
from cohort_finder.rules.context import Context
from cohort_finder.rules.table import FactTable
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
    plan = plan_for(trial, AS_OF)
    linked = link(PythonEngine().collect(trial, FileSource(source)), plan)
    # with the plan: as a run evaluates, every patient in one batch (an unusable resource's
    # note needs the plan's bits, so neither side is told of them)
    linked = dataclasses.replace(linked, unusable={})
    with_plan = {p.id: p for p in evaluate_patients(trial, linked, AS_OF, linked.ids)[0]}
    kinds: dict[type[Rule], list[Rule]] = {}
    for criterion in trial.criteria:
        for leaf in leaves(criterion.rule) if criterion.rule is not None else ():
            if leaf.by_query:
                kinds.setdefault(type(leaf), []).append(leaf)
    facts = [(pid, fact) for pid in linked.ids for fact in linked.by_patient[pid]]
    table = FactTable(facts, AS_OF, trial.terminology.converter)
    answers = decide_by_query(table, kinds)
    table.close()
    shared = 0
    for pid in linked.ids:
        record = PatientRecord(linked.patients[pid], linked.by_patient[pid], linked.incomplete.get(pid, set()))
        plain = Context(record, AS_OF)
        plain.answers = answers
        assert with_plan[pid].criteria == tuple(evaluate_criterion(c, plain) for c in trial.criteria), pid
        bits = _bits(plan, record.facts)
        shared += sum(1 for c in trial.criteria if c.id in plan.shared and plan.shareable(c, bits))
    assert shared > 0  # the shortcut was taken, so the comparison above tested it


def test_patients_with_nothing_to_read_share_one_result() -> None:
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    plan = plan_for(trial, AS_OF)
    linked = link(PythonEngine().collect(trial, FileSource(FIXTURES / "fhir_bundles")), plan)
    criterion = next(c for c in trial.criteria if c.id == "non_diabetic_neuropathy")
    results = {p.id: p for p in evaluate_patients(trial, linked, AS_OF, linked.ids)[0]}
    found = []
    for pid in linked.ids:
        if not plan.shareable(criterion, _bits(plan, linked.by_patient[pid])):
            continue  # some fact can matter to the criterion's rule: it is evaluated
        found.append(next(c for c in results[pid].criteria if c.id == criterion.id))
    assert len(found) > 2
    assert len({id(c) for c in found}) == 1
    assert found[0].result.value == "not_met" and not found[0].evidence
