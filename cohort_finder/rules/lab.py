"""`lab`: the most recent usable value of an analyte in a look-back window, against a threshold
(`op` and `value`) or an inclusive range (`between`), in the unit the rule names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Outcome
from ..yamlio import LineList
from .base import Outcomes, Rule
from .context import Context
from .lab_values import AnalyteRule, Test, holds, most_recent

if TYPE_CHECKING:
    from .parser import Parser


@dataclass(frozen=True, slots=True)
class LabRule(AnalyteRule):
    unit: str = ""
    op: str = ">"
    value: float = 0.0
    between: tuple[float, float] | None = None
    kind = "lab"

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        optional = {"valueset", "op", "value", "between", "lookback_days"}
        raw = p.params(raw, line, cls.kind, {"analyte", "unit"}, optional)
        analyte, codes = p.analyte(raw)
        unit = p.unit(raw, analyte, str(raw["unit"]))
        lookback = p.days(raw, "lookback_days", "lookback_days")
        if "between" in raw:
            bounds = raw["between"]
            if (
                "op" in raw
                or "value" in raw
                or not isinstance(bounds, LineList)
                or len(bounds) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
                or bounds[0] > bounds[1]
            ):
                raise p.fail(raw.line_of("between"), "'between' is [low, high] (inclusive), without 'op'/'value'")
            between = (float(bounds[0]), float(bounds[1]))
            return cls(line, outcome, analyte, codes, lookback, unit, between=between)
        if "op" not in raw or "value" not in raw:
            raise p.fail(raw.line, "lab needs 'op' and 'value' (or 'between')")
        return cls(line, outcome, analyte, codes, lookback, unit, p.op(raw), p.number(raw, "value"))

    def evaluate(self, ctx: Context) -> Outcome:
        assert self.analyte is not None and self.codes is not None
        if self.between is not None:
            lo, hi = self.between
            test = Test(lambda x: lo <= x <= hi, (lo, hi), self.unit, f"{lo:g}-{hi:g} {self.unit}")
        else:
            op, t = self.op, self.value
            test = Test(lambda x: holds(op, x, t), (t,), self.unit, f"{op} {t:g} {self.unit}")
        return most_recent(ctx, self.analyte, self.codes, self.lookback_days, lambda fact, unit: test)
