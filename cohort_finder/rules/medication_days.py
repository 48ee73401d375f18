"""`medication_days`: distinct days covered by MedicationStatement, MedicationRequest and
MedicationDispense records of a medication set, at least `min_days`, optionally in a window.

Contract §3: each record gives a period of days up to as-of; overlaps count once, gaps are
allowed. Medications match by code (ingredient, or product through the product table), and
only where no code is known by the ingredient's name as a whole word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..facts import MEDICATION_TYPES
from ..model import Evidence, Fact, Outcome, Result
from ..terminology import CodeSet, MedicationSet
from .base import Need, Outcomes, Rule
from .table import FactTable, sql_list

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


@dataclass(frozen=True, slots=True)
class MedicationDaysRule(Rule):
    medications: MedicationSet | None = None
    min_days: int = 1
    within_days: int | None = None
    kind = "medication_days"
    by_query = True

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

    @classmethod
    def query(cls, rules: Sequence[Rule], t: FactTable) -> str:
        """Contract §3, per record: a stated period (effective[x], validityPeriod, boundsPeriod),
        an open end running to as-of; an order without one from authoredOn for its supply
        (expectedSupplyDuration x (1 + numberOfRepeatsAllowed), fractions rounding up), else to
        as-of while it is active or on hold, else that one day; a dispense from its handing over
        for daysSupply, else that one day; no first day (partial or missing dates): no days.
        Then the distinct days of a rule's records, as islands of merged periods."""
        mine = cls.mine(rules)
        hits: dict[str, list[Any]] = {"rule": [], "k": [], "ingredient": [], "matched_by": [], "code": []}
        for n, rule in enumerate(mine):
            meds = rule.medications
            assert meds is not None
            seen: dict[tuple[Any, ...], tuple[str, str, str | None] | None] = {}
            for k, fact in t.facts_of(MEDICATION_TYPES):
                same = (fact.resource_type, fact.codings, fact.text)  # a source repeats these
                if same not in seen:
                    seen[same] = identify(fact, meds, t.known_medication_codes)
                if (hit := seen[same]) is not None:
                    for column, value in zip(hits, (n, k, *hit), strict=True):
                        hits[column].append(value)
        t.load("medication_hits", hits, {"rule": "INTEGER", "k": "INTEGER"})
        params = t.params((("first", "DATE"),), [(n, t.window(r.within_days)) for n, r in enumerate(mine)])
        as_of = f"CAST({t.as_of_text} AS DATE)"
        raw = (  # days of supply: an order's duration x (1 + repeats), or a dispense's daysSupply
            "CASE WHEN f.days_supply IS NOT NULL THEN f.days_supply WHEN f.supply_duration IS NOT NULL THEN "
            f"f.supply_duration * (1 + least(coalesce(f.repeats, 0), {MAX_SUPPLY_DAYS})) END"
        )
        # fractions round up; a longer supply runs past any as-of (least() passes over NULL: hence the CASE)
        whole = f"CASE WHEN ({raw}) IS NOT NULL THEN ceil(least({raw}, {MAX_SUPPLY_DAYS})) END"
        dispensed = f"f.status IS NULL OR f.status IN {sql_list(s for s in DISPENSED if s is not None)}"
        records = (
            "SELECT h.rule, f.patient, f.resource_type || '/' || f.resource_id AS resource, h.ingredient, "
            "h.matched_by, h.code, f.period_start, f.period_end, f.authored, f.status, "
            f"CASE WHEN f.period_start IS NOT NULL THEN {_day('f.period_start')} "
            f"ELSE {_day('coalesce(f.authored, f.handed_over)')} END AS s, "
            f"f.period_start IS NOT NULL AND f.period_end IS NOT NULL AND {_day('f.period_end')} IS NULL AS bad_end, "
            f"CASE WHEN {whole} >= 1 THEN {whole} END AS supply "
            "FROM facts AS f JOIN medication_hits AS h ON h.k = f.k "
            f"WHERE f.resource_type IN {sql_list(MEDICATION_TYPES)} "
            f"AND coalesce(f.status, '') NOT IN {sql_list(IGNORED_STATUSES)} "
            f"AND coalesce(f.intent, '') NOT IN {sql_list(IGNORED_INTENTS)} "
            f"AND (f.resource_type <> 'MedicationDispense' OR {dispensed})"
        )
        # the last day covered: a stated period's end (open: as-of); a supply's last day (one
        # lasting past as-of ends there); an active or on-hold order without either runs to
        # as-of; else the one day
        end = (
            f"least(CASE WHEN period_start IS NOT NULL THEN coalesce({_day('period_end')}, {as_of}) "
            f"WHEN supply IS NOT NULL THEN CASE WHEN supply - 1 >= {as_of} - s THEN {as_of} "
            "ELSE s + CAST(supply - 1 AS INTEGER) END "
            f"WHEN authored IS NOT NULL AND status IN {sql_list(ONGOING_ORDER_STATUSES)} THEN {as_of} "
            f"ELSE s END, {as_of})"
        )
        spans = (
            "SELECT r.rule, r.patient, r.resource, r.ingredient, r.matched_by, r.code, r.s, "
            "r.s IS NOT NULL AND NOT r.bad_end AS dated, "
            "CASE WHEN p.first IS NULL OR r.s > p.first THEN r.s ELSE p.first END AS cs, "
            f"{end} AS e FROM ({records}) AS r JOIN {params} AS p ON p.rule = r.rule"
        )
        # distinct days: the counted spans merged into islands (a gap of a day or more parts them)
        over = "OVER (PARTITION BY rule, patient ORDER BY cs, e"
        islands = (
            "SELECT rule, patient, cs, e, sum(CASE WHEN before IS NULL OR cs > before + 1 THEN 1 ELSE 0 END) "
            f"{over} ROWS UNBOUNDED PRECEDING) AS island FROM "
            f"(SELECT rule, patient, cs, e, max(e) {over} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) "
            "AS before FROM spans WHERE dated AND e >= cs)"
        )
        days = (
            "SELECT rule, patient, sum(last - first + 1) AS days FROM (SELECT rule, patient, island, "
            f"min(cs) AS first, max(e) AS last FROM ({islands}) GROUP BY rule, patient, island) "
            "GROUP BY rule, patient"
        )
        return (
            f"WITH spans AS ({spans}) SELECT s.rule, s.patient, s.dated, s.resource, s.code, s.s, s.ingredient, "
            f"s.matched_by, coalesce(d.days, 0) FROM spans AS s LEFT JOIN ({days}) AS d USING (rule, patient) "
            "WHERE NOT s.dated OR s.e >= s.cs ORDER BY s.rule, s.patient, s.s, s.resource"
        )

    def decide(self, rows: Sequence[tuple[Any, ...]]) -> Outcome:
        meds = self.medications
        assert meds is not None
        evidence = tuple(
            Evidence(resource, code=code, date=start.isoformat(), value=ingredient, matched_by=matched_by)
            for dated, resource, code, start, ingredient, matched_by, _ in rows
            if dated
        )
        undated = sorted(row[1] for row in rows if not row[0])
        days = int(rows[0][6]) if rows else 0
        within = self.within_days
        window = f" in the {within} days before as-of" if within is not None else " on or before as-of"
        notes = [f"{days} days covered by {meds.title}{window} (needs {self.min_days})"]
        if undated:
            notes.append(f"no countable dates on {', '.join(undated)}")
        return Outcome(Result.MET if days >= self.min_days else Result.NOT_MET, evidence, tuple(notes))


def _day(column: str) -> str:
    """A full date (YYYY-MM-DD) as a DATE; NULL for a partial or missing one, as
    date.fromisoformat refuses them."""
    return f"CASE WHEN length({column}) = 10 THEN TRY_CAST({column} AS DATE) END"
