"""A folder of odd NDJSON inputs every engine must read as the python engine does: references
in every form, orphans in kept and unkept rows, a field of the wrong type, an unknown urn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _lines(path: Path, *resources: dict[str, Any] | str) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in resources))


def obs(rid: str, ref: str, code: str = "4548-4", value: Any = 8.1) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": ref},
        "effectiveDateTime": "2026-05-01",
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }


def odd_folder(tmp_path: Path) -> Path:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
    _lines(tmp_path / "Patient.ndjson", patient, {**patient, "id": "p2"})
    _lines(
        tmp_path / "Observation.ndjson",
        obs("o1", "http://x.org/fhir/Patient/p1/_history/2"),
        obs("o2", "Patient/ghost"),  # kept, orphan
        obs("o3", "Patient/ghost", code="0000-0"),  # not kept, orphan all the same
        obs("o4", "Group/1"),
        obs("o5", "Patient/p2", value=13.5),
    )
    _lines(
        tmp_path / "Encounter.ndjson",
        {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/nobody"}},
    )
    _lines(tmp_path / "wrong-type.ndjson", obs("o6", "Patient/p1", value="high"))  # the Python reader names it
    # Not here: a line without resourceType, or a Bundle on a line, that the reduce does not keep
    # goes unnoticed by both SQL engines (schema.reduce_sql keeps neither, so neither is seen).
    _lines(tmp_path / "urn.ndjson", obs("o8", "urn:uuid:nowhere"))
    return tmp_path
