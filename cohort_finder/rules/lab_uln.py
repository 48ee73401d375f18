"""`lab_uln`: the most recent usable value of an analyte against a multiple of its upper limit
of normal: the Observation's own referenceRange high where it converts, else the default."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..yamlio import LineDict
from .base import Outcomes, Rule
from .lab_values import CONVERSION_COLUMNS, ROUND, AnalyteRule, conversions, converted, decided, holds
from .table import FactTable

if TYPE_CHECKING:
    from .parser import Parser


@dataclass(frozen=True, slots=True)
class LabUlnRule(AnalyteRule):
    op: str = ">"
    multiple: float = 1.0
    default_uln: tuple[float, str] | None = None
    kind = "lab_uln"
    columns = (("op", "VARCHAR"), ("multiple", "DOUBLE"), ("uln_value", "DOUBLE"), ("uln_unit", "VARCHAR"))

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, cls.kind, {"analyte", "op", "multiple"}, {"valueset", "default_uln", "lookback_days"})
        analyte, codes = p.analyte(raw)
        uln = analyte.default_uln
        if "default_uln" in raw:
            spec = raw["default_uln"]
            if not isinstance(spec, LineDict) or not isinstance(spec.get("unit"), str):
                raise p.fail(raw.line_of("default_uln"), "default_uln needs 'value' and 'unit'")
            uln = (p.number(spec, "value"), str(spec["unit"]))
        if uln is None:
            raise p.fail(raw.line, f"analyte '{analyte.name}' has no default ULN: give 'default_uln'")
        lookback = p.days(raw, "lookback_days", "lookback_days")
        return cls(line, outcome, analyte, codes, lookback, p.op(raw), p.number(raw, "multiple"), uln)

    def parameters(self) -> tuple[Any, ...]:
        assert self.default_uln is not None
        return (self.op, self.multiple, *self.default_uln)

    @classmethod
    def tested(cls, rules: Sequence[AnalyteRule], t: FactTable, candidates: str) -> str:
        assert t.converter is not None
        to_default, own = [], []
        for n, rule in enumerate(cls.mine(rules)):
            assert rule.analyte is not None and rule.default_uln is not None
            default_unit = rule.default_uln[1]
            to_default += conversions(t.converter, n, rule.analyte, ((unit, default_unit) for unit in t.value_units))
            # the Observation's referenceRange high, into the unit of its value
            own += conversions(t.converter, n, rule.analyte, ((high, unit) for unit, high in t.units if high))
        # the ULN is the Observation's own where its referenceRange high converts into the
        # unit of its value (the value is then tested as it is), else the default
        uln = (
            f"SELECT r.*, CASE WHEN o.a IS NOT NULL THEN {converted('r.ref_high', 'o')} ELSE r.uln_value END AS uln, "
            "CASE WHEN o.a IS NOT NULL THEN r.unit ELSE r.uln_unit END AS target, "
            "CASE WHEN o.a IS NOT NULL THEN 'referenceRange' ELSE 'default' END AS uln_source, "
            f"CASE WHEN o.a IS NOT NULL THEN round(r.value, {ROUND}) ELSE {converted('r.value', 'd')} END AS x "
            f"FROM ({candidates}) AS r "
            f"LEFT JOIN {t.params(CONVERSION_COLUMNS, own)} AS o ON o.rule = r.rule AND o.source = r.ref_unit "
            "AND o.target = r.unit AND r.ref_high IS NOT NULL AND r.reason IS NULL "
            f"LEFT JOIN {t.params(CONVERSION_COLUMNS, to_default)} AS d ON d.rule = r.rule AND d.source = r.unit "
            "AND r.reason IS NULL"
        )
        # 1.5 * 1.2 is 1.7999999999999998 in binary: the limit is rounded too
        limit = f"SELECT *, round(multiple * uln, {ROUND}) AS uln_limit FROM ({uln})"

        def test(x: str) -> str:
            return holds("op", x, "uln_limit")

        return decided(limit, ["uln_limit"], test)

    def describe(self, target: str) -> str:
        return f"{self.op} {self.multiple:g} x ULN"
