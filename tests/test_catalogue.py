"""Linking: references across files, duplicates, contained and referenced Medications, orphans."""

from __future__ import annotations

from typing import Any

from cohort_finder.catalogue import collect
from cohort_finder.sources.base import Item


def item(resource: dict[str, Any], origin: str = "f.json", full_url: str | None = None) -> Item:
    return Item(resource, origin, full_url)


def obs(oid: str, subject: str, value: float, updated: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": {"reference": subject},
        "valueQuantity": {"value": value, "unit": "%"},
    }
    if updated:
        res["meta"] = {"lastUpdated": updated}
    return res


def test_references_resolve_by_relative_absolute_and_urn() -> None:
    cat = collect(
        [
            item({"resourceType": "Patient", "id": "p1"}, full_url="urn:uuid:aaa"),
            item(obs("o1", "urn:uuid:aaa", 1)),
            item(obs("o2", "https://ehr.example.org/fhir/Patient/p1", 2)),
            item(obs("o3", "Patient/p1/_history/3", 3)),
        ]
    )
    by_patient, errors = cat.link()
    assert errors == []
    assert sorted(f.resource_id for f in by_patient["p1"]) == ["o1", "o2", "o3"]
    assert {f.patient_id for f in by_patient["p1"]} == {"p1"}


def test_same_resource_twice_later_last_updated_wins_else_last_read() -> None:
    cat = collect(
        [
            item({"resourceType": "Patient", "id": "p1"}),
            item(obs("o1", "Patient/p1", 1, "2026-01-02T00:00:00Z")),
            item(obs("o1", "Patient/p1", 2, "2026-01-01T23:00:00-02:00")),  # = 2026-01-02T01:00Z: later
            item(obs("o2", "Patient/p1", 1, "2026-01-02T00:00:00Z")),
            item(obs("o2", "Patient/p1", 2, "2026-01-01T00:00:00Z")),  # older: loses
            item(obs("o3", "Patient/p1", 1)),
            item(obs("o3", "Patient/p1", 2)),  # tie: read last wins
        ]
    )
    facts = {f.resource_id: f.value for f in cat.link()[0]["p1"]}
    assert facts == {"o1": 2, "o2": 1, "o3": 2}


def test_contained_and_referenced_medications_give_their_codes() -> None:
    rx = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "187832"}
    cat = collect(
        [
            item({"resourceType": "Patient", "id": "p1"}),
            item(
                {
                    "resourceType": "MedicationStatement",
                    "id": "s1",
                    "status": "active",
                    "subject": {"reference": "Patient/p1"},
                    "medicationReference": {"reference": "#m"},
                    "effectiveDateTime": "2026-01-01",
                    "contained": [{"resourceType": "Medication", "id": "m", "code": {"coding": [rx]}}],
                }
            ),
            item(
                {
                    "resourceType": "MedicationStatement",
                    "id": "s2",
                    "status": "active",
                    "subject": {"reference": "Patient/p1"},
                    "medicationReference": {"reference": "Medication/m2"},
                    "effectiveDateTime": "2026-01-01",
                },
                "a.json",
            ),
            item({"resourceType": "Medication", "id": "m2", "code": {"coding": [rx], "text": "pregabalin"}}, "b.json"),
        ]
    )
    by_patient, errors = cat.link()
    assert errors == []
    codes = {f.resource_id: [c.code for c in f.codings] for f in by_patient["p1"]}
    assert codes == {"s1": ["187832"], "s2": ["187832"]}


def test_orphans_and_missing_medications_are_errors_not_silence() -> None:
    cat = collect(
        [
            item({"resourceType": "Patient", "id": "p1"}),
            item(obs("o1", "Patient/ghost", 1), "obs.ndjson:7"),
            item({"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/ghost"}}, "enc.ndjson:2"),
            item(
                {
                    "resourceType": "MedicationRequest",
                    "id": "r1",
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": "Patient/p1"},
                    "medicationReference": {"reference": "Medication/none"},
                },
                "rx.json",
            ),
        ]
    )
    by_patient, errors = cat.link()
    assert by_patient == {"p1": []}
    assert [(e.source, e.patient_id) for e in errors] == [
        ("obs.ndjson:7", None),
        ("rx.json", "p1"),
        ("enc.ndjson:2", None),
    ]
    assert "Patient/ghost" in errors[0].message


def test_a_resource_whose_codes_cannot_be_read_is_an_error_naming_its_patient() -> None:
    bad = obs("o1", "Patient/p1", 1)
    bad["code"] = {"coding": {"system": "http://loinc.org", "code": "4548-4"}}  # an object, not a list
    cat = collect([item({"resourceType": "Patient", "id": "p1"}), item(bad, "o.json")])
    assert len(cat.errors) == 1
    error = cat.errors[0]
    assert (error.source, error.patient_id, error.resource_type) == ("o.json", "Patient/p1", "Observation")
    assert "code.coding must be a list" in error.message


def test_a_value_that_is_not_usable_stays_on_the_row_for_the_pipeline_to_judge() -> None:
    bad = obs("o1", "Patient/p1", 1)
    bad["valueQuantity"]["value"] = "13"
    bad["effectiveDateTime"] = "2026-13-45"
    cat = collect([item({"resourceType": "Patient", "id": "p1"}), item(bad, "o.json")])
    assert cat.errors == []
    (fact,) = cat.link()[0]["p1"]
    assert fact.problems == (
        "has an invalid date (effectiveDateTime '2026-13-45')",
        "is not usable (valueQuantity.value is '13', not a number)",
    )
    assert (fact.value, fact.effective) == (None, None)


def test_a_patient_with_an_invalid_birth_date_is_an_error_and_still_a_patient() -> None:
    cat = collect([item({"resourceType": "Patient", "id": "p1", "birthDate": "1960-02-30"}, "p.json")])
    assert [(e.source, e.message) for e in cat.errors] == [
        ("p.json", "Patient/p1 has an invalid date (birthDate '1960-02-30')")
    ]
    assert list(cat.patients) == ["p1"]
