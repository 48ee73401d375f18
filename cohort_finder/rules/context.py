"""What every rule function sees: one patient's reduced rows and the reference date."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from ..model import Fact, Outcome, PatientRecord
from ..units import UnitConverter


@dataclass(slots=True)
class Context:
    record: PatientRecord
    as_of: date
    converter: UnitConverter
    # every code the mappings know to name a medication: such a code decides, not the name
    known_medication_codes: frozenset[tuple[str, str]] = frozenset()
    as_of_text: str = ""
    # bits of the rules some fact of this patient can matter to (plan.Plan); -1: all of them
    relevant: int = -1
    # the rule being evaluated sees only the facts that can matter to it (its bit; -1: all)
    view: int = -1
    by_type: dict[str, list[Fact]] = field(default_factory=dict)
    _starts: dict[int, str] = field(default_factory=dict)
    fact_bits: dict[int, int] = field(default_factory=dict)  # id(fact) -> its rules' bits (plan.Plan)
    # the outcomes of the rules decided by query, by id(rule), then patient id (plan.Plan.answers)
    answers: dict[int, dict[str, Outcome]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.as_of_text = self.as_of.isoformat()
        grouped: dict[str, list[Fact]] = defaultdict(list)
        for fact in self.record.facts:
            grouped[fact.resource_type].append(fact)
        self.by_type = dict(grouped)

    def facts(self, *types: str) -> list[Fact]:
        if len(types) == 1:  # the common case, asked for by every rule of every patient
            found = self.by_type.get(types[0], [])
        else:
            found = [f for rtype in types for f in self.by_type.get(rtype, ())]
        if self.view == -1:
            return found
        fact_bits, view = self.fact_bits, self.view
        return [f for f in found if fact_bits.get(id(f), 0) & view]

    def window_start(self, days: int) -> str:
        """First day of an N-day look-back: the day exactly N days before as-of counts.
        (Asked for every row of every windowed rule: computed once per length.)"""
        start = self._starts.get(days)
        if start is None:
            start = self._starts[days] = (self.as_of - timedelta(days=days)).isoformat()
        return start

    def in_window(self, day: str | None, days: int | None) -> bool:
        if day is None or len(day) != 10 or day > self.as_of_text:
            return False
        return days is None or day >= self.window_start(days)
