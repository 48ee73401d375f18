"""Days covered: the union of periods, overlaps once, gaps allowed."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from cohort_finder.rules.medication_days import covered_days

from ..paths import CRITERIA


def d(text: str) -> date:
    return date.fromisoformat(text)


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
    ],
)
def test_covered_days(periods: list[tuple[str, str]], days: int) -> None:
    assert covered_days([(d(a), d(b)) for a, b in periods]) == days


# The periods facts.py gives orders and dispenses (contract §3, revised 2026-11-29), read the
# way medication_days reads them; the fixtures cover each on both sides of 90 days.
AS_OF = d("2026-06-30")


def _span(resource: dict[str, object]) -> tuple[date, date] | None:
    from cohort_finder.facts import clinical_fact
    from cohort_finder.rules.medication_days import record_period

    fact = clinical_fact({"subject": {"reference": "Patient/p"}, **resource}, str(resource["resourceType"]), "x", "p")
    return record_period(fact, AS_OF)


MR, MD = "MedicationRequest", "MedicationDispense"
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


PREGABALIN = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "483438"}]}


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
