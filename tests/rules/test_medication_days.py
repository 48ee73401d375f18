"""Days covered, by the medication rule's query: the union of periods (overlaps once, gaps
allowed), and the period each order and dispense gives (contract §3)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import pytest

from cohort_finder.criteria import load_trial
from cohort_finder.evaluate.plan import decide_by_query
from cohort_finder.facts import clinical_fact
from cohort_finder.rules import leaves
from cohort_finder.rules.medication_days import MedicationDaysRule
from cohort_finder.rules.table import FactTable

from ..paths import CRITERIA

PREGABALIN = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "483438"}]}
MR, MD, MS = "MedicationRequest", "MedicationDispense", "MedicationStatement"


def d(text: str) -> date:
    return date.fromisoformat(text)


AS_OF = d("2026-06-30")


@cache
def _rule() -> tuple[MedicationDaysRule, frozenset[tuple[str, str]]]:
    """The first trial's medication set, in a rule with no window (a window would clip starts)."""
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    rule = next(r for c in trial.criteria if c.rule for r in leaves(c.rule) if isinstance(r, MedicationDaysRule))
    return MedicationDaysRule(0, (), rule.medications, 1, None), trial.terminology.known_medication_codes


def _covered(*resources: dict[str, object]) -> tuple[int, list[str], list[str]]:
    """(days covered, the counted records' first days, the records without countable dates), as
    the rule's query decides them for one patient."""
    rule, known = _rule()
    facts = [
        ("p", clinical_fact({"medicationCodeableConcept": PREGABALIN, **r}, str(r["resourceType"]), f"x{n}", "p"))
        for n, r in enumerate(resources)
    ]
    table = FactTable(facts, AS_OF, known_medication_codes=known)
    outcome = decide_by_query(table, {MedicationDaysRule: [rule]})[id(rule)].get("p") or rule.decide(())
    table.close()
    days = int(outcome.notes[0].split()[0])
    undated = outcome.notes[1].removeprefix("no countable dates on ").split(", ") if len(outcome.notes) > 1 else []
    return days, [e.date or "" for e in outcome.evidence], undated


def _statement(start: str, end: str) -> dict[str, object]:
    return {"resourceType": MS, "status": "completed", "effectivePeriod": {"start": start, "end": end}}


@pytest.mark.parametrize(
    ("periods", "days"),
    [
        ([], 0),
        ([("2026-01-01", "2026-01-01")], 1),
        ([("2026-01-01", "2026-03-31")], 90),
        ([("2026-01-01", "2026-01-10"), ("2026-01-05", "2026-01-15")], 15),  # overlap counted once
        ([("2026-01-01", "2026-01-31"), ("2026-01-10", "2026-01-20")], 31),  # nested
        ([("2026-01-01", "2026-01-10"), ("2026-02-01", "2026-02-10")], 20),  # gap allowed
        ([("2026-01-01", "2026-01-10"), ("2026-01-11", "2026-01-20")], 20),  # adjacent
        ([("2026-02-01", "2026-02-10"), ("2026-01-01", "2026-01-10")], 20),  # any order
        ([("2026-01-01", "2026-01-10"), ("2026-01-03", "2026-01-04"), ("2026-01-09", "2026-01-12")], 12),  # chained
        ([("2026-06-01", "2026-12-31")], 30),  # ends at as-of
    ],
)
def test_covered_days(periods: list[tuple[str, str]], days: int) -> None:
    assert _covered(*(_statement(a, b) for a, b in periods))[0] == days


# The periods facts.py gives orders and dispenses (contract §3, revised 2026-11-29), read the
# way medication_days reads them; the fixtures cover each on both sides of 90 days.


def _span(resource: dict[str, object]) -> tuple[date, date] | None:
    """A record's first and last day as the rule counts them: its first day is the evidence's
    date, its days run from there (None: no countable dates)."""
    days, starts, undated = _covered({"subject": {"reference": "Patient/p"}, **resource})
    if undated:
        return None
    (start,) = starts
    return d(start), d(start) + timedelta(days=days - 1)


BOUNDS = [{"text": "no timing"}, {"timing": {"repeat": {"boundsPeriod": {"start": "2026-02-01"}}}}]


@pytest.mark.parametrize(
    ("resource", "span"),
    [
        ({"resourceType": MR, "status": "active", "authoredOn": "2026-04-02"}, ("2026-04-02", "2026-06-30")),
        ({"resourceType": MR, "status": "on-hold", "authoredOn": "2026-04-02"}, ("2026-04-02", "2026-06-30")),
        ({"resourceType": MR, "status": "stopped", "authoredOn": "2026-04-02"}, ("2026-04-02", "2026-04-02")),
        (  # 10 days x (1 + 2 repeats) from authoredOn: 30 days, its last day just inside as-of ...
            {
                "resourceType": MR,
                "status": "completed",
                "authoredOn": "2026-06-01",
                "dispenseRequest": {"numberOfRepeatsAllowed": 2, "expectedSupplyDuration": {"value": 10, "code": "d"}},
            },
            ("2026-06-01", "2026-06-30"),
        ),
        (  # ... and with 1 repeat, 20 days: it ends before as-of
            {
                "resourceType": MR,
                "status": "completed",
                "authoredOn": "2026-06-01",
                "dispenseRequest": {"numberOfRepeatsAllowed": 1, "expectedSupplyDuration": {"value": 10, "code": "d"}},
            },
            ("2026-06-01", "2026-06-20"),
        ),
        (  # half a day rounds up to one, and an active order with a supply ends with it
            {
                "resourceType": MR,
                "status": "active",
                "authoredOn": "2026-06-01",
                "dispenseRequest": {"expectedSupplyDuration": {"value": 0.5, "code": "d"}},
            },
            ("2026-06-01", "2026-06-01"),
        ),
        ({"resourceType": MR, "status": "active", "authoredOn": "2026-04"}, None),  # a partial date: no days
        (
            {"resourceType": MR, "status": "completed", "authoredOn": "2026-01-01", "dosageInstruction": BOUNDS},
            ("2026-02-01", "2026-06-30"),
        ),
        (
            {"resourceType": MD, "whenHandedOver": "2026-06-01", "daysSupply": {"value": 2, "code": "wk"}},
            ("2026-06-01", "2026-06-14"),
        ),
        ({"resourceType": MD, "whenHandedOver": "2026-06-01"}, ("2026-06-01", "2026-06-01")),
        (
            {"resourceType": MD, "whenPrepared": "2026-06-20", "daysSupply": {"value": 30, "unit": "days"}},
            ("2026-06-20", "2026-06-30"),
        ),
        ({"resourceType": MD, "daysSupply": {"value": 30, "code": "d"}}, None),  # no date: no days
    ],
)
def test_orders_and_dispenses_give_their_periods(resource: dict[str, object], span: tuple[str, str] | None) -> None:
    assert _span(resource) == (None if span is None else (d(span[0]), d(span[1])))


def _dispense(pid: str, status: str | None, days: int) -> dict[str, object]:
    res: dict[str, object] = {"resourceType": MD, "id": f"{pid}-d", "medicationCodeableConcept": PREGABALIN,
                              "subject": {"reference": f"Patient/{pid}"}, "whenHandedOver": "2026-04-02",
                              "daysSupply": {"value": days, "unit": "days", "code": "d"}}  # fmt: skip
    if status is not None:
        res["status"] = status
    return res


def test_dispense_and_order_statuses_each_side(tmp_path: Path) -> None:
    """A dispense counts when completed or without a status (R4 requires one; some exports drop
    it), never when declined; a declined order never counts (contract §3)."""
    from cohort_finder import api

    records = {
        "none-90": _dispense("none-90", None, 90),  # just inside: 2026-04-02..06-30
        "none-89": _dispense("none-89", None, 89),  # just outside
        "completed-90": _dispense("completed-90", "completed", 90),
        "declined-90": _dispense("declined-90", "declined", 90),
        "order-declined": {"resourceType": MR, "id": "o", "status": "declined", "intent": "order",
                           "medicationCodeableConcept": PREGABALIN, "subject": {"reference": "Patient/order-declined"},
                           "authoredOn": "2026-01-01",
                           "dispenseRequest": {"validityPeriod": {"start": "2026-01-01", "end": "2026-06-30"}}},
    }  # fmt: skip
    lines = [{"resourceType": "Patient", "id": pid, "birthDate": "1960-01-01"} for pid in records]
    (tmp_path / "data.ndjson").write_text("\n".join(json.dumps(r) for r in [*lines, *records.values()]) + "\n")
    results = api.run(CRITERIA / "nct07183761.yaml", tmp_path, as_of="2026-06-30")
    got = {
        p["id"]: next(c["result"] for c in p["criteria"] if c["id"] == "conventional_therapy_3_months")
        for p in results.patients
    }
    assert got == {
        "none-90": "met",
        "none-89": "unknown",  # fewer than 90 days: the treatment may be recorded elsewhere
        "completed-90": "met",
        "declined-90": "unknown",
        "order-declined": "unknown",
    }
