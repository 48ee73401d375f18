"""`coded_observation`: an Observation from one value set whose coded value is in another
(pregnancy status = pregnant), inside a window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Evidence, Outcome, Result
from ..terminology import CodeSet
from .base import Need, Outcomes, Rule
from .context import Context

if TYPE_CHECKING:
    from .parser import Parser

VOID_OBSERVATION = frozenset({"cancelled", "entered-in-error"})


@dataclass(frozen=True, slots=True)
class CodedObservationRule(Rule):
    code_valueset: CodeSet | None = None
    value_valueset: CodeSet | None = None
    within_days: int = 365
    kind = "coded_observation"

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, cls.kind, {"code_valueset", "value_valueset", "within_days"}, set())
        return cls(
            line, outcome, p.codeset(raw, "code_valueset"), p.codeset(raw, "value_valueset"), p.days(raw, "within_days")
        )

    def needs(self) -> list[Need]:
        assert self.code_valueset is not None
        return [Need("Observation", "code", self.code_valueset, self.within_days)]

    def evaluate(self, ctx: Context) -> Outcome:
        assert self.code_valueset is not None and self.value_valueset is not None
        found = []
        for fact in ctx.facts("Observation"):
            if fact.status in VOID_OBSERVATION or not ctx.in_window(fact.effective, self.within_days):
                continue
            if self.code_valueset.first_match(fact.codings) is None:
                continue
            value = self.value_valueset.first_match(fact.value_codings)
            if value is not None:
                found.append(
                    Evidence(
                        f"Observation/{fact.resource_id}", code=value.token, date=fact.effective, display=value.display
                    )
                )
        label = f"{self.code_valueset.title} = {self.value_valueset.title}"
        if not found:
            return Outcome(Result.NOT_MET, (), (f"no {label} in the {self.within_days} days before as-of",))
        found.sort(key=lambda e: (e.date or "", e.resource), reverse=True)
        return Outcome(Result.MET, tuple(found), (f"{label} on {found[0].date}",))
