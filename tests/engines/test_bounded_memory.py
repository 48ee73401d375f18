"""Bounded memory: with the duckdb engine, rows the trial cannot use never reach Python, so
peak memory stays flat however many of them the source holds (the python engine, which reads
everything, grows with them: the control that shows the measurement can fail)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ..paths import CRITERIA

HEART_RATE = {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}


def _source(folder: Path, noise_per_patient: int) -> Path:
    folder.mkdir()
    with (folder / "Patient.ndjson").open("wb") as out:
        for i in range(50):
            out.write(
                orjson.dumps({"resourceType": "Patient", "id": f"p{i}", "gender": "female", "birthDate": "1960-01-01"})
                + b"\n"
            )
    with (folder / "Observation.ndjson").open("wb") as out:
        for i in range(50):
            # one platelet count in 10*3/uL each: every run builds the UCUM registry (~90 MB),
            # so the small and large runs differ only in the rows the trial cannot use
            out.write(
                orjson.dumps(
                    {
                        "resourceType": "Observation",
                        "id": f"plt{i}",
                        "status": "final",
                        "subject": {"reference": f"Patient/p{i}"},
                        "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
                        "effectiveDateTime": "2026-06-01",
                        "valueQuantity": {"value": 250, "unit": "10*3/uL", "code": "10*3/uL"},
                    }
                )
                + b"\n"
            )
            for j in range(noise_per_patient):
                out.write(
                    orjson.dumps(
                        {
                            "resourceType": "Observation",
                            "id": f"o{i}-{j}",
                            "status": "final",
                            "subject": {"reference": f"Patient/p{i}"},
                            "code": {"coding": [HEART_RATE]},
                            "effectiveDateTime": "2026-01-01",
                            "valueQuantity": {"value": 70 + j % 30, "unit": "/min"},
                            "note": [{"text": "x" * 200}],
                        }
                    )
                    + b"\n"
                )
    return folder


def _peak_rss_mb(engine: str, source: Path, out: Path) -> float:
    exe = Path(sys.executable).parent / "cohort-finder"
    command = [
        str(exe),
        "-q",
        "run",
        "--engine",
        engine,
        "--criteria",
        str(CRITERIA / "nct07183761.yaml"),
        "--source",
        str(source),
        "--out",
        str(out),
        "--as-of",
        "2026-06-30",
    ]
    # A child's ru_maxrss starts at its parent's RSS at fork (Linux folds the copied address
    # space's high-water mark into it at exec), and this test process may be big after other
    # tests. So a small Python process forks the command and reports its peak.
    done = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip()) / 1024  # kilobytes on Linux


_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit("the command failed")
print(usage.ru_maxrss)
"""


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("memory")
    return _source(base / "small", 20), _source(base / "large", 8000)  # 1,000 vs 400,000 rows


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kilobytes on Linux")
def test_duckdb_peak_memory_does_not_grow_with_unused_rows(sources: tuple[Path, Path], tmp_path: Path) -> None:
    small, large = sources
    assert (large / "Observation.ndjson").stat().st_size > 120_000_000
    duck_small = _peak_rss_mb("duckdb", small, tmp_path / "ds")
    duck_large = _peak_rss_mb("duckdb", large, tmp_path / "dl")
    python_small = _peak_rss_mb("python", small, tmp_path / "ps")
    python_large = _peak_rss_mb("python", large, tmp_path / "pl")
    duck_growth, python_growth = duck_large - duck_small, python_large - python_small
    # 400x the rows (195 MB): the python engine holds every row (measured +344 MB); DuckDB's
    # scan buffers add a bounded amount (measured +94 MB)
    numbers = (python_small, python_large, duck_small, duck_large)
    assert python_growth > 150, numbers
    assert duck_growth < python_growth / 2, numbers
