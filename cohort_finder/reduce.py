"""Keep only the rows whose codes the trial uses.

This is where almost all bytes are spent at scale, so engines (DuckDB, Spark) do it their own
way; this is the in-process version and the definition they must agree with. It is a coarse
filter: it may keep a row no rule uses, never drop one a rule needs (rules match precisely).
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


@dataclass(frozen=True, slots=True)
class TrialCodes:
    codes: CodeSet  # every code any rule matches, on a resource's code or its coded value
    medications: tuple[MedicationSet, ...]

    def keeps(self, fact: Fact) -> bool:
        if fact.resource_type in ("MedicationStatement", "MedicationRequest"):
            return any(self._medication(fact, meds) for meds in self.medications)
        return any(self.codes.matches(c) for c in fact.codings) or any(
            self.codes.matches(c) for c in fact.value_codings
        )

    @staticmethod
    def _medication(fact: Fact, meds: MedicationSet) -> bool:
        if any(meds.ingredient_by_code(c) for c in fact.codings):
            return True
        texts = [c.display for c in fact.codings if c.display] + ([fact.text] if fact.text else [])
        return any(meds.ingredient_by_name(t) for t in texts)


def trial_codes(trial: Trial) -> TrialCodes:
    union = CodeSet("trial", "trial")
    medications: list[MedicationSet] = []
    for criterion in trial.criteria:
        if criterion.rule is None:
            continue
        for leaf in leaves(criterion.rule):
            for codes in _codesets(leaf):
                union = union.union(codes, "trial")
            if isinstance(leaf, MedicationDaysRule) and leaf.medications is not None:
                medications.append(leaf.medications)
    return TrialCodes(union, tuple(medications))


def _codesets(leaf: AnyRule) -> list[CodeSet]:
    if isinstance(leaf, (ConditionRule, ProcedureRule)) and leaf.valueset is not None:
        return [leaf.valueset]
    if isinstance(leaf, (LabRule, LabUlnRule)) and leaf.codes is not None:
        return [leaf.codes]
    if isinstance(leaf, CodedObservationRule) and leaf.code_valueset is not None:
        return [leaf.code_valueset]
    if isinstance(leaf, MostRecentClassRule):
        return [codes for codes, _ in leaf.classes]
    return []
