"""Every engine gives identical candidates.json on every fixture and on the public synthetic
samples (tests/samples.py): the same inputs through python (the reference), duckdb and spark."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..e2e import Run
from ..paths import CRITERIA, FIXTURES
from ..samples import SYNTHEA, carebundle

NCT07 = CRITERIA / "nct07183761.yaml"
CASES: dict[str, tuple[Path, Path | Callable[[], Path], str]] = {
    "fhir_bundles": (NCT07, FIXTURES / "fhir_bundles", "2026-06-30"),
    "bad_input": (NCT07, FIXTURES / "bad_input", "2026-06-30"),
    "hostile_input": (NCT07, FIXTURES / "hostile_input", "2026-06-30"),
    "nct03036150": (CRITERIA / "nct03036150.yaml", FIXTURES / "nct03036150", "2026-06-30"),
    "synthea-r4": (NCT07, SYNTHEA, "2021-04-17"),
    "carebundle-ndjson": (NCT07, carebundle, "2026-01-01"),  # generated on first use
}
SPARK = pytest.mark.spark


def _spark_ready() -> bool:
    return importlib.util.find_spec("pyspark") is not None and shutil.which("java") is not None


# Spark runs in this process, where one Spark session serves every case (the same pipeline as
# `run --engine spark`): a JVM start per case through the command cost CI minutes and proved
# nothing more.


def _run(engine: str, case: str, out: Path) -> Run:
    criteria, where, as_of = CASES[case]
    source = where() if callable(where) else where
    if engine == "spark":
        from cohort_finder import api

        results = api.run(criteria, source, as_of=as_of, out=out, engine="spark")
        return Run(1 if results.errors else 0, "", "", out)
    from ..e2e import cohort_finder

    done = cohort_finder(
        "run",
        "--engine",
        engine,
        "--criteria",
        str(criteria),
        "--source",
        str(source),
        "--out",
        str(out),
        "--as-of",
        as_of,
    )
    return Run(done.returncode, done.stdout, done.stderr, out)


def _comparable(run: Run) -> dict[str, Any]:
    document = run.document
    document.pop("generated_at")
    return document


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    return {case: _run("python", case, tmp_path_factory.mktemp(f"python-{case}")) for case in CASES}


# Spark on every case but bad_input, whose broken lines hostile_input covers and more (a Spark
# case costs CI half a minute; duckdb runs them all)
_SPARK_MARKS = [SPARK, pytest.mark.skipif(not _spark_ready(), reason="needs pyspark and Java")]
_PAIRS = [pytest.param(case, "duckdb", id=f"{case}-duckdb") for case in sorted(CASES)] + [
    pytest.param(case, "spark", marks=_SPARK_MARKS, id=f"{case}-spark") for case in sorted(CASES) if case != "bad_input"
]


@pytest.mark.parametrize(("case", "engine"), _PAIRS)
def test_engine_gives_identical_candidates(reference: dict[str, Run], engine: str, case: str, tmp_path: Path) -> None:
    expected = reference[case]
    run = _run(engine, case, tmp_path)
    assert run.exit_code == expected.exit_code, run.stderr
    assert _comparable(run) == _comparable(expected)


def test_duckdb_reads_only_reduced_rows_into_python(tmp_path: Path) -> None:
    run = _run("duckdb", "carebundle-ndjson", tmp_path)
    assert run.exit_code == 0, run.stderr
    # 4,641 resources in the folder; Python sees the patients and the rows the trial can use
    assert "duckdb engine:" in run.stderr
    line = next(text for text in run.stderr.splitlines() if "duckdb engine:" in text)
    read = int(line.split("engine: ")[1].split(" resources")[0])
    assert 100 <= read < 2000, line
