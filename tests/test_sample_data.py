"""The command on the public synthetic samples (tests/samples.py), against facts checked by hand.

The facts below were read off the files with a few lines of plain Python, not with this
project's code: which patients carry type 2 diabetes (SNOMED 44054006) and diabetic neuropathy
(368581000119106), who is deceased, and the latest HbA1c values.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from . import samples
from .e2e import Run, run_trial
from .paths import CRITERIA, SCHEMA
from .samples import SYNTHEA, SYNTHEA_PATIENTS

T2D_AND_NEUROPATHY = {
    # id: (deceased, latest HbA1c % and date within 365 days of 2021-04-17, or None)
    "186ff984-f437-4817-8d35-0997a8b7f405": (False, (7.0, "2020-09-27")),
    "5f6d256f-fc32-4b10-ba9c-51aba830cfa4": (True, None),
    "71304c2e-64b0-4b57-91f6-2c1ff771d72c": (False, (5.9, "2020-11-05")),
    "d483a480-4a42-428c-bf9b-fdbaddf78e21": (False, (7.0, "2021-03-15")),
    "ecaea95c-46de-4ac9-a58d-4847d1a3e574": (True, None),
}


@pytest.fixture(scope="module")
def synthea(tmp_path_factory: pytest.TempPathFactory) -> Run:
    source = SYNTHEA
    return run_trial(
        CRITERIA / "nct07183761.yaml",
        source,
        tmp_path_factory.mktemp("synthea"),
        "2021-04-17",
        "--ignore",
        "SOURCE_MANIFEST.json",  # the folder's provenance note, not FHIR
    )


@pytest.fixture(scope="module")
def carebundle(tmp_path_factory: pytest.TempPathFactory) -> Run:
    source = samples.carebundle()
    return run_trial(CRITERIA / "nct07183761.yaml", source, tmp_path_factory.mktemp("carebundle"), "2026-01-01")


def _schema() -> dict[str, object]:
    return json.loads(SCHEMA.read_text())  # type: ignore[no-any-return]


def _patient_ids_in(source: Path) -> list[str]:
    ids = []
    for path in source.glob("*.json"):
        data = json.loads(path.read_text())
        ids += [e["resource"]["id"] for e in data.get("entry", []) if e["resource"]["resourceType"] == "Patient"]
    for path in source.glob("Patient.ndjson"):
        ids += [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]
    return sorted(ids)


def test_synthea_runs_cleanly_and_every_patient_appears_once(synthea: Run) -> None:
    assert synthea.exit_code == 0, synthea.stderr
    doc = synthea.document
    jsonschema.validate(doc, _schema())
    ids = [p["id"] for p in doc["patients"]]
    assert ids == _patient_ids_in(SYNTHEA)
    assert len(ids) == SYNTHEA_PATIENTS and doc["summary"]["patients"] == SYNTHEA_PATIENTS
    assert doc["errors"] == []
    assert "ignored 1 files matching --ignore" in synthea.stderr


def test_a_json_file_that_is_not_fhir_is_an_error_unless_ignored(tmp_path: Path) -> None:
    run = run_trial(CRITERIA / "nct07183761.yaml", SYNTHEA, tmp_path, "2021-04-17")
    assert run.exit_code == 1, run.stderr
    assert run.document["errors"] == [
        {"source": "SOURCE_MANIFEST.json", "message": "not a FHIR resource (no resourceType)"}
    ]
    assert len(run.document["patients"]) == SYNTHEA_PATIENTS


def test_synthea_t2d_with_neuropathy_meet_both_criteria(synthea: Run) -> None:
    for pid, (deceased, hba1c) in T2D_AND_NEUROPATHY.items():
        results = {c["id"]: c for c in synthea.patient(pid)["criteria"]}
        assert results["type2_diabetes"]["result"] == "met", pid
        assert results["diabetic_peripheral_neuropathy"]["result"] == "met", pid
        assert (
            results["diabetic_peripheral_neuropathy"]["evidence"][0]["code"] == "http://snomed.info/sct|368581000119106"
        )
        assert (results["alive"]["result"] == "not_met") is deceased
        if hba1c is not None:
            evidence = results["hba1c_over_12"]["evidence"][0]
            assert results["hba1c_over_12"]["result"] == "not_met"
            assert (round(evidence["value"], 1), evidence["date"]) == hba1c
            assert evidence["code"] == "http://loinc.org|4548-4"
    others = [p for p in synthea.document["patients"] if p["id"] not in T2D_AND_NEUROPATHY]
    for patient in others:
        dpn = next(c for c in patient["criteria"] if c["id"] == "diabetic_peripheral_neuropathy")
        assert dpn["result"] == "not_met", patient["id"]


def test_synthea_has_no_dpn_drugs_so_conventional_therapy_is_unknown_not_not_met(synthea: Run) -> None:
    for patient in synthea.document["patients"]:
        therapy = next(c for c in patient["criteria"] if c["id"] == "conventional_therapy_3_months")
        assert therapy["result"] == "unknown"


def test_carebundle_runs_cleanly_with_its_icd10_and_egfr_codes(carebundle: Run) -> None:
    assert carebundle.exit_code == 0, carebundle.stderr
    doc = carebundle.document
    jsonschema.validate(doc, _schema())
    assert [p["id"] for p in doc["patients"]] == _patient_ids_in(samples.carebundle())
    assert len(doc["patients"]) == 100
    diabetic = [
        p for p in doc["patients"] if next(c for c in p["criteria"] if c["id"] == "type2_diabetes")["result"] == "met"
    ]
    # 19 patients hold an active E11.x Condition (E11.9, E11.65, E11.22), counted by hand
    assert len(diabetic) == 19
    for patient in diabetic:
        t2d = next(c for c in patient["criteria"] if c["id"] == "type2_diabetes")
        assert t2d["evidence"][0]["code"].startswith("http://hl7.org/fhir/sid/icd-10-cm|E11")
    egfr = [c for p in doc["patients"] for c in p["criteria"] if c["id"] == "egfr_under_30" and c["evidence"]]
    assert egfr and {c["evidence"][0]["code"] for c in egfr} == {"http://loinc.org|98979-8"}
    assert {c["evidence"][0]["date"] for c in egfr} == {"2026-01-01"}
