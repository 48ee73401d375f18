"""Coded-value rules: an Observation whose value is a code (pregnancy status), and the most
recent class of a graded scale (NYHA) from Observation values or Condition codes."""

from __future__ import annotations

from ..criteria import CodedObservationRule, MostRecentClassRule
from ..model import Evidence, Outcome, Result
from .conditions import is_void
from .context import Context

_VOID_OBSERVATION = frozenset({"cancelled", "entered-in-error"})


def coded_observation(rule: CodedObservationRule, ctx: Context) -> Outcome:
    assert rule.code_valueset is not None and rule.value_valueset is not None
    found = []
    for fact in ctx.facts("Observation"):
        if fact.status in _VOID_OBSERVATION or not ctx.in_window(fact.effective, rule.within_days):
            continue
        if rule.code_valueset.first_match(fact.codings) is None:
            continue
        value = rule.value_valueset.first_match(fact.value_codings)
        if value is not None:
            found.append(
                Evidence(
                    f"Observation/{fact.resource_id}", code=value.token, date=fact.effective, display=value.display
                )
            )
    label = f"{rule.code_valueset.title} = {rule.value_valueset.title}"
    if not found:
        return Outcome(Result.NOT_MET, (), (f"no {label} in the {rule.within_days} days before as-of",))
    found.sort(key=lambda e: (e.date or "", e.resource), reverse=True)
    return Outcome(Result.MET, tuple(found), (f"{label} on {found[0].date}",))


def most_recent_class(rule: MostRecentClassRule, ctx: Context) -> Outcome:
    # (date, rank, evidence): the latest date wins, and on the same day the higher class
    seen: list[tuple[str, int, Evidence]] = []
    for rank, (codes, _) in enumerate(rule.classes):
        if "observation_value" in rule.sources:
            for fact in ctx.facts("Observation"):
                coding = codes.first_match(fact.value_codings)
                if (
                    coding
                    and fact.status not in _VOID_OBSERVATION
                    and ctx.in_window(fact.effective, rule.lookback_days)
                ):
                    seen.append(
                        (
                            fact.effective or "",
                            rank,
                            Evidence(
                                f"Observation/{fact.resource_id}", coding.token, fact.effective, display=coding.display
                            ),
                        )
                    )
        if "condition_code" in rule.sources:
            for fact in ctx.facts("Condition"):
                coding = codes.first_match(fact.codings)
                day = fact.onset or fact.recorded
                if coding and not is_void(fact) and ctx.in_window(day, rule.lookback_days):
                    seen.append(
                        (
                            day or "",
                            rank,
                            Evidence(f"Condition/{fact.resource_id}", coding.token, day, display=coding.display),
                        )
                    )
    if not seen:
        titles = "/".join(codes.title for codes, _ in rule.classes)
        return Outcome(
            Result.UNKNOWN, (), (f"class not recorded ({titles}) in the {rule.lookback_days} days before as-of",)
        )
    day, rank, evidence = max(seen, key=lambda s: (s[0], s[1], s[2].resource))
    codes, result = rule.classes[rank]
    return Outcome(result, (evidence,), (f"most recent: {codes.title} on {day}",))
