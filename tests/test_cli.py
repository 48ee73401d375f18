"""The command as cron and people use it: exit codes, messages, no tracebacks, env settings."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from .e2e import cohort_finder
from .paths import CRITERIA, FIXTURES, TEST_DATA

TRIAL = str(CRITERIA / "nct07183761.yaml")


def _patient(pid: str) -> str:
    return json.dumps({"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1960-01-01"})


def test_validate_ok_names_counts_and_mapping_versions() -> None:
    done = cohort_finder("validate", TRIAL)
    assert done.returncode == 0, done.stderr
    assert "NCT07183761: 31 criteria (23 computable, 8 manual)" in done.stdout
    assert "labs.yaml 2026.11" in done.stdout


def test_invalid_criteria_exit_2_with_file_line_reason_and_no_traceback() -> None:
    bad = TEST_DATA / "criteria" / "criteria_invalid_unknown_rule.yaml"
    for args in (("validate", str(bad)), ("run", "--criteria", str(bad), "--source", str(FIXTURES), "--out", "/tmp/x")):
        done = cohort_finder(*args)
        assert done.returncode == 2
        assert f"{bad}:13: unknown rule kind 'lab_ul'" in done.stderr
        assert "Traceback" not in done.stderr


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    missing = cohort_finder("run", "--criteria", TRIAL, "--out", str(tmp_path))
    assert missing.returncode == 2 and "--source" in missing.stderr
    bad_date = cohort_finder(
        "run", "--criteria", TRIAL, "--source", str(tmp_path), "--out", str(tmp_path / "o"), "--as-of", "2026-13-01"
    )
    assert bad_date.returncode == 2 and "--as-of must be a date" in bad_date.stderr
    no_source = cohort_finder(
        "run", "--criteria", TRIAL, "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o")
    )
    # a source that cannot be read at all is a failed run (exit 1, contract §4), not bad usage
    assert no_source.returncode == 1 and "source not found" in no_source.stderr
    no_workers = cohort_finder(
        "run", "--criteria", TRIAL, "--source", str(tmp_path), "--out", str(tmp_path / "o"), "--workers", "0"
    )
    assert no_workers.returncode == 2 and "--workers" in no_workers.stderr
    assert "Traceback" not in bad_date.stderr + no_source.stderr + no_workers.stderr


def test_unreadable_data_exits_1_lists_errors_and_keeps_everyone(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "Patient.ndjson").write_text(_patient("p1") + "\n" + _patient("p2") + "\n")
    hba1c = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p2"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "effectiveDateTime": "2026-05-01",
        "valueQuantity": {"value": 13.0, "unit": "%", "code": "%"},
    }
    line = json.dumps(hba1c)
    (source / "Observation.ndjson").write_text(line[:-20] + "\n")  # cut short: broken, but names Patient/p2
    out = tmp_path / "out"
    done = cohort_finder(
        "run", "--criteria", TRIAL, "--source", str(source), "--out", str(out), "--as-of", "2026-06-30"
    )
    assert done.returncode == 1, done.stderr
    doc = json.loads((out / "candidates.json").read_text())
    assert [p["id"] for p in doc["patients"]] == ["p1", "p2"]
    assert doc["errors"] == [{"source": "Observation.ndjson:1", "message": "line 1 is not valid JSON (Patient/p2)"}]
    p2 = {c["id"]: c for c in doc["patients"][1]["criteria"]}
    assert p2["hba1c_over_12"]["result"] == "unknown"  # not silently not_met
    assert "could not be read" in p2["hba1c_over_12"]["note"]
    p1 = {c["id"]: c for c in doc["patients"][0]["criteria"]}
    assert p1["hba1c_over_12"]["result"] == "unknown" and "could not be read" not in p1["hba1c_over_12"]["note"]
    assert "1 errors" in done.stdout


def test_options_come_from_the_environment_and_outputs_are_0600(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "p.json").write_text(_patient("p1"))
    out = tmp_path / "out"
    env = {
        "COHORT_FINDER_RUN_AS_OF": "2026-06-30",
        "COHORT_FINDER_RUN_SOURCE": str(source),
        "COHORT_FINDER_RUN_WORKERS": "2",
    }
    done = cohort_finder("run", "--criteria", TRIAL, "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "candidates.json").read_text())
    assert doc["as_of"] == "2026-06-30" and doc["patients"][0]["age"] == 66
    for name in ("candidates.json", "candidates.csv", "report.html"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600


def test_logs_carry_ids_and_counts_but_no_names_or_birth_dates(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"given": ["Zebulon"], "family": "Quixote"}],
        "birthDate": "1961-02-03",
        "gender": "male",
    }
    (source / "p.json").write_text(json.dumps(patient))
    (source / "bad.ndjson").write_text(
        '{"resourceType": "Observation", "subject": {"reference": "Patient/p1"}, "note": "Zebulon\n'
    )
    done = cohort_finder(
        "-v", "run", "--criteria", TRIAL, "--source", str(source), "--out", str(tmp_path / "o"), "--as-of", "2026-06-30"
    )
    assert done.returncode == 1
    logged = done.stdout + done.stderr
    assert "Zebulon" not in logged and "Quixote" not in logged and "1961-02-03" not in logged
    assert "1 patients" in logged


def test_json_log_lines_carry_ids_and_counts_only(tmp_path: Path) -> None:
    done = cohort_finder(
        "--log-format", "json", "run", "--criteria", TRIAL, "--source", str(FIXTURES / "bad_input"),
        "--out", str(tmp_path / "o"), "--as-of", "2026-06-30",
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines and all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
    assert any(line["message"].startswith("patients 5:") for line in lines)
    names = [n["family"] for p in map(json.loads, (FIXTURES / "bad_input" / "Patient.ndjson").read_text().splitlines())
             for n in p.get("name", [])]  # fmt: skip
    assert names and not any(name in done.stderr for name in names)


def test_as_of_comes_from_the_environment_as_the_docstring_says(tmp_path: Path) -> None:
    """COHORT_FINDER_RUN_AS_OF (COHORT_FINDER_<COMMAND>_<OPTION>) sets --as-of, for cron jobs."""
    done = cohort_finder(
        "run", "--criteria", str(CRITERIA / "nct07183761.yaml"), "--source", str(FIXTURES / "fhir_bundles" / "age"),
        "--out", str(tmp_path), env={"COHORT_FINDER_RUN_AS_OF": "2026-06-30"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "candidates.json").read_text())["as_of"] == "2026-06-30"
    bad = cohort_finder("run", "--criteria", str(CRITERIA / "nct07183761.yaml"), "--source", str(FIXTURES),
                        "--out", str(tmp_path / "x"), env={"COHORT_FINDER_RUN_AS_OF": "30/06/2026"})  # fmt: skip
    assert bad.returncode == 2 and "--as-of must be a date YYYY-MM-DD" in bad.stderr and "Traceback" not in bad.stderr
