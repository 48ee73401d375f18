"""Patients evaluated and rendered by forked workers give the very bytes one process gives,
batch boundaries and the compact report included."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
from datetime import date
from pathlib import Path

import pytest

from cohort_finder import workers
from cohort_finder.criteria import load_trial
from cohort_finder.engines import PythonEngine
from cohort_finder.errors import WorkerError
from cohort_finder.pipeline import run
from cohort_finder.sources.files import FileSource

from .paths import CRITERIA, FIXTURES, ROOT

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")

AS_OF = date(2026, 6, 30)
# the hand-written expectations of the fixture builder: how many patients, how many excluded
_HAND = json.loads((ROOT / "tests" / "expected" / "nct07183761_fixtures.json").read_text(encoding="utf-8"))
PATIENTS = len(_HAND["patients"])
EXCLUDED = sum(1 for p in _HAND["patients"].values() if p["status"] == "excluded")
_STAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _outputs(out: Path, count: int) -> dict[str, bytes]:
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    summary = run(trial, FileSource(FIXTURES / "fhir_bundles"), AS_OF, out, "fixtures", PythonEngine(), count)
    assert summary.patients == PATIENTS
    return {p.name: _STAMP.sub(b"<generated>", p.read_bytes()) for p in summary.outputs}


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "MIN_PATIENTS", 0)
    monkeypatch.setattr(workers, "BATCH", 40)  # the ~200 fixture patients: five or more batches


def test_forked_workers_write_what_one_process_writes(small_batches: None, tmp_path: Path) -> None:
    one = _outputs(tmp_path / "one", 1)
    two = _outputs(tmp_path / "two", 2)
    assert one == two
    assert one["candidates.json"].count(b'\n    {"id":') == PATIENTS + len(_HAND["criteria"])  # a line each


def test_workers_render_each_excluded_patient_as_one_line_and_the_same_report(
    small_batches: None, tmp_path: Path
) -> None:
    html = _outputs(tmp_path / "two", 2)["report.html"].decode()
    excluded = html[html.index('<section id="excluded">') : html.index('<section id="errors">')]
    assert excluded.count("<li>") == EXCLUDED  # every excluded fixture patient, once
    assert "<details" not in excluded
    assert _outputs(tmp_path / "one", 1)["report.html"].decode() == html


def test_a_failure_in_a_worker_fails_the_run_and_writes_nothing(
    small_batches: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("rule bug")

    monkeypatch.setattr("cohort_finder.pipeline.evaluate_patients", broken)
    with pytest.raises(RuntimeError, match="rule bug"):
        _outputs(tmp_path / "out", 2)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_worker_that_dies_stops_the_run_with_an_error(
    small_batches: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(*_: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would

    monkeypatch.setattr("cohort_finder.pipeline.evaluate_patients", killed)
    with pytest.raises(WorkerError, match="worker process died"):
        _outputs(tmp_path / "out", 2)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
