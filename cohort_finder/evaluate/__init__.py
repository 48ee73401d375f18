"""Where every criterion is evaluated: one patient's rows in, one result per criterion out.

`evaluate_patient` walks the criteria in file order (`alive` first); `evaluate_rule` asks each
rule to decide (its kind's class in `rules/`, one module per kind) or to combine its parts.
"""

from __future__ import annotations

import functools
import operator
from datetime import date

from ..criteria import Criterion, Trial
from ..model import CriterionResult, Outcome, PatientRecord, PatientResult, Result, Status, rules_out
from ..rules import Rule
from ..rules.age import age_range
from ..rules.alive import alive
from ..rules.context import Context
from ..rules.logic import remap
from .plan import Plan, plan_for


def evaluate_rule(rule: Rule, ctx: Context, plan: Plan | None = None) -> Outcome:
    parts = rule.parts()
    if parts:
        outcome = rule.combine([evaluate_rule(r, ctx, plan) for r in parts])
    else:
        bit = plan.bit(rule) if plan is not None else 0
        if bit and not bit & ctx.relevant:
            # none of this patient's facts can matter to the rule: its no-data outcome, once a run
            assert plan is not None
            found = plan.empty_outcome(rule)
        elif rule.by_query:  # decided by its kind's query, for the whole batch at once
            answer = ctx.answers[id(rule)].get(ctx.record.patient.id)
            found = answer if answer is not None else rule.decide(())
        else:  # the patient's own fields (age, sex)
            found = rule.evaluate(ctx)
        outcome = _unusable(rule, _incomplete(rule, found, ctx), ctx, bit)
    return remap(outcome, rule.outcome)


def _unusable(leaf: Rule, outcome: Outcome, ctx: Context, bit: int) -> Outcome:
    """A resource the rule would read has unusable values (an invalid date, a value that is
    not a number): the rule cannot be decided, unless it is a presence rule met by other data.
    The note names the resource; a note saying nothing was found would not be true."""
    if not ctx.record.unusable:  # the common case, asked for every rule of every patient
        return outcome
    notes = [why for bits, why in ctx.record.unusable if bits & bit]
    if not notes or (outcome.result is Result.MET and leaf.met_stands):
        return outcome
    kept = outcome.notes if outcome.evidence else ()
    return Outcome(Result.UNKNOWN, outcome.evidence, (*notes, *kept))


def _incomplete(leaf: Rule, outcome: Outcome, ctx: Context) -> Outcome:
    missing = ctx.record.incomplete
    if not missing:
        return outcome
    reads = leaf.reads()  # what the rule reads, as its needs state it
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
    trial: Trial,
    record: PatientRecord,
    as_of: date,
    plan: Plan | None = None,
    fact_bits: dict[int, int] | None = None,
    answers: dict[int, dict[str, Outcome]] | None = None,
) -> PatientResult:
    """`fact_bits`: what plan.relevant gives for the record's facts, when the caller has it;
    `answers`: what plan.answers gives for a batch holding this patient (else it is asked for
    this patient alone)."""
    plan = plan or plan_for(trial, as_of)
    if fact_bits is None:
        fact_bits = plan.relevant(record.facts)[1]
    if answers is None:
        answers = plan.answers([(record.patient.id, record.facts, fact_bits)])
    ctx = Context(record, as_of)
    ctx.answers = answers
    # a rule an unusable resource matters to is evaluated for this patient, never shared
    ctx.relevant = functools.reduce(operator.or_, [*fact_bits.values(), *(b for b, _ in record.unusable)], 0)
    results = tuple(evaluate_criterion(c, ctx, plan) for c in trial.criteria)
    ages = age_range(record.patient.birth_date, as_of)
    shown_age = ages[0] if ages and ages[0] == ages[1] else None
    p = record.patient
    return PatientResult(p.id, patient_status(results), shown_age, p.gender, results, p.name, p.identifier)
