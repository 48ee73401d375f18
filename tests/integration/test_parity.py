"""REST, Bulk and file runs over the same data give the same candidates.json (contract §6),
against a real FHIR server holding the hand-built fixtures and the Synthea sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ..e2e import Run, run_trial
from ..paths import CRITERIA, FIXTURES
from ..samples import SYNTHEA
from .conftest import LoadedServer

AS_OF = "2026-06-30"  # the fixtures' as-of; Synthea's records are simply older at that date
TRIAL = CRITERIA / "nct07183761.yaml"


def _without(node: Any, refused: set[str]) -> Any:
    """A Bundle or resource without the resources the server refused (so both sides hold the
    same data): the server validates R4 strictly, the file reader is lenient."""
    if isinstance(node, dict) and node.get("resourceType") == "Bundle":
        node["entry"] = [
            e
            for e in node.get("entry", [])
            if f"{e['resource']['resourceType']}/{e['resource'].get('id')}" not in refused
        ]
    return node


def _same_data_as_server(target: Path, server: LoadedServer) -> Path:
    refused = {key for table in server.rejected.values() for key in table}
    for name, folder in (
        ("fhir_bundles", FIXTURES / "fhir_bundles"),
        ("synthea-r4", SYNTHEA),
    ):
        shutil.copytree(folder, target / name)
    for path in (target / "fhir_bundles").rglob("*.json"):
        data = json.loads(path.read_text())
        if refused & {f"{data.get('resourceType')}/{data.get('id')}"}:
            path.unlink()
        else:
            path.write_text(json.dumps(_without(data, refused)))
    return target


def _run(source: str, out: Path, *extra: str, env: dict[str, str] | None = None) -> Run:
    return run_trial(TRIAL, source, out, AS_OF, *extra, env=env)


@pytest.fixture(scope="module")
def file_run(fhir_server: LoadedServer, tmp_path_factory: pytest.TempPathFactory) -> Run:
    data = _same_data_as_server(tmp_path_factory.mktemp("data"), fhir_server)
    run = _run(str(data), tmp_path_factory.mktemp("file-out"), "--ignore", "SOURCE_MANIFEST.json")
    assert run.exit_code == 0, run.stderr
    return run


def test_rest_gives_the_same_candidates_as_files(fhir_server: LoadedServer, file_run: Run, tmp_path: Path) -> None:
    rest = _run(fhir_server.base, tmp_path, "--rest")
    assert rest.exit_code == 0, rest.stderr
    assert rest.comparable() == file_run.comparable()
    assert rest.document["source"] == fhir_server.base
    assert "REST:" in rest.stderr and "requests" in rest.stderr  # the log counts requests, pages, resources
    patients = len(rest.document["patients"])
    assert patients == len(file_run.document["patients"]) > 200


def test_bulk_gives_the_same_candidates_and_then_asks_only_for_changes(
    fhir_server: LoadedServer, file_run: Run, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    bulk = _run(fhir_server.base, tmp_path / "out1", "--bulk", "--cache", str(cache))
    assert bulk.exit_code == 0, bulk.stderr
    assert bulk.comparable() == file_run.comparable()
    assert "bulk export ready" in bulk.stderr
    again = _run(fhir_server.base, tmp_path / "out2", "--bulk", "--cache", str(cache))
    assert "bulk export (changes since" in again.stderr and "0 resources changed, 0 deleted" in again.stderr
    assert again.comparable() == file_run.comparable()
    (folder,) = list(cache.iterdir())
    assert folder.stat().st_mode & 0o077 == 0  # PHI: owner only


def test_capability_statement_picks_bulk_by_default(fhir_server: LoadedServer, tmp_path: Path) -> None:
    run = _run(fhir_server.base, tmp_path / "out", "--cache", str(tmp_path / "cache"))
    assert run.exit_code == 0, run.stderr
    assert "bulk export" in run.stderr


def test_a_per_patient_crawl_gives_the_same_candidates(
    fhir_server: LoadedServer, file_run: Run, tmp_path: Path
) -> None:
    ids = tmp_path / "patients.txt"
    ids.write_text("\n".join(p["id"] for p in file_run.document["patients"]) + "\n")
    crawl = _run(fhir_server.base, tmp_path / "out", "--rest", "--crawl", "--patients-file", str(ids),
                 "--concurrency", "4", "--rate", "0")  # fmt: skip
    assert crawl.exit_code == 0, crawl.stderr
    assert crawl.comparable() == file_run.comparable()
    assert "crawl: " in crawl.stderr and "patients" in crawl.stderr
