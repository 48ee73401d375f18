"""Where every criterion is evaluated: one patient's rows in, one result per criterion out.

`evaluate_patient` walks the criteria in file order (`alive` first); `evaluate_rule`
dispatches each rule to the small function of its kind (one module per family).
"""

from __future__ import annotations

from datetime import date

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
from ..model import CriterionResult, Outcome, PatientRecord, PatientResult, Result, Status
from . import logic
from .conditions import condition
from .context import Context
from .demographics import age, age_range, alive, sex
from .labs import lab, lab_uln
from .medications import medication_days
from .observations import coded_observation, most_recent_class
from .procedures import procedure

# Resource types each leaf reads, and whether `met` stands however much more data there is
# (presence rules) or could change (most-recent rules). Used when a patient's data could not
# all be read: results that depended on the missing data become unknown (contract §4).
_READS: dict[type, tuple[frozenset[str], bool]] = {
    ConditionRule: (frozenset({"Condition"}), True),
    LabRule: (frozenset({"Observation"}), False),
    LabUlnRule: (frozenset({"Observation"}), False),
    CodedObservationRule: (frozenset({"Observation"}), True),
    MostRecentClassRule: (frozenset({"Observation", "Condition"}), False),
    ProcedureRule: (frozenset({"Procedure"}), True),
    MedicationDaysRule: (frozenset({"MedicationStatement", "MedicationRequest"}), True),
}


def evaluate_rule(rule: AnyRule, ctx: Context, trial: Trial) -> Outcome:
    if isinstance(rule, AllOf):
        outcome = logic.all_of([evaluate_rule(r, ctx, trial) for r in rule.parts])
    elif isinstance(rule, AnyOf):
        outcome = logic.any_of([evaluate_rule(r, ctx, trial) for r in rule.parts])
    elif isinstance(rule, Not):
        assert rule.part is not None
        outcome = logic.negate(evaluate_rule(rule.part, ctx, trial))
    else:
        outcome = _leaf(rule, ctx, trial)
        outcome = _incomplete(rule, outcome, ctx)
    return logic.remap(outcome, rule.outcome)


def _leaf(rule: AnyRule, ctx: Context, trial: Trial) -> Outcome:
    if isinstance(rule, AgeRule):
        return age(rule, ctx)
    if isinstance(rule, SexRule):
        return sex(rule, ctx)
    if isinstance(rule, ConditionRule):
        return condition(rule, ctx)
    if isinstance(rule, LabRule):
        return lab(rule, ctx)
    if isinstance(rule, LabUlnRule):
        return lab_uln(rule, ctx)
    if isinstance(rule, CodedObservationRule):
        return coded_observation(rule, ctx)
    if isinstance(rule, MostRecentClassRule):
        return most_recent_class(rule, ctx)
    if isinstance(rule, ProcedureRule):
        return procedure(rule, ctx)
    if isinstance(rule, MedicationDaysRule):
        return medication_days(rule, ctx, trial.terminology.known_medication_codes)
    raise TypeError(f"no evaluator for {type(rule).__name__}")  # pragma: no cover


def _incomplete(rule: AnyRule, outcome: Outcome, ctx: Context) -> Outcome:
    missing = ctx.record.incomplete
    reads = _READS.get(type(rule))
    if not missing or reads is None:
        return outcome
    types, met_stands = reads
    if "*" not in missing and not (types & missing):
        return outcome
    if outcome.result is Result.MET and met_stands:
        return outcome
    note = "some of this patient's data could not be read (see errors), so this cannot be decided"
    return Outcome(Result.UNKNOWN, outcome.evidence, (*outcome.notes, note))


def evaluate_criterion(criterion: Criterion, ctx: Context, trial: Trial) -> CriterionResult:
    if criterion.id == "alive" and criterion.rule is None:
        outcome = alive(ctx)
    elif criterion.rule is None:
        return CriterionResult(criterion.id, criterion.kind, Result.MANUAL, (), "reviewer to check")
    else:
        outcome = evaluate_rule(criterion.rule, ctx, trial)
    note = "; ".join(dict.fromkeys(outcome.notes)) or None
    return CriterionResult(criterion.id, criterion.kind, outcome.result, outcome.evidence, note)


def patient_status(results: tuple[CriterionResult, ...]) -> Status:
    """Contract §2: excluded beats unknown; manual never changes the status."""
    decided = [(r.kind, r.result) for r in results if r.result is not Result.MANUAL]
    if any((k == "inclusion" and r is Result.NOT_MET) or (k == "exclusion" and r is Result.MET) for k, r in decided):
        return Status.EXCLUDED
    if any(r is Result.UNKNOWN for _, r in decided):
        return Status.POSSIBLE
    return Status.CANDIDATE


def evaluate_patient(trial: Trial, record: PatientRecord, as_of: date) -> PatientResult:
    ctx = Context(record, as_of, trial.terminology.converter)
    results = tuple(evaluate_criterion(c, ctx, trial) for c in trial.criteria)
    ages = age_range(record.patient.birth_date, as_of)
    shown_age = ages[0] if ages and ages[0] == ages[1] else None
    p = record.patient
    return PatientResult(p.id, patient_status(results), shown_age, p.gender, results, p.name)
