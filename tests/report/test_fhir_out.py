"""report/fhir_out.py: the write-back resources as the contract (§8) states them, valid R4."""

from __future__ import annotations

from pathlib import Path

from cohort_finder.report.fhir_out import Cohort, resources

from ..e2e import cohort_finder
from ..paths import CRITERIA, FIXTURES

COHORT = Cohort(
    trial="NCT07183761",
    title="A trial",
    open={"p1": "candidate", "p2": "possible", "p3": "candidate"},
    before=frozenset({"p1", "gone", "gone-but-enrolled"}),
    decisions={"p3": "eligible", "gone-but-enrolled": "enrolled"},
)


def test_study_group_and_a_subject_for_every_patient_ever_open() -> None:
    study, group, *subjects = resources(COHORT)
    assert study["resourceType"] == "ResearchStudy" and study["status"] == "active-but-not-recruiting"
    assert study["identifier"] == [{"system": "https://clinicaltrials.gov", "value": "NCT07183761"}]
    assert group["identifier"] == [{"system": "urn:cohort-finder:group", "value": "NCT07183761"}]
    assert [m["entity"]["reference"] for m in group["member"]] == ["Patient/p1", "Patient/p2", "Patient/p3"]
    status = {s["individual"]["reference"]: s["status"] for s in subjects}
    assert status == {
        "Patient/gone": "ineligible",  # no longer open, no decision
        "Patient/gone-but-enrolled": "on-study",  # a reviewer's decision stands
        "Patient/p1": "candidate",
        "Patient/p2": "candidate",
        "Patient/p3": "eligible",
    }
    assert all(s["study"] == {"reference": f"ResearchStudy/{study['id']}"} for s in subjects)


def test_ids_are_stable_and_valid_fhir_ids() -> None:
    again = resources(COHORT)
    assert [r["id"] for r in again] == [r["id"] for r in resources(COHORT)]
    long = Cohort("NCT1", "t", {"x" * 80: "candidate"}, frozenset(), {})
    subject = resources(long)[2]
    assert len(subject["id"]) <= 64 and subject["identifier"][0]["value"] == "NCT1/" + "x" * 80


def test_publish_needs_a_server_source(tmp_path: Path) -> None:
    done = cohort_finder("run", "--criteria", str(CRITERIA / "nct07183761.yaml"), "--source",
                         str(FIXTURES / "fhir_bundles"), "--out", str(tmp_path), "--publish")  # fmt: skip
    assert done.returncode == 2 and "--publish writes to the FHIR server the run reads" in done.stderr
    assert not (tmp_path / "candidates.json").exists()
