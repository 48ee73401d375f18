"""Where every criterion is evaluated: one patient's rows in, one result per criterion out.

`evaluate_patient` walks the criteria in file order (`alive` first); `evaluate_rule`
dispatches each rule to the small function of its kind (one module per family).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from ..criteria import (
    AgeRule,
    AllOf,
    AnyOf,
    AnyRule,
    CodedObservationRule,
    ConditionRule,
    Criterion,
    LabRule,
    LabUlnRule,
    MedicationDaysRule,
    MostRecentClassRule,
    Not,
    ProcedureRule,
    SexRule,
    Trial,
)
from ..model import CriterionResult, Outcome, PatientRecord, PatientResult, Result, Status, rules_out
from ..reduce import resource_types
from . import logic
from .conditions import condition
from .context import Context
from .demographics import age, age_range, alive, sex
from .labs import lab, lab_uln
from .medications import medication_days
from .observations import coded_observation, most_recent_class
from .plan import Plan, plan_for
from .procedures import procedure


@dataclass(frozen=True, slots=True)
class _Leaf:
    evaluate: Callable[[Any, Context], Outcome]
    # Whether `met` stands however much more data there is (presence rules) or could change
    # (most-recent rules). Used when some of a patient's data could not be read: results that
    # depended on it become unknown (contract §4).
    met_stands: bool = True


_LEAVES: dict[type, _Leaf] = {
    AgeRule: _Leaf(age),
    SexRule: _Leaf(sex),
    ConditionRule: _Leaf(condition),
    LabRule: _Leaf(lab, met_stands=False),
    LabUlnRule: _Leaf(lab_uln, met_stands=False),
    CodedObservationRule: _Leaf(coded_observation),
    MostRecentClassRule: _Leaf(most_recent_class, met_stands=False),
    ProcedureRule: _Leaf(procedure),
    MedicationDaysRule: _Leaf(medication_days),
}


def evaluate_rule(rule: AnyRule, ctx: Context, plan: Plan | None = None) -> Outcome:
    if isinstance(rule, AllOf):
        outcome = logic.all_of([evaluate_rule(r, ctx, plan) for r in rule.parts])
    elif isinstance(rule, AnyOf):
        outcome = logic.any_of([evaluate_rule(r, ctx, plan) for r in rule.parts])
    elif isinstance(rule, Not):
        assert rule.part is not None
        outcome = logic.negate(evaluate_rule(rule.part, ctx, plan))
    else:
        leaf = _LEAVES[type(rule)]
        bit = plan.bit(rule) if plan is not None else 0
        if not bit:
            found = leaf.evaluate(rule, ctx)
        elif not bit & ctx.relevant:
            # none of this patient's facts can matter to the rule: its no-data outcome, once a run
            assert plan is not None
            found = plan.empty_outcome(rule, leaf.evaluate)
        else:
            ctx.view = bit  # the rule reads only the facts that can matter to it
            try:
                found = leaf.evaluate(rule, ctx)
            finally:
                ctx.view = -1
        outcome = _unusable(leaf, _incomplete(rule, leaf, found, ctx), ctx, bit)
    return logic.remap(outcome, rule.outcome)


def _unusable(leaf: _Leaf, outcome: Outcome, ctx: Context, bit: int) -> Outcome:
    """A resource the rule would read has unusable values (an invalid date, a value that is
    not a number): the rule cannot be decided, unless it is a presence rule met by other data.
    The note names the resource; a note saying nothing was found would not be true."""
    notes = [why for bits, why in ctx.record.unusable if bits & bit]
    if not notes or (outcome.result is Result.MET and leaf.met_stands):
        return outcome
    kept = outcome.notes if outcome.evidence else ()
    return Outcome(Result.UNKNOWN, outcome.evidence, (*notes, *kept))


def _incomplete(rule: AnyRule, leaf: _Leaf, outcome: Outcome, ctx: Context) -> Outcome:
    missing = ctx.record.incomplete
    if not missing:
        return outcome
    reads = resource_types(rule)  # what the rule reads, as reduce.needs states it
    if not reads or ("*" not in missing and not (reads & missing)):
        return outcome
    if outcome.result is Result.MET and leaf.met_stands:
        return outcome
    note = "some of this patient's data could not be read (see errors), so this cannot be decided"
    return Outcome(Result.UNKNOWN, outcome.evidence, (*outcome.notes, note))


def evaluate_criterion(criterion: Criterion, ctx: Context, plan: Plan | None = None) -> CriterionResult:
    # nothing of this patient's can change the result: the one every such patient gets, once a run
    shared = plan.shared if plan and not ctx.record.incomplete and plan.shareable(criterion, ctx.relevant) else None
    if shared is not None and criterion.id in shared:
        return shared[criterion.id]
    if criterion.id == "alive" and criterion.rule is None:
        outcome = alive(ctx)
    elif criterion.rule is None:
        return CriterionResult(criterion.id, criterion.kind, Result.MANUAL, (), "reviewer to check")
    else:
        outcome = evaluate_rule(criterion.rule, ctx, plan)
    note = "; ".join(dict.fromkeys(outcome.notes)) or None
    result = CriterionResult(criterion.id, criterion.kind, outcome.result, outcome.evidence, note)
    if shared is not None:
        shared[criterion.id] = result
    return result


def patient_status(results: tuple[CriterionResult, ...]) -> Status:
    """Contract §2: excluded beats unknown; manual never changes the status."""
    decided = [(r.kind, r.result) for r in results if r.result is not Result.MANUAL]
    if any(rules_out(k, r) for k, r in decided):
        return Status.EXCLUDED
    if any(r is Result.UNKNOWN for _, r in decided):
        return Status.POSSIBLE
    return Status.CANDIDATE


def evaluate_patient(
    trial: Trial, record: PatientRecord, as_of: date, plan: Plan | None = None, fact_bits: dict[int, int] | None = None
) -> PatientResult:
    """`fact_bits`: what plan.relevant gives for the record's facts, when the caller has it."""
    plan = plan or plan_for(trial, as_of)
    if fact_bits is None:
        fact_bits = plan.relevant(record.facts)[1]
    ctx = Context(record, as_of, trial.terminology.converter, trial.terminology.known_medication_codes)
    ctx.fact_bits = fact_bits
    # a rule an unusable resource matters to is evaluated for this patient, never shared
    ctx.relevant = functools.reduce(operator.or_, [*fact_bits.values(), *(b for b, _ in record.unusable)], 0)
    results = tuple(evaluate_criterion(c, ctx, plan) for c in trial.criteria)
    ages = age_range(record.patient.birth_date, as_of)
    shown_age = ages[0] if ages and ages[0] == ages[1] else None
    p = record.patient
    return PatientResult(p.id, patient_status(results), shown_age, p.gender, results, p.name, p.identifier)
