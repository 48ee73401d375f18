"""history, diff and review on the command line: JSON for scripts, tables for people, exit 2
for what cannot be done, and decisions that come back in the next run's outputs."""

from __future__ import annotations

import csv
import json
import shutil
import stat
from pathlib import Path

import openpyxl
import pytest

from .e2e import Run, cohort_finder
from .paths import CRITERIA, FIXTURES

TRIAL = str(CRITERIA / "nct07183761.yaml")


def run(source: Path, out: Path, as_of: str, *extra: str) -> Run:
    done = cohort_finder(
        "run", "--criteria", TRIAL, "--source", str(source), "--out", str(out), "--as-of", as_of, *extra
    )
    return Run(done.returncode, done.stdout, done.stderr, out)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nightly") / "out"
    for as_of in ("2026-06-29", "2026-06-30"):
        assert run(FIXTURES / "fhir_bundles", out, as_of).exit_code == 0
    return out / "history.sqlite"


def test_history_lists_every_run_as_json_and_as_a_table(two_runs: Path) -> None:
    done = cohort_finder("history", "--store", str(two_runs), "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [(r["run"], r["state"], r["as_of"], r["exit_status"]) for r in listed] == [
        (1, "complete", "2026-06-29", 0),
        (2, "complete", "2026-06-30", 0),
    ]
    assert listed[1]["patients"] == 220
    assert (listed[1]["new"], listed[1]["dropped"], listed[1]["changed"]) == (11, 5, 13)
    assert len(listed[0]["criteria_sha256"]) == 64 and len(listed[0]["mappings_sha256"]) == 64
    table = cohort_finder("history", "--store", str(two_runs)).stdout
    assert table.splitlines()[0].split()[:4] == ["run", "trial", "state", "exit"]
    assert "2026-06-30" in table and "fixtures/fhir_bundles" in table


def test_diff_prints_the_contracts_json_and_a_readable_text(two_runs: Path) -> None:
    done = cohort_finder("diff", "--store", str(two_runs), "--json")
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    assert list(d) == ["trial", "from", "to", "new", "dropped", "changed"]
    assert (d["from"], d["to"]) == ({"run": 1, "as_of": "2026-06-29"}, {"run": 2, "as_of": "2026-06-30"})
    assert {
        "id": "hba1c-dated-on-as-of-counts",
        "from": "candidate",
        "to": "excluded",
        "criteria": ["hba1c_over_12"],
    } in d["dropped"]
    assert [e["id"] for e in d["new"]] == sorted(e["id"] for e in d["new"])
    text = cohort_finder("diff", "--store", str(two_runs), "--from", "1", "--to", "2").stdout
    assert text.startswith("NCT07183761: run 1 (2026-06-29) -> run 2 (2026-06-30): 11 new, 5 dropped, 13 changed")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--to", "1"], "run 1 is the first complete run of NCT07183761: nothing before it to compare with"),
        (["--from", "1", "--to", "9"], "no run 9"),
        (["--trial", "NCT00000000"], "trial 'NCT00000000' has no run"),
    ],
)
def test_diff_that_cannot_be_done_exits_2(two_runs: Path, args: list[str], says: str) -> None:
    done = cohort_finder("diff", "--store", str(two_runs), *args)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_diff_refuses_runs_of_different_trials_and_failed_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(FIXTURES / "fhir_bundles", out, "2026-06-30").exit_code == 0
    alone = cohort_finder("diff", "--store", str(out / "history.sqlite"))
    assert alone.returncode == 2 and "NCT07183761 has 1 complete run: diff needs two" in alone.stderr
    other = cohort_finder("run", "--criteria", str(CRITERIA / "nct03036150.yaml"), "--source",
                          str(FIXTURES / "nct03036150"), "--out", str(out), "--as-of", "2026-06-30")  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert run(tmp_path / "missing", out, "2026-06-30").exit_code == 1  # run 3 failed
    store = str(out / "history.sqlite")
    mixed = cohort_finder("diff", "--store", store, "--from", "1", "--to", "2")
    assert mixed.returncode == 2 and "different trials" in mixed.stderr
    failed = cohort_finder("diff", "--store", store, "--from", "1", "--to", "3")
    assert failed.returncode == 2 and "run 3 is failed, not complete" in failed.stderr
    several = cohort_finder("diff", "--store", store)
    assert several.returncode == 2 and "several trials: give --trial" in several.stderr


def test_a_store_that_is_not_a_store_exits_2_and_nothing_changes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "history.sqlite").write_text("not a database")
    (out / "candidates.json").write_text("yesterday's")
    done = run(FIXTURES / "fhir_bundles", out, "2026-06-30")
    assert done.exit_code == 2 and "not a cohort-finder store" in done.stderr
    assert (out / "candidates.json").read_text() == "yesterday's"
    assert (out / "history.sqlite").read_text() == "not a database"


def test_the_worklist_round_trip_in_csv_and_xlsx(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(FIXTURES / "fhir_bundles", out, "2026-06-30").exit_code == 0
    store = str(out / "history.sqlite")
    for suffix in ("csv", "xlsx"):
        done = cohort_finder("review", "export", "--store", store, "--out", str(tmp_path / f"w.{suffix}"))
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE((tmp_path / f"w.{suffix}").stat().st_mode) == 0o600
    rows = list(csv.DictReader((tmp_path / "w.csv").open()))
    assert {r["status"] for r in rows} == {"candidate", "possible"} and len(rows) == 150  # 96 + 54
    first = rows[0]
    assert (
        first["decision"] == "" and first["note"] == "" and "hba1c_over_12 8.1 % on 2026-05-01" in first["key_values"]
    )
    assert "tcss_9_or_more" in first["to_check_by_hand"]

    book = openpyxl.load_workbook(tmp_path / "w.xlsx")
    sheet = book["worklist"]
    header = [c.value for c in sheet[1]]
    assert header[-2:] == ["decision", "note"]
    patient_col, decision_col, note_col = (header.index(n) + 1 for n in ("patient", "decision", "note"))
    chosen = sheet.cell(2, patient_col).value
    sheet.cell(2, decision_col).value = "contacted"
    sheet.cell(2, note_col).value = "=called back"  # a formula-looking note is text
    book.save(tmp_path / "filled.xlsx")
    done = cohort_finder("review", "import", str(tmp_path / "filled.xlsx"), "--store", store, "--by", "coordinator")
    assert done.returncode == 0 and "1 decisions recorded" in done.stdout, done.stderr

    again = run(FIXTURES / "fhir_bundles", out, "2026-06-30")
    review = {p["id"]: p for p in again.document["patients"]}[chosen]["review"]
    assert (review["decision"], review["by"], review["note"]) == ("contacted", "coordinator", "=called back")
    assert "decision: contacted by coordinator" in (out / "report.html").read_text()
    cohort_finder("review", "export", "--store", store, "--out", str(tmp_path / "w2.csv"))
    exported = {r["patient"]: r for r in csv.DictReader((tmp_path / "w2.csv").open())}[chosen]
    assert (exported["last_decision"], exported["last_decision_by"], exported["decision"]) == (
        "contacted",
        "coordinator",
        "",
    )


def test_an_import_with_any_wrong_row_records_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(FIXTURES / "fhir_bundles", out, "2026-06-30").exit_code == 0
    store = str(out / "history.sqlite")
    cohort_finder("review", "export", "--store", store, "--out", str(tmp_path / "w.csv"))
    rows = list(csv.reader((tmp_path / "w.csv").open()))
    header = rows[0]
    rows[1][header.index("decision")] = "eligible"
    rows[2][header.index("decision")] = "perhaps"
    rows[3][header.index("decision")] = "declined"
    rows[3][header.index("patient")] = "somebody-else"
    rows[4][header.index("decision")] = "declined"
    rows[4][header.index("trial")] = "NCT99999999"
    csv.writer((tmp_path / "filled.csv").open("w")).writerows(rows)
    done = cohort_finder("review", "import", str(tmp_path / "filled.csv"), "--store", store)
    assert done.returncode == 2, done.stderr
    assert "filled.csv:row 3: unknown decision 'perhaps'" in done.stderr
    assert "filled.csv:row 4: patient 'somebody-else' has never been in a run" in done.stderr
    assert "filled.csv:row 5: trial 'NCT99999999' has no complete run" in done.stderr
    again = run(FIXTURES / "fhir_bundles", out, "2026-06-30")
    assert not any("review" in p for p in again.document["patients"])
    shutil.rmtree(out)
