"""`age`: whole years at as-of within [min, max]; a partial birthDate widens the age."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from ..model import Evidence, Outcome, Result
from ..primitives import is_date
from .base import Outcomes, Rule
from .context import Context

if TYPE_CHECKING:
    from .parser import Parser


def _years(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def age_range(birth_date: str | None, as_of: date) -> tuple[int, int] | None:
    """(youngest, oldest) possible age in whole years; a partial birthDate widens it."""
    if not birth_date or not is_date(birth_date):
        return None
    try:
        parts = [int(x) for x in birth_date[:10].split("-")]
        if len(parts) == 3:
            age = _years(date(*parts), as_of)
            return age, age
        if len(parts) == 2:
            first, last = date(parts[0], parts[1], 1), date(parts[0], parts[1], calendar.monthrange(*parts)[1])
        elif len(parts) == 1:
            first, last = date(parts[0], 1, 1), date(parts[0], 12, 31)
        else:
            return None
    except ValueError:
        return None
    return _years(last, as_of), _years(first, as_of)


@dataclass(frozen=True, slots=True)
class AgeRule(Rule):
    min: int | None = None
    max: int | None = None
    kind = "age"

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, "age", set(), {"min", "max"})
        lo, hi = raw.get("min"), raw.get("max")
        for key, value in (("min", lo), ("max", hi)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise p.fail(raw.line_of(key), f"age '{key}' must be whole years")
        if lo is None and hi is None:
            raise p.fail(raw.line, "age needs 'min', 'max' or both")
        return cls(line, outcome, lo, hi)

    def evaluate(self, ctx: Context) -> Outcome:
        p = ctx.record.patient
        found = age_range(p.birth_date, ctx.as_of)
        if found is None:
            why = "birthDate missing" if not p.birth_date else f"birthDate {p.birth_date!r} is not a valid date"
            return Outcome(Result.UNKNOWN, (), (why,))
        youngest, oldest = found

        def inside(years: int) -> bool:
            return (self.min is None or years >= self.min) and (self.max is None or years <= self.max)

        ev = (Evidence(f"Patient/{p.id}", date=p.birth_date, value=youngest if youngest == oldest else None, unit="a"),)
        shown = str(youngest) if youngest == oldest else f"{youngest} or {oldest} (birthDate {p.birth_date})"
        if inside(youngest) and inside(oldest):
            return Outcome(Result.MET, ev, (f"age {shown}",))
        if not inside(youngest) and not inside(oldest) and (youngest == oldest or _same_side(self, youngest, oldest)):
            return Outcome(Result.NOT_MET, ev, (f"age {shown}",))
        return Outcome(Result.UNKNOWN, ev, (f"age {shown}: the partial birthDate straddles a limit",))


def _same_side(rule: AgeRule, youngest: int, oldest: int) -> bool:
    below = rule.min is not None and oldest < rule.min
    above = rule.max is not None and youngest > rule.max
    return below or above
