"""`procedure`: a Procedure from a value set, in the given statuses, performed on some day of
a window ending at as-of."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Evidence, Outcome, Result
from ..terminology import CodeSet
from .base import Need, Outcomes, Rule
from .context import Context

if TYPE_CHECKING:
    from .parser import Parser

DEFAULT_STATUSES = ("completed", "in-progress")


@dataclass(frozen=True, slots=True)
class ProcedureRule(Rule):
    valueset: CodeSet | None = None
    within_days: int = 365
    statuses: frozenset[str] = frozenset(DEFAULT_STATUSES)
    kind = "procedure"

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, cls.kind, {"valueset", "within_days"}, {"statuses"})
        statuses = raw.get("statuses", list(DEFAULT_STATUSES))
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            raise p.fail(raw.line_of("statuses"), "'statuses' must be a list of Procedure statuses")
        return cls(line, outcome, p.codeset(raw, "valueset"), p.days(raw, "within_days"), frozenset(statuses))

    def needs(self) -> list[Need]:
        assert self.valueset is not None
        return [Need("Procedure", "code", self.valueset, self.within_days)]

    def evaluate(self, ctx: Context) -> Outcome:
        assert self.valueset is not None
        start_of_window = ctx.window_start(self.within_days)
        found = []
        for fact in ctx.facts("Procedure"):
            coding = self.valueset.first_match(fact.codings)
            if coding is None or fact.status not in self.statuses:
                continue
            start = fact.performed_start or fact.performed_end
            end = fact.performed_end if fact.performed_end is not None else ctx.as_of_text  # ongoing
            if start is None or len(start) != 10:
                continue
            # any day of the performed period inside [window start, as-of]
            if start <= ctx.as_of_text and end >= start_of_window:
                found.append(
                    Evidence(f"Procedure/{fact.resource_id}", code=coding.token, date=start, display=coding.display)
                )
        label = self.valueset.title
        if not found:
            return Outcome(Result.NOT_MET, (), (f"no {label} in the {self.within_days} days before as-of",))
        found.sort(key=lambda e: (e.date or "", e.resource), reverse=True)
        return Outcome(Result.MET, tuple(found), (f"{label} on {found[0].date}",))
