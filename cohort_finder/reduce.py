"""What each rule reads (`needs`, `resource_types`), and the trial's codes as a whole.

Every reader of rows starts here: the SQL engines' reduce filter (engines/schema.py), the
server search plan (search_plan.py), the in-process filter and shortcut (evaluate/plan.py)
and the unreadable-data downgrade (evaluate/__init__.py). The filters are coarse: they may
keep a row no rule uses, never drop one a rule needs (rules match precisely).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .criteria import (
    AllOf,
    AnyOf,
    AnyRule,
    CodedObservationRule,
    ConditionRule,
    LabRule,
    LabUlnRule,
    MedicationDaysRule,
    MostRecentClassRule,
    Not,
    ProcedureRule,
    Trial,
)
from .facts import MEDICATION_TYPES
from .model import Fact
from .terminology import CodeSet, MedicationSet


def leaves(rule: AnyRule) -> Iterator[AnyRule]:
    """The rules under a combination, depth first."""
    if isinstance(rule, (AllOf, AnyOf)):
        for part in rule.parts:
            yield from leaves(part)
    elif isinstance(rule, Not):
        assert rule.part is not None
        yield from leaves(rule.part)
    else:
        yield rule


def names_medication(fact: Fact, meds: MedicationSet) -> bool:
    """Does a medication record name one of the set's ingredients, by code or by name? (Coarse:
    the rule decides whether a known code for another drug overrides the name.)"""
    if any(meds.ingredient_by_code(c) for c in fact.codings):
        return True
    texts = [c.display for c in fact.codings if c.display] + ([fact.text] if fact.text else [])
    return any(meds.ingredient_by_name(t) for t in texts)


@dataclass(frozen=True, slots=True)
class TrialCodes:
    codes: CodeSet  # every code any rule matches, on a resource's code or its coded value
    medications: tuple[MedicationSet, ...]


@dataclass(frozen=True, slots=True)
class Need:
    """What one rule reads: a value set on a resource type's `code` (or coded `value`), and how
    far back (None: no window). The reduce step and the server search plan both start here, so
    a new rule kind is taught to them in one place."""

    resource_type: str
    field: str  # "code" or "value"
    codes: CodeSet
    window: int | None = None


def needs(leaf: AnyRule) -> list[Need]:
    if isinstance(leaf, ConditionRule) and leaf.valueset is not None:
        return [Need("Condition", "code", leaf.valueset)]
    if isinstance(leaf, ProcedureRule) and leaf.valueset is not None:
        return [Need("Procedure", "code", leaf.valueset, leaf.within_days)]
    if isinstance(leaf, (LabRule, LabUlnRule)) and leaf.codes is not None:
        return [Need("Observation", "code", leaf.codes, leaf.lookback_days)]
    if isinstance(leaf, CodedObservationRule) and leaf.code_valueset is not None:
        return [Need("Observation", "code", leaf.code_valueset, leaf.within_days)]
    if isinstance(leaf, MostRecentClassRule):
        found = []
        for codes, _ in leaf.classes:
            if "observation_value" in leaf.sources:
                found.append(Need("Observation", "value", codes, leaf.lookback_days))
            if "condition_code" in leaf.sources:
                found.append(Need("Condition", "code", codes, leaf.lookback_days))
        return found
    return []


def resource_types(leaf: AnyRule) -> frozenset[str]:
    """The resource types a rule reads: none for the rules that read the patient (age, sex)."""
    if isinstance(leaf, MedicationDaysRule):
        return frozenset(MEDICATION_TYPES)
    return frozenset(n.resource_type for n in needs(leaf))


def trial_leaves(trial: Trial) -> Iterator[AnyRule]:
    for criterion in trial.criteria:
        if criterion.rule is not None:
            yield from leaves(criterion.rule)


def trial_codes(trial: Trial) -> TrialCodes:
    union = CodeSet("trial", "trial")
    medications: list[MedicationSet] = []
    for leaf in trial_leaves(trial):
        for need in needs(leaf):
            union = union.union(need.codes, "trial")
        if isinstance(leaf, MedicationDaysRule) and leaf.medications is not None:
            medications.append(leaf.medications)
    return TrialCodes(union, tuple(medications))
