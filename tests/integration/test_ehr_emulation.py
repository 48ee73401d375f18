"""Against emulated Epic and Oracle Health (tests/ehr_emulator.py, from ehr-profiles.md) in
front of the real test server: the per-patient crawl and the Group export give the same
candidates.json as a run over a folder of the same data, although each EHR refuses population
searches, serves no MedicationStatement and refuses what its CapabilityStatement does not list.

The folder holds the hand-built fixtures as each EHR can serve them: without
MedicationStatement (neither serves it) and, for Oracle Health, without Medication resources
(its statement offers none; contained Medications stay)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..e2e import Run, run_trial
from ..ehr_emulator import EPIC, ORACLE, Client, Emulator, Profile, emulate
from ..fhir_server import FHIR_JSON, session
from ..paths import CRITERIA, FIXTURES
from .conftest import LoadedServer

AS_OF = "2026-06-30"
TRIAL = CRITERIA / "nct07183761.yaml"
# The Groups a site builds for the client. A crawl through the layer runs ~7 patients a second
# here, so the crawls take a third of the patients; the exports take them all.
GROUP = "cf-site-cohort"  # every fixture patient
EPIC_CRAWL = "cf-site-cohort-epic-third"
ORACLE_ALL = "cf-site-cohort-oracle"  # Oracle Health serves no Medication: see `groups`
ORACLE_CRAWL = "cf-site-cohort-oracle-third"
CLIENT_ID = "cohort-finder-site"
SECRET = "oracle-client-secret-for-tests"


def _drop(node: Any, types: set[str]) -> Any:
    """A resource or Bundle without the resources of these types (None for a dropped one)."""
    if not isinstance(node, dict):
        return node
    if node.get("resourceType") in types:
        return None
    if node.get("resourceType") == "Bundle":
        node["entry"] = [e for e in node.get("entry", []) if _drop(e.get("resource"), types) is not None]
    return node


def _folder(target: Path, server: LoadedServer, types: set[str]) -> Path:
    refused = {key for table in server.rejected.values() for key in table}
    shutil.copytree(FIXTURES / "fhir_bundles", target)
    for path in target.rglob("*.ndjson"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if _drop(json.loads(line), types) is not None]
        path.write_text("".join(f"{line}\n" for line in kept))
    for path in target.rglob("*.json"):
        data = _drop(json.loads(path.read_text()), types)
        if data is None or refused & {f"{data.get('resourceType')}/{data.get('id')}"}:
            path.unlink()
            continue
        if data.get("resourceType") == "Bundle":
            data["entry"] = [
                e for e in data["entry"] if f"{e['resource']['resourceType']}/{e['resource'].get('id')}" not in refused
            ]
        path.write_text(json.dumps(data))
    return target


def _run(source: str, out: Path, *extra: str, env: dict[str, str] | None = None) -> Run:
    return run_trial(TRIAL, source, out, AS_OF, *extra, env=env)


@dataclass(frozen=True)
class Site:
    """The data of one emulated EHR: the folder run to compare with, and the client's secrets."""

    folder_run: Run
    folder: Path
    env: dict[str, str]
    key_pem: bytes | None = None


def _put_group(base: str, gid: str, ids: list[str]) -> None:
    members = [{"entity": {"reference": f"Patient/{pid}"}} for pid in ids]
    body = {"resourceType": "Group", "id": gid, "type": "person", "actual": True, "member": members}
    response = session().put(
        f"{base}/Group/{gid}", data=json.dumps(body), headers={"Content-Type": FHIR_JSON}, timeout=60
    )
    assert response.status_code in (200, 201), response.text


@dataclass(frozen=True)
class Groups:
    all: list[str]
    epic_crawl: list[str]
    oracle_all: list[str]
    oracle_crawl: list[str]


def _with_separate_medication(folder: Path) -> set[str]:
    """Patients with a medication record that points at a Medication resource (not contained):
    the Patients of each fixture file that holds such a record (one patient a file)."""
    found = set()
    for path in folder.rglob("*.json"):
        data = json.loads(path.read_text())
        resources = [e["resource"] for e in data.get("entry", [])] if data.get("resourceType") == "Bundle" else [data]
        if any(not r.get("medicationReference", {}).get("reference", "#").startswith("#") for r in resources):
            found |= {r["id"] for r in resources if r["resourceType"] == "Patient"}
    return found


@pytest.fixture(scope="module")
def groups(fhir_server: LoadedServer, epic_site: Site) -> Groups:
    """The site's Groups on the server. Oracle Health offers no Medication resource (its orders
    hold the drug inline or contained), so its Groups leave out the fixture patients whose
    records point at a separate Medication: such records do not occur there."""
    ids = [p["id"] for p in epic_site.folder_run.document["patients"]]
    separate = _with_separate_medication(epic_site.folder)
    oracle = [i for i in ids if i not in separate]
    made = Groups(ids, ids[::3], oracle, oracle[1::3])
    for gid, members in ((GROUP, made.all), (EPIC_CRAWL, made.epic_crawl), (ORACLE_ALL, made.oracle_all),
                         (ORACLE_CRAWL, made.oracle_crawl)):  # fmt: skip
        _put_group(fhir_server.base, gid, members)
    return made


def _only(run: Run, ids: list[str]) -> dict[str, Any]:
    """The parts of a run that concern these patients (a Group of some of the folder's)."""
    document = run.comparable()
    wanted = set(ids)
    return {
        "criteria": document["criteria"],
        "patients": [p for p in document["patients"] if p["id"] in wanted],
        "errors": document["errors"],
    }


@pytest.fixture(scope="module")
def folder_run(fhir_server: LoadedServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """The fixtures as these EHRs hold them (no MedicationStatement), read as a folder."""
    root = tmp_path_factory.mktemp("folder")
    folder = _folder(root / "data", fhir_server, {"MedicationStatement"})
    run = _run(str(folder), root / "out")
    assert run.exit_code == 0, run.stderr
    return folder, run


@pytest.fixture(scope="module")
def epic_site(folder_run: tuple[Path, Run], tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("epic")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (root / "key.pem").write_bytes(pem)
    (root / "key.pem").chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    env = {
        "COHORT_FINDER_SMART_CLIENT_ID": CLIENT_ID,
        "COHORT_FINDER_SMART_KEY_FILE": str(root / "key.pem"),
        "COHORT_FINDER_SMART_KID": "site-key-1",
    }
    folder, run = folder_run
    return Site(run, folder, env, public)


@pytest.fixture(scope="module")
def oracle_site(folder_run: tuple[Path, Run], tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("oracle")
    (root / "secret").write_text(SECRET)
    env = {"COHORT_FINDER_SMART_CLIENT_ID": CLIENT_ID, "COHORT_FINDER_SMART_CLIENT_SECRET_FILE": str(root / "secret")}
    folder, run = folder_run
    return Site(run, folder, env)


@pytest.fixture()
def epic(fhir_server: LoadedServer, epic_site: Site) -> Iterator[Emulator]:
    with emulate(EPIC, fhir_server.base, Client(CLIENT_ID, public_key_pem=epic_site.key_pem)) as emulator:
        yield emulator


def _oracle(fhir_server: LoadedServer, profile: Profile = ORACLE) -> Any:
    return emulate(profile, fhir_server.base, Client(CLIENT_ID, secret=SECRET))


def _asked(emulator: Emulator, prefix: str) -> list[str]:
    return [path for _, path in emulator.seen.requests if path.startswith(prefix)]


# -- Epic --------------------------------------------------------------------------------------
def test_epic_refuses_population_searches_and_the_crawl_of_its_group_matches_the_folder(
    epic: Emulator, epic_site: Site, groups: Groups, tmp_path: Path
) -> None:
    run = _run(epic.base, tmp_path / "out", "--rest", "--group", EPIC_CRAWL, "--cache", str(tmp_path / "cache"),
               "--rate", "0", "--concurrency", "8", env=epic_site.env)  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert [p["id"] for p in run.document["patients"]] == groups.epic_crawl
    assert _only(run, groups.epic_crawl) == _only(epic_site.folder_run, groups.epic_crawl)
    assert "refuses searches across all patients" in run.stderr and "searching patient by patient" in run.stderr
    # the Group read lists no members on this EHR: they come from Group/ID/$export?_type=Patient
    assert "lists no members: exporting its Patients" in run.stderr
    assert any("_type=Patient" in path for path in _asked(epic, "/fhir/Group/"))
    assert len(_asked(epic, "Patient?_id=")) == len(groups.epic_crawl)  # one Patient read each
    # never asked for what the statement does not list; refused only the population search
    assert not _asked(epic, "MedicationStatement") and not any("_include" in p for _, p in epic.seen.requests)
    assert epic.seen.refused and all(status == 400 and "needs patient" in why for status, why in epic.seen.refused)
    assert "The server offers no MedicationStatement" in (run.out / "report.html").read_text()
    # SMART: RS384 assertions four minutes out, a fresh jti each
    assert epic.seen.assertion_lifetimes and max(epic.seen.assertion_lifetimes) <= 240
    assert len(epic.seen.jtis) == epic.seen.token_requests


def test_epic_group_export_by_its_group_export_operation_matches_the_folder(
    epic: Emulator, epic_site: Site, groups: Groups, tmp_path: Path
) -> None:
    run = _run(epic.base, tmp_path / "out", "--group", GROUP, "--cache", str(tmp_path / "cache"), env=epic_site.env)
    assert run.exit_code == 0, run.stderr
    assert "bulk export ready" in run.stderr  # chosen by itself: the statement offers group-export
    assert run.comparable() == epic_site.folder_run.comparable()
    (kickoff,) = _asked(epic, "/fhir/Group/")
    assert "MedicationStatement" not in kickoff.replace("MedicationRequest", "")
    # Medications the orders reference are outside the Group's compartment: read by id
    assert _asked(epic, "Medication?_id=")


def test_epic_without_a_patient_list_stops_with_a_message_that_says_to_give_one(
    epic: Emulator, epic_site: Site, tmp_path: Path
) -> None:
    run = _run(epic.base, tmp_path / "out", "--rest", env=epic_site.env)
    assert run.exit_code == 1
    assert "refuses searches across all patients" in run.stderr and "--group ID" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out" / "candidates.json").exists()
    bulk = _run(epic.base, tmp_path / "out", "--bulk", env=epic_site.env)
    assert bulk.exit_code == 2 and "exports only by Group: give --group ID" in bulk.stderr


# -- Oracle Health -----------------------------------------------------------------------------
def test_oracle_crawl_sends_only_listed_parameters_and_matches_the_folder(
    fhir_server: LoadedServer, oracle_site: Site, groups: Groups, tmp_path: Path
) -> None:
    crawled = groups.oracle_crawl
    with _oracle(fhir_server) as oracle:
        run = _run(oracle.base, tmp_path / "out", "--rest", "--group", ORACLE_CRAWL, "--cache", str(tmp_path / "cache"),
                   "--rate", "0", "--concurrency", "8", env=oracle_site.env)  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert [p["id"] for p in run.document["patients"]] == crawled
    assert _only(run, crawled) == _only(oracle_site.folder_run, crawled)
    # Conditions and Procedures by patient only (no `code` search)
    conditions = _asked(oracle, "Condition?patient=")
    assert len(conditions) == len(crawled) and not any("code=" in c for c in conditions)
    assert not any("code=" in p for p in _asked(oracle, "Procedure?"))
    # the population search was refused (422); the crawl's pages ask for at most 200
    assert oracle.seen.refused and all(status == 422 and "needs patient" in why for status, why in oracle.seen.refused)
    crawl = [p for _, p in oracle.seen.requests if "patient=" in p or "_id=" in p]
    assert crawl and all(int(p.split("_count=")[1].split("&")[0]) <= 200 for p in crawl if "_count=" in p)
    assert not _asked(oracle, "MedicationStatement") and not _asked(oracle, "Medication?")  # neither is offered
    assert "offers no Medication, MedicationStatement" in (run.out / "report.html").read_text()


def test_oracle_group_export_leaves_out_what_it_refuses_and_matches_the_folder(
    fhir_server: LoadedServer, oracle_site: Site, groups: Groups, tmp_path: Path
) -> None:
    with _oracle(fhir_server) as oracle:
        run = _run(oracle.base, tmp_path / "out", "--bulk", "--group", ORACLE_ALL, "--cache", str(tmp_path / "cache"),
                   env=oracle_site.env)  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert [p["id"] for p in run.document["patients"]] == groups.oracle_all
    assert _only(run, groups.oracle_all) == _only(oracle_site.folder_run, groups.oracle_all)
    (kickoff,) = _asked(oracle, "/fhir/Group/")
    types = kickoff.split("_type=")[1].split("&")[0].split("%2C")
    assert "Medication" not in types and "MedicationStatement" not in types  # refused in _type here
    assert "_typeFilter" not in kickoff  # Procedure has no `code` search here: no filter built on it
    # files came by 307 from signed storage that refuses a request carrying a token
    assert not oracle.seen.refused


def test_oracle_export_waits_while_another_export_of_the_client_runs(
    fhir_server: LoadedServer, oracle_site: Site, groups: Groups, tmp_path: Path
) -> None:
    busy = replace(ORACLE, busy_seconds=3.0)
    with _oracle(fhir_server, busy) as oracle:
        token = requests.post(oracle.token_url, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, SECRET))
        headers = {"Authorization": f"Bearer {token.json()['access_token']}", "Prefer": "respond-async"}
        other = requests.get(f"{oracle.base}/Group/{ORACLE_ALL}/$export?_type=Patient", headers=headers, timeout=30)
        assert other.status_code == 202
        started = time.monotonic()
        run = _run(oracle.base, tmp_path / "out", "--bulk", "--group", ORACLE_ALL, "--cache", str(tmp_path / "cache"),
                   "--max-retry-after", "1", env=oracle_site.env)  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert sorted(set([p["id"] for p in run.document["patients"]]) ^ set(groups.oracle_all)) == []
    assert _only(run, groups.oracle_all) == _only(oracle_site.folder_run, groups.oracle_all)
    assert (429, "another export of this client is in progress") in oracle.seen.refused
    assert "asks to retry after 600 s, capped at 1 s" in run.stderr
    assert time.monotonic() - started < 120  # Retry-After: 600 was capped at --max-retry-after
