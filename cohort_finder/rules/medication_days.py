"""`medication_days`: distinct days covered by MedicationStatement, MedicationRequest and
MedicationDispense records of a medication set, at least `min_days`, optionally in a window.

Contract §3: each record gives a period of days up to as-of; overlaps count once, gaps are
allowed. Medications match by code (ingredient, or product through the product table), and
only where no code is known by the ingredient's name as a whole word.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from ..facts import MEDICATION_TYPES
from ..model import Evidence, Fact, Outcome, Result
from ..terminology import CodeSet, MedicationSet
from .base import Need, Outcomes, Rule
from .context import Context

if TYPE_CHECKING:
    from .parser import Parser

# an order in one of these states with no end is a medication the patient is on (to as-of)
ONGOING_ORDER_STATUSES = frozenset({"active", "on-hold"})
MAX_SUPPLY_DAYS = 3_652_500  # 10,000 years: any longer supply runs past every possible as-of
IGNORED_STATUSES = frozenset({"entered-in-error", "cancelled", "draft", "not-taken", "declined"})
IGNORED_INTENTS = frozenset({"proposal", "plan"})
DISPENSED = frozenset({None, "completed"})  # a dispense counts only once handed over


def names_medication(fact: Fact, meds: MedicationSet) -> bool:
    """Does a medication record name one of the set's ingredients, by code or by name? (Coarse:
    the rule decides whether a known code for another drug overrides the name.)"""
    if any(meds.ingredient_by_code(c) for c in fact.codings):
        return True
    texts = [c.display for c in fact.codings if c.display] + ([fact.text] if fact.text else [])
    return any(meds.ingredient_by_name(t) for t in texts)


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


def supply_days(fact: Fact) -> int | None:
    """Days a record's supply lasts from its start: an order's expectedSupplyDuration x (1 +
    numberOfRepeatsAllowed), a dispense's daysSupply; fractions round up. None: no supply of a
    day or more is stated."""
    if fact.days_supply is not None:
        days = fact.days_supply
    elif fact.supply_duration is not None:
        days = fact.supply_duration * (1 + min(fact.repeats or 0, MAX_SUPPLY_DAYS))
    else:
        return None
    # longer than any as-of can be from its start: the supply simply runs to as-of
    whole = math.ceil(min(days, MAX_SUPPLY_DAYS))
    return whole if whole >= 1 else None


def record_period(fact: Fact, as_of: date) -> tuple[date, date] | None:
    """The first and last day a record covers, up to as-of (contract §3):
    - a stated period (effective[x], validityPeriod, boundsPeriod), an open end running to as-of;
    - an order without one: from authoredOn for its supply, else to as-of while it is active or
      on hold, else that one day;
    - a dispense: from its handing over for daysSupply, else that one day.
    None where no first day can be told (partial or missing dates)."""
    try:
        if fact.period_start is not None:
            start = date.fromisoformat(fact.period_start)
            end = date.fromisoformat(fact.period_end) if fact.period_end else as_of
            return start, min(end, as_of)
        day = fact.authored or fact.handed_over
        start = date.fromisoformat(day or "")
    except ValueError:
        return None
    supply = supply_days(fact)
    if supply is not None:
        last = supply - 1  # a supply that lasts past as-of ends there (and never past the calendar's end)
        end = as_of if last >= (as_of - start).days else start + timedelta(days=last)
    elif fact.authored is not None and fact.status in ONGOING_ORDER_STATUSES:
        end = as_of
    else:
        end = start
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


@dataclass(frozen=True, slots=True)
class MedicationDaysRule(Rule):
    medications: MedicationSet | None = None
    min_days: int = 1
    within_days: int | None = None
    kind = "medication_days"

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, cls.kind, {"valueset", "min_days"}, {"within_days"})
        meds = p.medset(raw, "valueset")
        min_days = p.days(raw, "min_days")
        within = p.days(raw, "within_days") if "within_days" in raw else None
        return cls(line, outcome, meds, min_days, within)

    def needs(self) -> list[Need]:
        # by ingredient code or name, which no code set states: the medication set itself
        nothing = CodeSet("medications", "medications")
        # no window: a record that began before one may still cover days inside it
        return [Need(rtype, "medication", nothing, None, self.medications) for rtype in MEDICATION_TYPES]

    def evaluate(self, ctx: Context) -> Outcome:
        meds = self.medications
        assert meds is not None
        first = ctx.as_of - timedelta(days=self.within_days) if self.within_days is not None else date.min
        periods, evidence, undated = [], [], []
        for fact in ctx.facts(*MEDICATION_TYPES):
            if fact.status in IGNORED_STATUSES or fact.intent in IGNORED_INTENTS:
                continue
            if fact.resource_type == "MedicationDispense" and fact.status not in DISPENSED:
                continue
            hit = identify(fact, meds, ctx.known_medication_codes)
            if hit is None:
                continue
            span = record_period(fact, ctx.as_of)
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
        within = self.within_days
        window = f" in the {within} days before as-of" if within is not None else " on or before as-of"
        notes = [f"{days} days covered by {meds.title}{window} (needs {self.min_days})"]
        if undated:
            notes.append(f"no countable dates on {', '.join(sorted(undated))}")
        evidence.sort(key=lambda e: (e.date or "", e.resource))
        return Outcome(Result.MET if days >= self.min_days else Result.NOT_MET, tuple(evidence), tuple(notes))
