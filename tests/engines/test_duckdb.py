"""The DuckDB engine on odd inputs: the same errors and results as the python engine, with the
orphan check's extra scan run only when some reference needs it."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import pytest

from cohort_finder.criteria import load_trial
from cohort_finder.engines import PythonEngine
from cohort_finder.engines.duckdb import DuckDBEngine
from cohort_finder.pipeline import evaluate_source
from cohort_finder.sources.files import FileSource

from ..paths import CRITERIA
from .odd_inputs import obs, odd_folder

AS_OF = date(2026, 6, 30)


def _both(folder: Path, engine: DuckDBEngine) -> None:
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    expected = evaluate_source(trial, FileSource(folder), AS_OF, "t", PythonEngine())
    got = evaluate_source(trial, FileSource(folder), AS_OF, "t", engine)
    assert got.errors == expected.errors
    assert dataclasses.replace(got, generated_at="") == dataclasses.replace(expected, generated_at="")


def test_odd_inputs_give_what_the_python_engine_gives(tmp_path: Path) -> None:
    folder = odd_folder(tmp_path)
    _both(folder, DuckDBEngine())


def test_orphans_in_rows_the_trial_does_not_use_are_still_reported(tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
    (tmp_path / "Patient.ndjson").write_text(json.dumps(patient) + "\n")
    lines = [obs("o1", "Patient/p1"), obs("o2", "Patient/ghost", code="0000-0")]
    (tmp_path / "Observation.ndjson").write_text("".join(json.dumps(r) + "\n" for r in lines))
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    got = evaluate_source(trial, FileSource(tmp_path), AS_OF, "t", DuckDBEngine())
    assert [e.message for e in got.errors] == [
        "Observation/o2 references Patient/ghost, which is not a Patient in the source"
    ]


def test_no_extra_scan_when_every_reference_is_a_known_patient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
    (tmp_path / "Patient.ndjson").write_text(json.dumps(patient) + "\n")
    lines = [obs("o1", "Patient/p1"), obs("o2", "Patient/p1", code="0000-0")]
    (tmp_path / "Observation.ndjson").write_text("".join(json.dumps(r) + "\n" for r in lines))

    def no_scan(*_: object) -> None:
        raise AssertionError("the orphan scan ran although every reference is a known patient")

    monkeypatch.setattr(DuckDBEngine, "_orphans", no_scan)
    _both(tmp_path, DuckDBEngine())
