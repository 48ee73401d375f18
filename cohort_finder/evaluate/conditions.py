"""Condition rules: a current (or ever recorded) Condition from a value set."""

from __future__ import annotations

from ..criteria import ConditionRule
from ..model import Coding, Evidence, Fact, Outcome, Result
from ..terminology import CodeSet
from .context import Context

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


def condition(rule: ConditionRule, ctx: Context) -> Outcome:
    assert rule.valueset is not None
    found = matching_conditions(ctx, rule.valueset, rule.current)
    if rule.onset_within_days is not None:
        found = [(f, c) for f, c in found if ctx.in_window(f.onset or f.recorded, rule.onset_within_days)]
    label = rule.valueset.title
    if not found:
        scope = "current " if rule.current else ""
        return Outcome(Result.NOT_MET, (), (f"no {scope}{label} condition",))
    evidence = tuple(
        Evidence(f"Condition/{f.resource_id}", code=c.token, date=f.onset or f.recorded, display=c.display)
        for f, c in found
    )
    return Outcome(Result.MET, evidence, (f"{label}: {', '.join(e.code or '' for e in evidence)}",))
