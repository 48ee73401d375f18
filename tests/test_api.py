"""The Python API for notebooks: run, history and diff, each with to_pandas()."""

from __future__ import annotations

from pathlib import Path

import pytest

import cohort_finder
from cohort_finder.errors import SourceError

from .paths import CRITERIA, FIXTURES

TRIAL = CRITERIA / "nct07183761.yaml"


def test_run_in_memory_gives_one_row_per_patient_and_one_column_per_criterion() -> None:
    result = cohort_finder.run(TRIAL, FIXTURES / "fhir_bundles", as_of="2026-06-30")
    frame = result.to_pandas()
    assert frame.shape == (220, 3 + 32)  # status, age, gender, then alive and the 31 criteria
    assert list(frame.columns[:5]) == ["status", "age", "gender", "alive", "age_18_80"]
    assert frame.loc["age-18-today-met", "status"] == "candidate"
    assert frame.loc["age-81-today-not-met", "age_18_80"] == "not_met"
    assert result.errors == [] and len(result.patients) == 220


def test_run_with_an_out_folder_writes_records_and_compares(tmp_path: Path) -> None:
    first = cohort_finder.run(TRIAL, FIXTURES / "fhir_bundles", as_of="2026-06-29", out=tmp_path)
    second = cohort_finder.run(TRIAL, FIXTURES / "fhir_bundles", as_of="2026-06-30", out=tmp_path)
    assert (tmp_path / "candidates.json").exists() and first.summary is not None and second.summary is not None
    assert second.summary.changes_text == "since run 1: 11 new, 5 dropped, 13 changed"
    history = cohort_finder.history(tmp_path / "history.sqlite").to_pandas()
    assert list(history.index) == [1, 2] and list(history["state"]) == ["complete", "complete"]
    changes = cohort_finder.diff(tmp_path / "history.sqlite").to_pandas()
    assert len(changes) == 29 and set(changes["change"]) == {"new", "dropped", "changed"}  # 11 + 5 + 13
    dropped = changes[changes["id"] == "hba1c-dated-on-as-of-counts"].iloc[0]
    assert (dropped["from"], dropped["to"], dropped["criteria"]) == ("candidate", "excluded", "hba1c_over_12")


def test_errors_are_raised_never_exits(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="source not found"):
        cohort_finder.run(TRIAL, tmp_path / "nowhere", as_of="2026-06-30", out=tmp_path / "out")
    assert [r.state for r in cohort_finder.history(tmp_path / "out" / "history.sqlite").runs] == ["failed"]
