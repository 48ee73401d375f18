"""`condition`: a current (or ever recorded) Condition from a value set, optionally with an
onset inside a window (contract §3: current, void)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Coding, Evidence, Fact, Outcome, Result
from ..terminology import CodeSet
from .base import Need, Outcomes, Rule
from .context import Context

if TYPE_CHECKING:
    from .parser import Parser

CURRENT_STATUSES = frozenset({"active", "recurrence", "relapse"})
VOID_VERIFICATION = frozenset({"refuted", "entered-in-error"})


def is_void(fact: Fact) -> bool:
    return fact.verification_status in VOID_VERIFICATION


def is_current(fact: Fact, as_of: str) -> bool:
    """Contract §3. An onset that gives no date does not stop a Condition being current."""
    if is_void(fact):
        return False
    if fact.clinical_status is not None and fact.clinical_status not in CURRENT_STATUSES:
        return False
    if fact.onset is not None and fact.onset > as_of:
        return False
    # an abatement without a date counts as abated
    return not (fact.abated and (fact.abatement is None or fact.abatement <= as_of))


def matching_conditions(ctx: Context, codes: CodeSet, current: bool = True) -> list[tuple[Fact, Coding]]:
    """(fact, matched coding) for every non-void Condition in the value set, sorted by id."""
    found = []
    for fact in ctx.facts("Condition"):
        coding = codes.first_match(fact.codings)
        if coding is None or is_void(fact):
            continue
        if current and not is_current(fact, ctx.as_of_text):
            continue
        if not current and fact.onset is not None and fact.onset > ctx.as_of_text:
            continue
        found.append((fact, coding))
    return sorted(found, key=lambda pair: pair[0].resource_id)


@dataclass(frozen=True, slots=True)
class ConditionRule(Rule):
    valueset: CodeSet | None = None
    current: bool = True
    onset_within_days: int | None = None
    kind = "condition"

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, cls.kind, {"valueset"}, {"current", "onset_within_days"})
        current = raw.get("current", True)
        if not isinstance(current, bool):
            raise p.fail(raw.line_of("current"), "'current' must be true or false")
        within = p.days(raw, "onset_within_days") if "onset_within_days" in raw else None
        return cls(line, outcome, p.codeset(raw, "valueset"), current, within)

    def needs(self) -> list[Need]:
        assert self.valueset is not None
        return [Need("Condition", "code", self.valueset)]

    def evaluate(self, ctx: Context) -> Outcome:
        assert self.valueset is not None
        found = matching_conditions(ctx, self.valueset, self.current)
        if self.onset_within_days is not None:
            found = [(f, c) for f, c in found if ctx.in_window(f.onset or f.recorded, self.onset_within_days)]
        label = self.valueset.title
        if not found:
            scope = "current " if self.current else ""
            return Outcome(Result.NOT_MET, (), (f"no {scope}{label} condition",))
        evidence = tuple(
            Evidence(f"Condition/{f.resource_id}", code=c.token, date=f.onset or f.recorded, display=c.display)
            for f, c in found
        )
        return Outcome(Result.MET, evidence, (f"{label}: {', '.join(e.code or '' for e in evidence)}",))
