"""The DuckDB engine hands kept rows to Python with their type's columns only
(schema.TYPE_COLUMNS): facts.py must read the same row from that projection as from the
resource with every declared column filled."""

from __future__ import annotations

from typing import Any

import pytest

from cohort_finder.engines.schema import CLINICAL, COLUMNS, TYPE_COLUMNS
from cohort_finder.facts import clinical_fact, contained_medication, medication_def, patient_fact
from cohort_finder.references import patient_reference

_CONCEPT = {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}], "text": "HbA1c"}
_QUANTITY = {"value": 8.1, "comparator": "<", "unit": "%", "code": "%"}
_PERIOD = {"start": "2026-01-02", "end": "2026-03-04"}

# A value of the declared shape for every column (so nothing is left out by accident)
_FILLED: dict[str, Any] = {
    "resourceType": None,  # set per type
    "id": "x1",
    "meta": {"lastUpdated": "2026-01-01T00:00:00Z"},
    "status": "final",
    "intent": "order",
    "subject": {"reference": "Patient/p1"},
    "patient": {"reference": "Patient/p2"},
    "code": _CONCEPT,
    "clinicalStatus": {"coding": [{"system": "s", "code": "active"}]},
    "verificationStatus": {"coding": [{"system": "s", "code": "confirmed"}]},
    "onsetDateTime": "2020-05-06",
    "onsetPeriod": _PERIOD,
    "onsetString": "childhood",
    "recordedDate": "2020-05-07",
    "abatementDateTime": "2025-01-01",
    "abatementPeriod": _PERIOD,
    "abatementString": "later",
    "abatementBoolean": True,
    "abatementAge": {"value": 40},
    "abatementRange": {"low": {"value": 1}},
    "effectiveDateTime": "2026-02-03T10:00:00Z",
    "effectivePeriod": _PERIOD,
    "issued": "2026-02-04T00:00:00Z",
    "valueQuantity": _QUANTITY,
    "valueCodeableConcept": _CONCEPT,
    "valueString": "high",
    "referenceRange": [{"high": {"value": 40, "unit": "U/L", "code": "U/L"}}],
    "performedDateTime": "2026-01-05",
    "performedPeriod": _PERIOD,
    "medicationCodeableConcept": _CONCEPT,
    "medicationReference": {"reference": "Medication/m1"},
    "authoredOn": "2026-01-06",
    "dispenseRequest": {
        "validityPeriod": _PERIOD,
        "expectedSupplyDuration": {"value": 30, "unit": "d", "code": "d"},
        "numberOfRepeatsAllowed": 2,
    },
    "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": _PERIOD}}}],
    "whenHandedOver": "2026-01-07",
    "whenPrepared": "2026-01-06",
    "daysSupply": {"value": 30, "unit": "days", "code": "d"},
    "contained": [{"resourceType": "Medication", "id": "c1", "code": _CONCEPT}],
    "gender": "female",
    "birthDate": "1960-01-01",
    "deceasedBoolean": False,
    "deceasedDateTime": "2030-01-01",
    "name": [{"given": ["Ann"], "family": "Example", "text": "Ann Example"}],
    "identifier": [
        {"value": "X-1"},
        {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "value": "M-7",
        },
    ],
}

_ABATEMENT = ("abatementDateTime", "abatementPeriod", "abatementString", "abatementBoolean", "abatementAge")
_ABATEMENT_ALL = (*_ABATEMENT, "abatementRange")

# Alternatives facts.py reads only when a preferred field is absent; each abatement[x] alone
_DROPS = [
    *(tuple(a for a in _ABATEMENT_ALL if a != kept) for kept in _ABATEMENT_ALL),
    (),
    ("valueQuantity",),
    ("valueQuantity", "valueCodeableConcept"),
    ("subject",),
    ("medicationReference",),
    ("onsetDateTime", "abatementDateTime", "effectiveDateTime", "performedDateTime"),
    ("effectiveDateTime", "effectivePeriod"),
    ("dispenseRequest",),  # an order's boundsPeriod
    ("dispenseRequest", "dosageInstruction"),  # authoredOn alone (an active order: to as-of)
    ("whenHandedOver",),  # a dispense's whenPrepared
    ("daysSupply",),
]


def test_the_filled_resource_declares_every_column() -> None:
    assert set(_FILLED) == set(COLUMNS)
    assert set(TYPE_COLUMNS) >= {*CLINICAL, "Patient", "Medication"}
    assert all(set(cols) <= set(COLUMNS) for cols in TYPE_COLUMNS.values())


@pytest.mark.parametrize("drop", _DROPS)
@pytest.mark.parametrize("rtype", [*CLINICAL, "Patient", "Medication"])
def test_facts_read_the_same_from_the_projection(rtype: str, drop: tuple[str, ...]) -> None:
    full = {**_FILLED, "resourceType": rtype}
    for key in drop:
        full[key] = None  # a SQL row: absent is null
    if rtype == "MedicationRequest" and "medicationReference" in drop:
        full["dispenseRequest"] = {**_FILLED["dispenseRequest"], "validityPeriod": None}  # supply days
    projected = {k: v for k, v in full.items() if k in TYPE_COLUMNS[rtype]}
    if rtype == "Patient":
        assert patient_fact(projected, "x1") == patient_fact(full, "x1")
    elif rtype == "Medication":
        assert medication_def(projected, "Medication/x1") == medication_def(full, "Medication/x1")
    else:
        assert patient_reference(projected) == patient_reference(full)
        assert clinical_fact(projected, rtype, "x1", "p1") == clinical_fact(full, rtype, "x1", "p1")
    if rtype in ("MedicationStatement", "MedicationRequest", "MedicationDispense"):
        # the catalogue resolves a `#id` medicationReference against `contained`
        assert contained_medication(projected, "#c1") == contained_medication(full, "#c1")
