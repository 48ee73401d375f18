"""The nightly Bulk job against the real FHIR test server (contract §7): the second run asks
only for what changed since the first export (`_since`), the resource changed on the server in
between is the only one that comes back, it is merged into the cache, and the run's diff shows
what it changed. A server of its own: the shared one must not change under other tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..e2e import Run, cohort_finder
from ..fhir_server import FhirServer, load_folder, session
from ..paths import CRITERIA, FIXTURES
from .conftest import require_sekmet

TRIAL = CRITERIA / "nct03036150.yaml"
AS_OF = "2026-06-30"
# an eGFR of 75 (in range) for a clean DAPA-CKD candidate; 20 on the server makes it excluded
OBSERVATION = "k01-candidate-egfr"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    require_sekmet()
    with FhirServer() as running:
        load_folder(running.base, FIXTURES / "nct03036150")
        yield running.base


def _run(base: str, tmp: Path, *extra: str) -> Run:
    done = cohort_finder(
        "run", "--criteria", str(TRIAL), "--source", base, "--bulk", "--cache", str(tmp / "cache"),
        "--out", str(tmp / "out"), "--as-of", AS_OF, *extra,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr, tmp / "out")


def _history(tmp: Path) -> list[dict[str, object]]:
    done = cohort_finder("history", "--store", str(tmp / "out" / "history.sqlite"), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_second_night_asks_only_for_what_changed(server: str, tmp_path: Path) -> None:
    first = _run(server, tmp_path)
    assert first.exit_code == 0, first.stderr
    assert "changes since" not in first.stderr and "bulk export (full)" in first.stderr
    assert first.patient("k01-candidate")["status"] == "candidate"

    with session() as http:
        url = f"{server}/Observation/{OBSERVATION}"
        egfr = http.get(url).json()
        egfr["valueQuantity"]["value"] = 20
        assert http.put(url, json=egfr, headers={"Content-Type": "application/fhir+json"}).status_code in (200, 201)

    second = _run(server, tmp_path)

    assert second.exit_code == 0, second.stderr
    since = _history(tmp_path)[0]["source_notes"]
    assert isinstance(since, dict) and since["bulk"] == "full"
    notes = _history(tmp_path)[1]["source_notes"]
    assert isinstance(notes, dict)
    assert notes["bulk"] == "since" and notes["resources"] == 1 and notes["deleted"] == 0  # only the changed one
    assert f"changes since {notes['since']}" in second.stderr  # the kick-off's _since
    patient = second.patient("k01-candidate")
    assert patient["status"] == "excluded"
    assert patient["change"] == {"since_run": 1, "status_before": "candidate", "criteria": ["egfr_25_to_75"]}
    assert "since run 1: 0 new, 1 dropped, 0 changed" in second.stdout
