"""Hostile input never crashes a run (contract §4): malformed files and lines beside valid
patients (fixtures/build_hostile_input.py, expectations stated by hand there) are each an
error of their place, or read as the project's decisions say, and every patient appears."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from .e2e import Run, run_trial
from .paths import CRITERIA, FIXTURES, ROOT, SCHEMA

EXPECTED: dict[str, Any] = json.loads((ROOT / "tests" / "expected" / "hostile_input.json").read_text())


@pytest.fixture(scope="module", params=["python", "duckdb"])
def hostile(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_trial(
        CRITERIA / "nct07183761.yaml",
        FIXTURES / "hostile_input",
        tmp_path_factory.mktemp(f"hostile-{request.param}"),
        EXPECTED["as_of"],
        "--engine",
        request.param,
    )


def test_exit_1_with_every_error_at_its_place_naming_its_patient(hostile: Run) -> None:
    assert hostile.exit_code == EXPECTED["exit_status"], hostile.stderr
    assert "Traceback" not in hostile.stderr
    doc = hostile.document
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    got = {e["source"]: e["message"] for e in doc["errors"]}
    assert sorted(got) == [e["source"] for e in EXPECTED["errors"]]
    for error in EXPECTED["errors"]:
        message = got[error["source"]]
        assert error["says"] in message, (error, message)
        if error["patient"]:
            assert f"Patient/{error['patient']}" in message, (error, message)


def test_every_patient_has_the_hand_stated_results(hostile: Run) -> None:
    doc = hostile.document
    assert [p["id"] for p in doc["patients"]] == sorted(EXPECTED["patients"])
    for pid, expected in EXPECTED["patients"].items():
        patient = hostile.patient(pid)
        assert {c["id"]: c["result"] for c in patient["criteria"]} == expected["criteria"], (pid, expected["shows"])
        assert patient["status"] == expected["status"], pid


def test_an_invalid_date_says_so_instead_of_none_found(hostile: Run) -> None:
    hba1c = next(c for c in hostile.patient("hostile-hba1c-dated-2026-13-45")["criteria"] if c["id"] == "hba1c_over_12")
    assert hba1c["note"] == (
        "Observation/hostile-hba1c-dated-2026-13-45-hba1c has an invalid date (effectiveDateTime '2026-13-45')"
    )
    born = next(c for c in hostile.patient("hostile-born-30-february")["criteria"] if c["id"] == "age_18_80")
    assert born["note"] == "birthDate '1966-02-30' is not a valid date"
