"""The plan fitted to a server's CapabilityStatement: never send what it does not list
(docs/ehr-profiles.md), and never lose data by it (a search is widened, not dropped)."""

from __future__ import annotations

from typing import Any

from cohort_finder.search_plan import Search
from cohort_finder.sources.capability import GROUP, PATIENT, SYSTEM, capability_of, fit


def statement(*resources: dict[str, Any], operations: list[dict[str, str]] | None = None) -> dict[str, Any]:
    rest: dict[str, Any] = {"mode": "server", "resource": list(resources)}
    if operations is not None:
        rest["operation"] = operations
    return {"resourceType": "CapabilityStatement", "rest": [rest]}


def resource(rtype: str, params: list[str], includes: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": rtype, "searchParam": [{"name": p, "type": "token"} for p in params], **extra}
    if includes is not None:
        out["searchInclude"] = includes
    return out


PLAN = [
    Search("Patient", (("_count", "1000"),)),
    Search("Observation", (("code", "http://loinc.org|4548-4"), ("date", "ge2025-01-01"), ("_count", "1000"))),
    Search("Observation", (("code", "http://loinc.org|4548-4"), ("date:missing", "true"), ("_count", "1000"))),
    Search("Condition", (("code", "http://snomed.info/sct|44054006"), ("_count", "1000"))),
    Search("Condition", (("code", "http://snomed.info/sct|73211009"), ("_count", "1000"))),
    Search("MedicationStatement", (("_include", "MedicationStatement:medication"), ("_count", "1000"))),
    Search("MedicationRequest", (("_include", "MedicationRequest:medication"), ("_count", "1000"))),
]


def test_export_levels_by_operation_name_and_definition() -> None:
    epic = capability_of(statement(resource("Group", ["_id"], operation=[{"name": "group-export"}])))
    assert epic.exports == {GROUP}
    sekmet = capability_of(
        statement(
            resource("Patient", ["_id"], operation=[{"name": "export", "definition": ".../Patient-export"}]),
            resource("Group", ["_id"], operation=[{"name": "export", "definition": ".../Group-export"}]),
            operations=[{"name": "export", "definition": "http://hl7.org/fhir/OperationDefinition/export"}],
        )
    )
    assert sekmet.exports == {SYSTEM, PATIENT, GROUP}
    by_ig_name = capability_of(statement(operations=[{"name": "patient-export"}]))
    assert by_ig_name.exports == {PATIENT}
    assert capability_of(statement(resource("Patient", ["_id"]))).exports == frozenset()


def test_a_type_the_server_lacks_is_named_and_not_searched() -> None:
    oracle = capability_of(
        statement(
            resource("Patient", ["_id"]),
            resource("Observation", ["patient", "code", "date"]),
            resource("Condition", ["patient", "code"]),
            resource("MedicationRequest", ["patient"], ["MedicationRequest:medication"]),
        )
    )
    fitted = fit(PLAN, oracle)
    assert fitted.lacks == ("Medication", "MedicationStatement")  # what records reference, too
    assert {s.resource_type for s in fitted.searches} == {"Patient", "Observation", "Condition", "MedicationRequest"}
    assert not fitted.without_include


def test_a_parameter_not_listed_is_left_out_and_the_search_widened_once() -> None:
    no_code = capability_of(
        statement(
            resource("Patient", ["_id"]),
            resource("Observation", ["patient", "code"]),  # no `date`
            resource("Condition", ["patient"]),  # no `code` (Oracle Health)
            resource("MedicationStatement", ["patient"], ["MedicationStatement:medication"]),
            resource("MedicationRequest", ["patient"], []),  # lists no _include
            resource("Medication", ["_id"]),
        )
    )
    fitted = fit(PLAN, no_code)
    by_type: dict[str, list[Search]] = {}
    for search in fitted.searches:
        by_type.setdefault(search.resource_type, []).append(search)
    # the two dated Observation searches are one search by code; the two Condition searches one, by patient only
    assert by_type["Observation"] == [Search("Observation", (("code", "http://loinc.org|4548-4"), ("_count", "1000")))]
    assert by_type["Condition"] == [Search("Condition", (("_count", "1000"),))]
    assert by_type["MedicationStatement"] == [PLAN[5]]
    assert by_type["MedicationRequest"] == [Search("MedicationRequest", (("_count", "1000"),))]
    assert fitted.without_include  # so the Medications are read by id afterwards


def test_a_statement_that_could_not_be_read_constrains_nothing() -> None:
    unknown = capability_of({"resourceType": "CapabilityStatement"})
    assert not unknown.known
    fitted = fit(PLAN, unknown)
    assert fitted.searches == PLAN and fitted.lacks == () and not fitted.without_include


def test_a_type_whose_statement_lists_no_parameters_is_searched_as_planned() -> None:
    silent = capability_of(statement({"type": "Patient"}, {"type": "Observation"}, {"type": "Condition"}))
    fitted = fit([s for s in PLAN if s.resource_type in ("Patient", "Observation", "Condition")], silent)
    assert len(fitted.searches) == 5


def test_the_patient_parameter_falls_back_to_subject() -> None:
    cap = capability_of(statement(resource("Observation", ["subject", "code"]), resource("Condition", ["patient"])))
    assert cap.patient_param("Observation") == "subject"
    assert cap.patient_param("Condition") == "patient"
    assert cap.patient_param("Patient") == "_id"
