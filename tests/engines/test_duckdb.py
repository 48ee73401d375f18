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


def test_an_unkept_row_whose_reference_is_a_bare_unknown_id_is_an_orphan(tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
    (tmp_path / "Patient.ndjson").write_text(json.dumps(patient) + "\n")
    lines = [obs("o1", "Patient/p1"), obs("o2", "y", code="0000-0"), obs("o3", "p1", code="0000-0")]
    (tmp_path / "Observation.ndjson").write_text("".join(json.dumps(r) + "\n" for r in lines))
    _both(tmp_path, DuckDBEngine())  # as the python engine, which reads every row, reports it
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    got = evaluate_source(trial, FileSource(tmp_path), AS_OF, "t", DuckDBEngine())
    assert [e.message for e in got.errors] == [
        "Observation/o2 references Patient/y, which is not a Patient in the source"
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


def test_a_bundle_on_a_line_or_a_line_without_type_sends_the_file_to_the_python_reader(tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": obs("o1", "Patient/p1")}]}
    typeless = {k: v for k, v in obs("o2", "Patient/p1").items() if k != "resourceType"}
    (tmp_path / "mixed.ndjson").write_text("".join(json.dumps(r) + "\n" for r in (patient, bundle, typeless)))
    (tmp_path / "more.ndjson").write_text(json.dumps(obs("o3", "Patient/p1", value=13.5)) + "\n")
    _both(tmp_path, DuckDBEngine())
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    got = evaluate_source(trial, FileSource(tmp_path), AS_OF, "t", DuckDBEngine())
    assert [e.source for e in got.errors] == ["mixed.ndjson:3"]  # the line without a type, named
    hba1c = next(c for c in got.patients[0].criteria if c.id == "hba1c_over_12")
    assert hba1c.evidence[0].resource in ("Observation/o1", "Observation/o3")
