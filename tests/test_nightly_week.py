"""A week of nightly runs (contract §7): as-of moves one day a night, resources are added,
changed and deleted between nights, and each night's diff is exactly what is written here by
hand (from the trial's rules: the patients are build_nct07183761's clean candidate, each with
one thing that happens during the week)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .e2e import Run, cohort_finder
from .paths import CRITERIA, FIXTURES

sys.path.insert(0, str(FIXTURES))
import build_nct07183761 as base

NIGHTS = ["2026-06-24", "2026-06-25", "2026-06-26", "2026-06-27", "2026-06-28", "2026-06-29", "2026-06-30"]


def _clean(pid: str, **patient: Any) -> dict[str, dict[str, Any] | None]:
    return base.baseline(pid, **patient)


def source_on(night: int) -> list[dict[str, Any]]:
    """The EHR's resources on night `night` (0-based)."""
    patients: list[dict[str, dict[str, Any] | None]] = []
    patients.append(_clean("w-stable"))
    if night >= 1:  # arrives on night 2
        patients.append(_clean("w-new-patient"))
    rises = _clean("w-hba1c-rises")
    if night >= 2:  # night 3: an HbA1c of 12.5 % dated that day
        rises["extra"] = base.lab("w-hba1c-rises", "hba1c", 12.5, suffix="-new", when="2026-06-26T08:00:00+00:00")
    patients.append(rises)
    ages = _clean("w-egfr-ages-out")
    ages["egfr"] = base.lab("w-egfr-ages-out", "egfr", when="2025-06-25T08:00:00+00:00")  # 365 days before night 2
    patients.append(ages)
    if night < 3:  # gone from the source on night 4
        patients.append(_clean("w-leaves"))
    refuted = _clean("w-condition-changed")
    if night >= 4:  # night 5: a newer version of the DPN Condition says refuted
        dpn = refuted["dpn"]
        assert dpn is not None
        dpn["verificationStatus"] = base.concept(base.coding(base.VERIFICATION, "refuted"))
        dpn["meta"] = {"lastUpdated": "2026-06-28T07:00:00Z"}
    patients.append(refuted)
    old = _clean("w-excluded-stays", birth="1940-01-01")
    if night >= 5:  # night 6: the excluded patient's record changes (a name): no diff entry
        patient = old["patient"]
        assert patient is not None
        patient["name"] = [{"family": "Renamed", "given": ["Ada"]}]
    patients.append(old)
    platelets = _clean("w-possible-becomes-candidate")
    platelets["platelets"] = None  # unknown until night 6 brings a count
    if night >= 5:
        platelets["platelets"] = base.lab("w-possible-becomes-candidate", "platelets", when="2026-06-29T08:00:00+00:00")
    patients.append(platelets)
    return [r for slots in patients for r in slots.values() if r is not None]


EXPECTED_DIFFS = {  # night -> the contract's diff lists, by hand
    1: {"new": [{"id": "w-new-patient", "status": "candidate"}], "dropped": [], "changed": []},
    2: {
        "new": [],
        "dropped": [{"id": "w-hba1c-rises", "from": "candidate", "to": "excluded", "criteria": ["hba1c_over_12"]}],
        "changed": [{"id": "w-egfr-ages-out", "from": "candidate", "to": "possible", "criteria": ["egfr_under_30"]}],
    },
    3: {"new": [], "dropped": [{"id": "w-leaves", "from": "candidate", "to": "absent", "criteria": []}], "changed": []},
    4: {
        "new": [],
        "dropped": [
            {
                "id": "w-condition-changed",
                "from": "candidate",
                "to": "excluded",
                "criteria": ["diabetic_peripheral_neuropathy"],
            }
        ],
        "changed": [],
    },
    5: {
        "new": [],
        "dropped": [],
        "changed": [
            {
                "id": "w-possible-becomes-candidate",
                "from": "possible",
                "to": "candidate",
                "criteria": ["platelets_under_90"],
            }
        ],
    },
    6: {"new": [], "dropped": [], "changed": []},
}


def _write(folder: Path, resources: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(json.dumps(r))
    for path in folder.glob("*.ndjson"):
        path.unlink()
    for rtype, lines in by_type.items():
        (folder / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class Week:
    store: Path
    documents: list[dict[str, Any]]  # each night's candidates.json (read before the next night)
    summaries: list[str]  # each night's summary line
    diffs: list[dict[str, Any]]  # `diff --json` after nights 2..7


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Week:
    root = tmp_path_factory.mktemp("week")
    store = root / "out" / "history.sqlite"
    result = Week(store, [], [], [])
    for night, as_of in enumerate(NIGHTS):
        _write(root / "ehr", source_on(night))
        done = cohort_finder(
            "run", "--criteria", str(CRITERIA / "nct07183761.yaml"), "--source", str(root / "ehr"),
            "--out", str(root / "out"), "--as-of", as_of,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result.documents.append(Run(done.returncode, done.stdout, done.stderr, root / "out").document)
        result.summaries.append(done.stdout.splitlines()[0])
        if night == 1:  # a coordinator contacts the patient who will leave: the decision must survive
            set_ = cohort_finder("review", "set", "--store", str(store), "--trial", "NCT07183761",
                                 "--patient", "w-leaves", "--decision", "contacted", "--by", "coordinator")  # fmt: skip
            assert set_.returncode == 0, set_.stderr
        if night:
            shown = cohort_finder("diff", "--store", str(store), "--json")
            assert shown.returncode == 0, shown.stderr
            result.diffs.append(json.loads(shown.stdout))
    return result


def _patients(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in document["patients"]}


@pytest.mark.parametrize("night", sorted(EXPECTED_DIFFS))
def test_each_nights_diff_is_the_hand_written_one(week: Week, night: int) -> None:
    shown = week.diffs[night - 1]
    assert shown["from"] == {"run": night, "as_of": NIGHTS[night - 1]}
    assert shown["to"] == {"run": night + 1, "as_of": NIGHTS[night]}
    assert {k: shown[k] for k in ("new", "dropped", "changed")} == EXPECTED_DIFFS[night]
    assert shown["trial"] == "NCT07183761"


def test_the_outputs_carry_the_change_and_the_summary_line_counts_it(week: Week) -> None:
    third = _patients(week.documents[2])
    assert third["w-hba1c-rises"]["change"] == {
        "since_run": 2,
        "status_before": "candidate",
        "criteria": ["hba1c_over_12"],
    }
    assert "change" not in third["w-stable"]
    assert week.summaries[2].endswith("since run 2: 0 new, 1 dropped, 1 changed (run 3)")
    assert "since run" not in week.summaries[0]  # the first night has nothing to compare with
    excluded = _patients(week.documents[5])["w-excluded-stays"]
    assert excluded["status"] == "excluded" and "change" not in excluded  # a new name changes no result


def test_a_decision_outlives_the_patient_leaving_the_source(week: Week) -> None:
    assert _patients(week.documents[2])["w-leaves"]["review"]["decision"] == "contacted"
    assert "w-leaves" not in _patients(week.documents[3])
    again = cohort_finder("review", "set", "--store", str(week.store), "--trial", "NCT07183761",
                          "--patient", "w-leaves", "--decision", "declined", "--by", "coordinator")  # fmt: skip
    assert again.returncode == 0, again.stderr  # a patient seen once can still be decided on
    history = cohort_finder("history", "--store", str(week.store), "--json")
    assert [r["state"] for r in json.loads(history.stdout)] == ["complete"] * len(NIGHTS)
