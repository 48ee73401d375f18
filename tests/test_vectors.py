"""Test vectors per rule kind (tests/vectors/<kind>.json, in the style of the SQL-on-FHIR v2
test suite): each case is one patient's resources, one rule, and the result written by hand.
One runner puts every case of every kind through every engine, so engines cannot drift.

All cases are evaluated in one run per engine: each case is its own patient (`<kind>-<n>`,
its resources' ids prefixed with it) and its own criterion (`<kind>_<n>`); only that
patient's result for that criterion is checked.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections import defaultdict
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from cohort_finder.criteria import load_trial
from cohort_finder.engines import get_engine
from cohort_finder.model import RunResult
from cohort_finder.pipeline import evaluate_source
from cohort_finder.sources.files import FileSource

from .paths import MAPPINGS, ROOT

VECTORS = ROOT / "tests" / "vectors"
AS_OF = "2026-06-30"
DEFAULT_PATIENT = {"birthDate": "1960-01-01", "gender": "female"}


def _files() -> list[Path]:
    return sorted(VECTORS.glob("*.json"))


@cache
def _cases() -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for path in _files():
        doc = json.loads(path.read_text())
        assert doc["as_of"] == AS_OF, path
        out += [(doc["kind"], n, case) for n, case in enumerate(doc["tests"])]
    return out


def _pid(kind: str, n: int) -> str:
    return f"{kind.replace('_', '-')}-{n}"


def _local(resource: dict[str, Any], pid: str, ids: set[str]) -> dict[str, Any]:
    """The resource with its id prefixed and its patient (and local references) set."""
    text = json.dumps(resource)
    for key in ids:
        rtype, rid = key.split("/", 1)
        text = text.replace(f'"{rtype}/{rid}"', f'"{rtype}/{pid}-{rid}"')
    out: dict[str, Any] = json.loads(text)
    out["id"] = f"{pid}-{resource['id']}"
    out["subject"] = {"reference": f"Patient/{pid}"}
    return out


def _write_source(folder: Path) -> Path:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    criteria = []
    for kind, n, case in _cases():
        pid = _pid(kind, n)
        patient = {"resourceType": "Patient", "id": pid, **DEFAULT_PATIENT, **case.get("patient", {})}
        by_type["Patient"].append({k: v for k, v in patient.items() if v is not None})
        ids = {f"{r['resourceType']}/{r['id']}" for r in case["resources"]}
        for resource in case["resources"]:
            by_type[resource["resourceType"]].append(_local(resource, pid, ids))
        criteria.append({"id": f"{kind}_{n}", "kind": "inclusion", "text": case["title"], "rule": case["rule"]})
    data = folder / "data"
    data.mkdir()
    for rtype, resources in by_type.items():
        (data / f"{rtype}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    trial = {
        "trial": {"id": "VECTORS", "title": "rule-kind test vectors"},
        "mappings": str(MAPPINGS),
        "criteria": criteria,
    }
    (folder / "vectors.yaml").write_text(yaml.safe_dump(trial, sort_keys=False))
    return folder


def _spark_ready() -> bool:
    return importlib.util.find_spec("pyspark") is not None and shutil.which("java") is not None


ENGINES = [
    pytest.param("python"),
    pytest.param("duckdb"),
    pytest.param(
        "spark",
        marks=[pytest.mark.spark, pytest.mark.skipif(not _spark_ready(), reason="needs pyspark and Java")],
    ),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_source(tmp_path_factory.mktemp("vectors"))


def _evaluate(engine: str, folder: Path) -> RunResult:
    trial = load_trial(folder / "vectors.yaml")
    return evaluate_source(trial, FileSource(folder / "data"), date.fromisoformat(AS_OF), "vectors", get_engine(engine))


@pytest.mark.parametrize("engine", ENGINES)
def test_every_vector_gives_its_hand_written_result(engine: str, source: Path) -> None:
    result = _evaluate(engine, source)
    assert result.errors == ()
    patients = {p.id: p for p in result.patients}
    failures = []
    for kind, n, case in _cases():
        pid = _pid(kind, n)
        got = next(c for c in patients[pid].criteria if c.id == f"{kind}_{n}")
        expected = case["expect"]
        evidence = sorted(e.resource.replace(f"/{pid}-", "/", 1) for e in got.evidence)
        wrong_note = "note" in expected and (got.note or "").replace(f"/{pid}-", "/") != expected["note"]
        if (
            got.result != expected["result"]
            or ("evidence" in expected and evidence != sorted(expected["evidence"]))
            or wrong_note
        ):
            failures.append(f"{kind}[{n}] {case['title']}: {got.result} {evidence} ({got.note}); expected {expected}")
    assert failures == [], "\n".join(failures)


def test_every_rule_kind_has_a_vector_file() -> None:
    from cohort_finder.rules import KINDS

    kinds = set(KINDS) - {"all_of", "any_of", "not"}
    assert kinds <= {json.loads(p.read_text())["kind"] for p in _files()}, kinds
