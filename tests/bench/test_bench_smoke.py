"""The benchmark is a script, not a timed test: these only prove that it and its data
generator work (at a small size), and that the generated data is reproducible."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.samples import CAREBUNDLE_SHA256

BENCH = ROOT / "bench"


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _need(module: str) -> None:
    """Skip without the benchmark's extra packages, except on CI, where that is a failure."""
    if importlib.util.find_spec(module) is None:
        if _on_ci():
            pytest.fail(f"the benchmark needs {module} (pip install {module}); CI must have it")
        pytest.skip(f"{module} is not installed (the benchmark needs it)")


@pytest.fixture(autouse=True)
def _bench_packages() -> None:
    _need("carebundle")
    _need("duckdb")


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / "generate.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.ndjson"))}


def test_run_prints_the_table_and_the_ratio_last(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--patients",
            "50",
            "--engines",
            "duckdb",
            "--baseline-sample",
            "20",
            "--data-root",
            str(tmp_path / "data"),
            "--json",
            str(tmp_path / "bench.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"evaluate_patients_per_s=\d+", lines[-1]), lines[-1]
    assert re.fullmatch(r"end_to_end_over_floor=\d+\.\d\d", lines[-2]), lines[-2]
    assert re.fullmatch(r"speedup_vs_fhir_resources=(\d+\.\d|n/a)", lines[-3]), lines[-3]
    table = "\n".join(lines)
    assert re.search(r"^floor \(DuckDB explicit-column scan\)\s+\d+\.\d{3}\s", table, re.M), table
    assert re.search(r"^cohort-finder duckdb\s+\d+\.\d{3}\s", table, re.M), table
    assert (tmp_path / "bench.json").is_file()


def test_dense_data_gives_every_patient_the_trials_facts(tmp_path: Path) -> None:
    _generate("--patients", "12", "--seed", "42", "--out", str(tmp_path / "d"), "--dense", "--workers", "1")
    patients = {json.loads(line)["id"] for line in (tmp_path / "d" / "Patient.ndjson").read_text().splitlines()}
    with_dpn, with_orders = set(), set()
    for line in (tmp_path / "d" / "Condition.ndjson").read_text().splitlines():
        condition = json.loads(line)
        if any(c.get("code") == "E11.42" for c in condition["code"]["coding"]):
            with_dpn.add(condition["subject"]["reference"].removeprefix("Patient/"))
    for line in (tmp_path / "d" / "MedicationRequest.ndjson").read_text().splitlines():
        with_orders.add(json.loads(line)["subject"]["reference"].removeprefix("Patient/"))
    assert len(patients) == 12
    assert with_dpn == patients and with_orders == patients


def test_generate_is_deterministic_whatever_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _generate("--patients", "60", "--seed", "42", "--out", str(tmp_path / "a"), "--workers", "1")
    # the same N and seed in chunks of 8 patients spread over 2 processes
    monkeypatch.syspath_prepend(str(BENCH))
    import generate

    monkeypatch.setattr(generate, "CHUNK", 8)
    generate.generate(60, 42, tmp_path / "b", workers=2, quiet=True)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() and "Observation.ndjson" in a
    assert a == b
    # the additions that give the trial work are there
    assert b'"E11.42"' in a["Condition.ndjson"]
    assert b'"483438"' in a["MedicationRequest.ndjson"]
    assert b'"expectedSupplyDuration"' in a["MedicationRequest.ndjson"]
    for loinc in (b'"4548-4"', b'"777-3"', b'"1742-6"', b'"1920-8"', b'"751-8"', b'"2157-6"'):
        assert loinc in a["Observation.ndjson"]
    # a different seed is different data
    _generate("--patients", "60", "--seed", "43", "--out", str(tmp_path / "c"))
    assert _files(tmp_path / "c") != a


def test_plain_output_is_carebundles_own(tmp_path: Path) -> None:
    """The generator's --plain output is the shared carebundle sample, byte for byte (its
    SOURCE.txt: carebundle generate --profile mixed --count 100 --seed 42 --sex mixed
    --age-range 18-85 --format ndjson): so tests/samples.py may make it instead of reading it."""
    _generate("--patients", "100", "--seed", "42", "--plain", "--out", str(tmp_path / "plain"))
    hashes = {name: hashlib.sha256(content).hexdigest() for name, content in _files(tmp_path / "plain").items()}
    assert hashes == CAREBUNDLE_SHA256
