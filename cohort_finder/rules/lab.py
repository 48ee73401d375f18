"""`lab`: the most recent usable value of an analyte in a look-back window, against a threshold
(`op` and `value`) or an inclusive range (`between`), in the unit the rule names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..yamlio import LineList
from .base import Outcomes, Rule
from .lab_values import CONVERSION_COLUMNS, AnalyteRule, conversions, converted, decided, holds
from .table import FactTable

if TYPE_CHECKING:
    from .parser import Parser


@dataclass(frozen=True, slots=True)
class LabRule(AnalyteRule):
    unit: str = ""
    op: str = ">"
    value: float = 0.0
    between: tuple[float, float] | None = None
    kind = "lab"
    columns = (("op", "VARCHAR"), ("t1", "DOUBLE"), ("t2", "DOUBLE"), ("target_unit", "VARCHAR"))

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

    def parameters(self) -> tuple[Any, ...]:
        if self.between is not None:
            return ("between", *self.between, self.unit)
        return (self.op, self.value, None, self.unit)

    @classmethod
    def tested(cls, rules: Sequence[AnalyteRule], t: FactTable, candidates: str) -> str:
        assert t.converter is not None
        rows = []
        for n, rule in enumerate(cls.mine(rules)):
            assert rule.analyte is not None
            rows += conversions(t.converter, n, rule.analyte, ((unit, rule.unit) for unit in t.value_units))
        value = (
            f"SELECT r.*, {converted('r.value', 'd')} AS x, r.target_unit AS target, "
            "CAST(NULL AS DOUBLE) AS uln, CAST(NULL AS VARCHAR) AS uln_source "
            f"FROM ({candidates}) AS r LEFT JOIN {t.params(CONVERSION_COLUMNS, rows)} AS d "
            "ON d.rule = r.rule AND d.source = r.unit AND r.reason IS NULL"
        )

        def test(x: str) -> str:  # between: inclusive
            return f"CASE WHEN op = 'between' THEN (t1 <= ({x}) AND ({x}) <= t2) ELSE {holds('op', x, 't1')} END"

        return decided(value, ["t1", "t2"], test)  # t2 is NULL but for between: no probe

    def describe(self, target: str) -> str:
        if self.between is not None:
            lo, hi = self.between
            return f"{lo:g}-{hi:g} {self.unit}"
        return f"{self.op} {self.value:g} {self.unit}"
