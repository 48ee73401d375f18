"""Every hand-built patient, every criterion, every status: the real command on the fixtures.

Expectations are stated by hand in tests/expected/*.json (written by the fixture builders in
fixtures/build_*.py from the trial pages, never from this code's output).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from .e2e import Run, run_trial
from .paths import CRITERIA, FIXTURES, ROOT, SCHEMA

TRIALS = {
    "nct07183761": (CRITERIA / "nct07183761.yaml", FIXTURES / "fhir_bundles"),
    "nct03036150": (CRITERIA / "nct03036150.yaml", FIXTURES / "nct03036150"),
}


def _expected(trial: str) -> dict[str, Any]:
    path = ROOT / "tests" / "expected" / f"{trial}_fixtures.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"as_of": "", "patients": {}}


CASES = [(trial, pid) for trial in TRIALS for pid in sorted(_expected(trial)["patients"])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    done = {}
    for trial, (criteria, source) in TRIALS.items():
        expected = _expected(trial)
        if expected["patients"]:
            done[trial] = run_trial(criteria, source, tmp_path_factory.mktemp(trial), expected["as_of"])
    return done


@pytest.mark.parametrize("trial", sorted(TRIALS))
def test_fixture_run_is_clean_and_valid(runs: dict[str, Run], trial: str) -> None:
    run = runs[trial]
    assert run.exit_code == 0, run.stderr
    document = run.document
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(document, schema)
    assert document["errors"] == []
    ids = [p["id"] for p in document["patients"]]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert set(ids) == set(_expected(trial)["patients"]), "every fixture patient appears once, and no other"


@pytest.mark.parametrize(("trial", "pid"), CASES)
def test_patient_matches_hand_stated_expectation(runs: dict[str, Run], trial: str, pid: str) -> None:
    expected = _expected(trial)["patients"][pid]
    patient = runs[trial].patient(pid)
    got = {c["id"]: c["result"] for c in patient["criteria"]}
    wrong = {cid: (want, got.get(cid)) for cid, want in expected["criteria"].items() if got.get(cid) != want}
    notes = {c["id"]: c.get("note") for c in patient["criteria"] if c["id"] in wrong}
    assert not wrong, f"{pid} ({expected['shows']}): (expected, got) {wrong}; notes {notes}"
    assert list(got) == list(expected["criteria"]), "criteria in file order, alive first"
    assert patient["status"] == expected["status"], expected["shows"]
    for cid, fields in expected.get("evidence", {}).items():
        evidence = next(c for c in patient["criteria"] if c["id"] == cid)["evidence"]
        assert evidence, f"{cid} has no evidence"
        first = evidence[0]
        for key, want in fields.items():
            if isinstance(want, float):
                assert first.get(key) == pytest.approx(want, rel=1e-6), (cid, key, first)
            else:
                assert first.get(key) == want, (cid, key, first)


def test_outputs_are_private_files(runs: dict[str, Run]) -> None:
    run = runs["nct07183761"]
    for name in ("candidates.json", "candidates.csv", "report.html"):
        assert (run.out / name).stat().st_mode & 0o777 == 0o600


def test_same_inputs_give_identical_json_apart_from_generated_at(runs: dict[str, Run], tmp_path: Path) -> None:
    first = runs["nct07183761"]
    criteria, source = TRIALS["nct07183761"]
    second = run_trial(criteria, source, tmp_path, _expected("nct07183761")["as_of"])
    a, b = first.document, second.document
    a.pop("generated_at"), b.pop("generated_at")
    assert a == b
    text_a = (first.out / "candidates.json").read_text().splitlines()
    text_b = (second.out / "candidates.json").read_text().splitlines()
    assert [x for x in text_a if "generated_at" not in x] == [x for x in text_b if "generated_at" not in x]
