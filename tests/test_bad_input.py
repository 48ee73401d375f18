"""Nothing is lost (contract §4): broken files and lines are listed with where they came from,
the run goes on, every patient still appears, and what depended on the lost data is unknown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from .e2e import Run, run_trial
from .paths import CRITERIA, FIXTURES, ROOT, SCHEMA

EXPECTED: dict[str, Any] = json.loads((ROOT / "tests" / "expected" / "bad_input.json").read_text())


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_trial(
        CRITERIA / "nct07183761.yaml", FIXTURES / "bad_input", tmp_path_factory.mktemp("bad"), EXPECTED["as_of"]
    )


def test_exit_1_and_every_error_listed_with_its_place(bad: Run) -> None:
    assert bad.exit_code == EXPECTED["exit_status"] == 1, bad.stderr
    doc = bad.document
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    assert sorted(e["source"] for e in doc["errors"]) == sorted(e["source"] for e in EXPECTED["errors"])
    assert doc["summary"]["errors"] == len(EXPECTED["errors"])
    by_source = {e["source"]: e["message"] for e in doc["errors"]}
    for error in EXPECTED["errors"]:
        if error["patient"]:  # the patient whose data it held is named
            assert f"Patient/{error['patient']}" in by_source[error["source"]], error


def test_every_patient_still_appears_with_hand_stated_results(bad: Run) -> None:
    doc = bad.document
    assert [p["id"] for p in doc["patients"]] == sorted(EXPECTED["patients"])
    for pid, expected in EXPECTED["patients"].items():
        patient = bad.patient(pid)
        got = {c["id"]: c["result"] for c in patient["criteria"]}
        assert got == expected["criteria"], (pid, expected["shows"])
        assert patient["status"] == expected["status"], pid


def test_the_log_never_shows_record_text(bad: Run) -> None:
    patients = [line for line in (FIXTURES / "bad_input" / "Patient.ndjson").read_text().splitlines() if line]
    names = [n.get("family") for p in map(json.loads, patients) for n in p.get("name", []) if n.get("family")]
    assert names and not any(name in bad.stderr for name in names)


def test_a_report_still_renders_when_errors_exist(bad: Run) -> None:
    html = (bad.out / "report.html").read_text()
    assert "Errors" in html and "Observation.ndjson:11" in html
    assert Path(bad.out / "candidates.csv").read_text().count("\n") == len(EXPECTED["patients"]) + 1
