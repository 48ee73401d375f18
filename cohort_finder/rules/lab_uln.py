"""`lab_uln`: the most recent usable value of an analyte against a multiple of its upper limit
of normal: the Observation's own referenceRange high where it converts, else the default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Fact, Outcome
from ..yamlio import LineDict
from .base import Outcomes, Rule
from .context import Context
from .lab_values import ROUND, AnalyteRule, Test, holds, most_recent

if TYPE_CHECKING:
    from .parser import Parser


@dataclass(frozen=True, slots=True)
class LabUlnRule(AnalyteRule):
    op: str = ">"
    multiple: float = 1.0
    default_uln: tuple[float, str] | None = None
    kind = "lab_uln"

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

    def evaluate(self, ctx: Context) -> Outcome:
        analyte = self.analyte
        assert analyte is not None and self.codes is not None and self.default_uln is not None
        default_value, default_unit = self.default_uln
        multiple, op = self.multiple, self.op

        def make_test(fact: Fact, unit: str) -> Test | str:
            uln, uln_unit, source = default_value, default_unit, "default"
            if fact.ref_high is not None:
                high_unit = fact.ref_high_unit_code or fact.ref_high_unit_text or unit
                own = ctx.converter.convert(fact.ref_high, high_unit, unit, analyte.units)
                if own is not None:
                    uln, uln_unit, source = round(own, ROUND), unit, "referenceRange"
            limit = round(multiple * uln, ROUND)  # 1.5 * 1.2 is 1.7999999999999998 in binary
            return Test(lambda x: holds(op, x, limit), (limit,), uln_unit, f"{op} {multiple:g} x ULN", uln, source)

        return most_recent(ctx, analyte, self.codes, self.lookback_days, make_test)
