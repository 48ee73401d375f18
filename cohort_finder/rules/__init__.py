"""The rule kinds of the criteria language: one module and one class per kind, each holding its
parameters and how they are parsed, what it reads (`needs`), how it decides (one SQL
statement for all of its rules and a batch's patients, `query`, for a kind that reads facts) and
how its note is worded. KINDS is the only list of them; adding a kind is adding a module and
its line here (and its test vectors, tests/vectors/<kind>.json).
"""

from __future__ import annotations

from collections.abc import Iterator

from .age import AgeRule
from .base import Need, Rule
from .coded_observation import CodedObservationRule
from .condition import ConditionRule
from .lab import LabRule
from .lab_uln import LabUlnRule
from .logic import AllOf, AnyOf, Not
from .medication_days import MedicationDaysRule
from .most_recent_class import MostRecentClassRule
from .procedure import ProcedureRule
from .sex import SexRule

KINDS: dict[str, type[Rule]] = {
    kind.kind: kind
    for kind in (
        AgeRule,
        SexRule,
        ConditionRule,
        LabRule,
        LabUlnRule,
        CodedObservationRule,
        MostRecentClassRule,
        ProcedureRule,
        MedicationDaysRule,
        AllOf,
        AnyOf,
        Not,
    )
}


def leaves(rule: Rule) -> Iterator[Rule]:
    """The rules under a combination, depth first."""
    parts = rule.parts()
    if not parts:
        yield rule
    for part in parts:
        yield from leaves(part)


__all__ = ["KINDS", "Need", "Rule", "leaves"]
