"""Procedure rules: a Procedure from a value set performed within a window."""

from __future__ import annotations

from ..criteria import ProcedureRule
from ..model import Evidence, Outcome, Result
from .context import Context


def procedure(rule: ProcedureRule, ctx: Context) -> Outcome:
    assert rule.valueset is not None
    start_of_window = ctx.window_start(rule.within_days)
    found = []
    for fact in ctx.facts("Procedure"):
        coding = rule.valueset.first_match(fact.codings)
        if coding is None or fact.status not in rule.statuses:
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
    label = rule.valueset.title
    if not found:
        return Outcome(Result.NOT_MET, (), (f"no {label} in the {rule.within_days} days before as-of",))
    found.sort(key=lambda e: (e.date or "", e.resource), reverse=True)
    return Outcome(Result.MET, tuple(found), (f"{label} on {found[0].date}",))
