"""The test FHIR server is real and holds what the source folders hold."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ..fhir_server import FHIR_JSON, STRICT, FhirServer, search_all, session
from ..paths import FIXTURES, ROOT
from ..samples import SYNTHEA, SYNTHEA_PATIENTS
from .conftest import LoadedServer, require_sekmet

HBA1C = ("http://loinc.org", "4548-4")


def folders() -> list[Path]:
    return [FIXTURES / "fhir_bundles", SYNTHEA]


def resources(folder: Path) -> Iterator[dict[str, Any]]:
    """Every resource of a folder, plainly read: Bundles' entries, single resources, NDJSON lines."""
    for path in sorted(folder.rglob("*")):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix == ".ndjson":
            yield from (json.loads(line) for line in path.read_text().splitlines() if line.strip())
        elif path.suffix == ".json":
            data = json.loads(path.read_text())
            if data.get("resourceType") == "Bundle":
                yield from (e["resource"] for e in data.get("entry", []) if "resource" in e)
            elif "resourceType" in data:  # not SOURCE_MANIFEST.json
                yield data


def expected_ids(server: LoadedServer, rtype: str, *, code: tuple[str, str] | None = None) -> set[str]:
    """Distinct ids of a type in both folders (a Type/id met twice is one resource), less the
    resources the server is known to reject."""
    rejected = {key for by_folder in server.rejected.values() for key in by_folder}
    ids = set()
    for folder in folders():
        for res in resources(folder):
            if res["resourceType"] != rtype or f"{rtype}/{res['id']}" in rejected:
                continue
            codings = (res.get("code") or {}).get("coding") or []
            if code is None or any((c.get("system"), c.get("code")) == code for c in codings):
                ids.add(res["id"])
    return ids


def get(url: str, **headers: str) -> requests.Response:
    with session() as http:
        return http.get(url, headers={"Accept": FHIR_JSON, **headers}, timeout=60)


def test_the_server_is_a_fhir_r4_server(fhir_server: LoadedServer) -> None:
    response = get(f"{fhir_server.base}/metadata")
    assert response.status_code == 200
    capability = response.json()
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"].startswith("4.")


def test_every_patient_of_both_folders_is_there_with_its_id(fhir_server: LoadedServer) -> None:
    expected = expected_ids(fhir_server, "Patient")
    hand_built = json.loads((ROOT / "tests" / "expected" / "nct07183761_fixtures.json").read_text())["patients"]
    assert len(expected) == len(hand_built) + SYNTHEA_PATIENTS  # hand-built + Synthea, duplicates counted once
    response = get(f"{fhir_server.base}/Patient?_count=1000", **STRICT)
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == len(expected)
    assert {e["resource"]["id"] for e in page["entry"]} == expected


def test_paging_reaches_every_hba1c_observation(fhir_server: LoadedServer) -> None:
    expected = expected_ids(fhir_server, "Observation", code=HBA1C)
    first = get(f"{fhir_server.base}/Observation?code=http://loinc.org|4548-4&_count=5", **STRICT).json()
    entries = search_all(fhir_server.base, "Observation?code=http://loinc.org|4548-4&_count=5")
    matches = [e["resource"]["id"] for e in entries if e.get("search", {}).get("mode", "match") == "match"]
    assert len(matches) == len(set(matches)), "a resource came back on two pages"
    assert first["total"] == len(matches) == len(expected)
    assert set(matches) == expected
    assert len(expected) > 5 * 2  # several pages were followed


def test_references_point_at_the_kept_ids(fhir_server: LoadedServer) -> None:
    """Synthea's urn:uuid references became Type/id with Synthea's own ids."""
    patient = next(r for r in resources(SYNTHEA) if r["resourceType"] == "Patient")
    entries = search_all(fhir_server.base, f"Observation?subject=Patient/{patient['id']}&_count=1000")
    assert entries
    assert {e["resource"]["subject"]["reference"] for e in entries} == {f"Patient/{patient['id']}"}


@pytest.mark.parametrize(
    ("key", "path", "value"),
    [
        # newer lastUpdated in the file read first wins
        ("Patient/dup-patient-later-version-wins", ("birthDate",), "1944-05-01"),
        ("Observation/dup-observation-later-version-wins-hba1c", ("valueQuantity", "value"), 12.4),
        # same lastUpdated: the one read last wins
        ("Observation/dup-observation-tie-last-read-wins-hba1c", ("valueQuantity", "value"), 12.4),
    ],
)
def test_a_duplicate_is_stored_as_its_winner(
    fhir_server: LoadedServer, key: str, path: tuple[str, ...], value: object
) -> None:
    response = get(f"{fhir_server.base}/{key}")
    assert response.status_code == 200
    found: Any = response.json()
    for step in path:
        found = found[step]
    assert found == value


def test_an_unknown_search_parameter_is_refused_under_strict_handling(fhir_server: LoadedServer) -> None:
    response = get(f"{fhir_server.base}/Patient?foo=bar", **STRICT)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert "foo" in outcome["issue"][0]["diagnostics"]


def test_the_server_process_ends_with_the_context() -> None:
    require_sekmet()
    with FhirServer() as server:
        pid, port = server.pid, server.port
        os.kill(pid, 0)  # running
        assert get(f"{server.base}/metadata").status_code == 200
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
