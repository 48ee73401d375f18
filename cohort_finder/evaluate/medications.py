"""Medication exposure: distinct days covered by MedicationStatement, MedicationRequest and
MedicationDispense.

Contract §3: each record gives a period of days up to as-of; overlaps count once, gaps are
allowed. Medications match by code (ingredient, or product through the product table), and
only where no code is known by the ingredient's name as a whole word.
"""

from __future__ import annotations

from datetime import date, timedelta

from ..criteria import MedicationDaysRule
from ..facts import MEDICATION_TYPES
from ..model import Evidence, Fact, Outcome, Result
from ..terminology import MedicationSet
from .context import Context

IGNORED_STATUSES = frozenset({"entered-in-error", "cancelled", "draft", "not-taken", "declined"})
IGNORED_INTENTS = frozenset({"proposal", "plan"})
DISPENSED = frozenset({None, "completed"})  # a dispense counts only once handed over


def identify(
    fact: Fact, meds: MedicationSet, known_codes: frozenset[tuple[str, str]]
) -> tuple[str, str, str | None] | None:
    """(ingredient, matched_by, system|code) when the record is one of the set's medications."""
    for coding in fact.codings:
        hit = meds.ingredient_by_code(coding)
        if hit:
            return hit[0], hit[1], coding.token
    if any((c.system, c.code) in known_codes for c in fact.codings):
        return None  # coded as some other known medication: the code decides
    for coding in fact.codings:
        if coding.display and (name := meds.ingredient_by_name(coding.display)):
            return name, "name", coding.token
    if fact.text and (name := meds.ingredient_by_name(fact.text)):
        return name, "name", None
    return None


def _period(fact: Fact, as_of: date) -> tuple[date, date] | None:
    try:
        start = date.fromisoformat(fact.period_start or "")
        if fact.supply_days is not None:
            # a supply that lasts past as-of ends there (and never past the calendar's end)
            last = fact.supply_days - 1
            end = as_of if last >= (as_of - start).days else start + timedelta(days=last)
        else:
            end = date.fromisoformat(fact.period_end) if fact.period_end else as_of
    except ValueError:
        return None  # partial or missing dates: no days can be counted
    return start, min(end, as_of)


def covered_days(periods: list[tuple[date, date]]) -> int:
    total, last_end = 0, None
    for start, end in sorted(periods):
        if last_end is not None and start <= last_end:
            start = last_end + timedelta(days=1)
        if end >= start:
            total += (end - start).days + 1
            last_end = end if last_end is None else max(last_end, end)
    return total


def medication_days(rule: MedicationDaysRule, ctx: Context) -> Outcome:
    meds = rule.medications
    assert meds is not None
    first = ctx.as_of - timedelta(days=rule.within_days) if rule.within_days is not None else date.min
    periods, evidence, undated = [], [], []
    for fact in ctx.facts(*MEDICATION_TYPES):
        if fact.status in IGNORED_STATUSES or fact.intent in IGNORED_INTENTS:
            continue
        if fact.resource_type == "MedicationDispense" and fact.status not in DISPENSED:
            continue
        hit = identify(fact, meds, ctx.known_medication_codes)
        if hit is None:
            continue
        span = _period(fact, ctx.as_of)
        where = f"{fact.resource_type}/{fact.resource_id}"
        if span is None:
            undated.append(where)
            continue
        start, end = max(span[0], first), span[1]
        if end < start:
            continue
        periods.append((start, end))
        evidence.append(Evidence(where, code=hit[2], date=span[0].isoformat(), value=hit[0], matched_by=hit[1]))
    days = covered_days(periods)
    window = f" in the {rule.within_days} days before as-of" if rule.within_days is not None else " on or before as-of"
    notes = [f"{days} days covered by {meds.title}{window} (needs {rule.min_days})"]
    if undated:
        notes.append(f"no countable dates on {', '.join(sorted(undated))}")
    evidence.sort(key=lambda e: (e.date or "", e.resource))
    return Outcome(Result.MET if days >= rule.min_days else Result.NOT_MET, tuple(evidence), tuple(notes))
