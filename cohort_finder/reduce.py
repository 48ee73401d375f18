"""The trial's rules, as a whole: every leaf, and every code they read.

Every reader of rows starts from the rules' `needs`: the SQL engines' reduce filter
(engines/schema.py), the server search plan (search_plan.py), the in-process filter and
shortcut (evaluate/plan.py) and the unreadable-data downgrade (evaluate/__init__.py). The
filters are coarse: they may keep a row no rule uses, never drop one a rule needs (rules match
precisely).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .criteria import Trial
from .rules import Rule, leaves
from .terminology import CodeSet, MedicationSet


@dataclass(frozen=True, slots=True)
class TrialCodes:
    codes: CodeSet  # every code any rule matches, on a resource's code or its coded value
    medications: tuple[MedicationSet, ...]


def trial_leaves(trial: Trial) -> Iterator[Rule]:
    for criterion in trial.criteria:
        if criterion.rule is not None:
            yield from leaves(criterion.rule)


def trial_codes(trial: Trial) -> TrialCodes:
    union = CodeSet("trial", "trial")
    medications: dict[int, MedicationSet] = {}
    for leaf in trial_leaves(trial):
        for need in leaf.needs():
            union = union.union(need.codes, "trial")
            if need.medications is not None:
                medications.setdefault(id(need.medications), need.medications)
    return TrialCodes(union, tuple(medications.values()))
