"""`sex`: the Patient's administrative gender in (or not in) a list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Evidence, Outcome, Result
from ..yamlio import LineList
from .base import Outcomes, Rule
from .context import Context

if TYPE_CHECKING:
    from .parser import Parser

GENDERS = frozenset({"male", "female", "other", "unknown"})


@dataclass(frozen=True, slots=True)
class SexRule(Rule):
    values: frozenset[str] = frozenset()
    negate: bool = False  # not_in
    kind = "sex"

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, "sex", set(), {"in", "not_in"})
        if ("in" in raw) == ("not_in" in raw):
            raise p.fail(raw.line, "sex needs exactly one of 'in' or 'not_in'")
        key = "in" if "in" in raw else "not_in"
        values = raw[key]
        if not isinstance(values, LineList) or not set(values) <= GENDERS:
            raise p.fail(raw.line_of(key), f"sex '{key}' must list genders from {sorted(GENDERS)}")
        return cls(line, outcome, frozenset(values), key == "not_in")

    def evaluate(self, ctx: Context) -> Outcome:
        gender = ctx.record.patient.gender
        ev = (Evidence(f"Patient/{ctx.record.patient.id}"),)
        if self.negate:
            inside = gender not in self.values
            return Outcome(Result.MET if inside else Result.NOT_MET, ev, (f"gender {gender or 'not recorded'}",))
        if gender is None:
            return Outcome(Result.UNKNOWN, (), ("gender not recorded",))
        return Outcome(Result.MET if gender in self.values else Result.NOT_MET, ev, (f"gender {gender}",))
