"""Write-back (contract §8) to the real FHIR test server: one ResearchStudy, one Group of the
candidates and possibles, one ResearchSubject each with its status from the reviewer's
decision; publishing twice leaves one of each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from ..e2e import Run, cohort_finder
from ..paths import CRITERIA
from .conftest import LoadedServer

TRIAL = "NCT07183761"


def _run(server: LoadedServer, out: Path) -> Run:
    done = cohort_finder(
        "run", "--criteria", str(CRITERIA / "nct07183761.yaml"), "--source", server.base, "--out", str(out),
        "--as-of", "2026-06-30", "--rest", "--publish", "--store", str(out.parent / "history.sqlite"),
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr, out)


def _search(server: LoadedServer, rtype: str) -> list[dict[str, Any]]:
    found, url, params = [], f"{server.base}/{rtype}", {"_count": "1000"}
    while url:
        bundle = requests.get(url, params=params, headers={"Accept": "application/fhir+json"}, timeout=30).json()
        found += [e["resource"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), "")
        params = {}
    return found


def test_publish_writes_the_study_the_group_and_a_subject_each_idempotently(
    fhir_server: LoadedServer, tmp_path: Path
) -> None:
    first = _run(fhir_server, tmp_path / "one")
    assert first.exit_code == 0, first.stderr
    open_ids = sorted(p["id"] for p in first.document["patients"] if p["status"] != "excluded")
    assert f"published {len(open_ids) + 2} resources" in first.stdout
    store = str(tmp_path / "history.sqlite")
    enrolled, declined = open_ids[0], open_ids[1]
    for pid, decision in ((enrolled, "enrolled"), (declined, "declined")):
        done = cohort_finder("review", "set", "--store", store, "--trial", TRIAL, "--patient", pid,
                             "--decision", decision, "--by", "coordinator")  # fmt: skip
        assert done.returncode == 0, done.stderr
    second = _run(fhir_server, tmp_path / "two")
    assert second.exit_code == 0, second.stderr

    studies = [s for s in _search(fhir_server, "ResearchStudy") if s["identifier"][0]["value"] == TRIAL]
    assert len(studies) == 1 and studies[0]["status"] == "active-but-not-recruiting"
    assert studies[0]["identifier"][0]["system"] == "https://clinicaltrials.gov"
    groups = [g for g in _search(fhir_server, "Group") if g.get("identifier", [{}])[0].get("value") == TRIAL]
    assert len(groups) == 1 and groups[0]["type"] == "person" and groups[0]["actual"] is True
    assert sorted(m["entity"]["reference"] for m in groups[0]["member"]) == [f"Patient/{p}" for p in open_ids]
    subjects = {
        s["individual"]["reference"].removeprefix("Patient/"): s
        for s in _search(fhir_server, "ResearchSubject")
        if s["identifier"][0]["value"].startswith(f"{TRIAL}/")
    }
    assert sorted(subjects) == open_ids  # two publishes, one subject each
    assert subjects[enrolled]["status"] == "on-study" and subjects[declined]["status"] == "not-registered"
    assert subjects[open_ids[2]]["status"] == "candidate"
    assert subjects[enrolled]["study"]["reference"] == f"ResearchStudy/{studies[0]['id']}"
    assert subjects[enrolled]["identifier"][0] == {
        "system": "urn:cohort-finder:subject",
        "value": f"{TRIAL}/{enrolled}",
    }
