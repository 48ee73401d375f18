"""Runs in the store: each complete run's patients kept as changes against the run before, a
whole state at base runs, every state read back exactly; failed runs recorded with why."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cohort_finder.criteria import Trial, load_trial
from cohort_finder.store import Store, runs
from cohort_finder.store.changes import PatientState, RunState

from ..paths import CRITERIA

TRIAL = load_trial(CRITERIA / "nct07183761.yaml")
WIDTH = len(TRIAL.criteria)


def _complete(store: Store, trial: Trial, as_of: str, patients: dict[str, PatientState]) -> int:
    run = runs.begin(store.con, trial, as_of, "folder", "duckdb", runs.fingerprints(trial))
    previous_info = runs.last_complete(store.con, trial.id, before=run)
    previous = runs.state(store.con, previous_info) if previous_info else None
    counts = {"patients": len(patients), "candidate": 0, "possible": 0, "excluded": 0, "errors": 0}
    done = runs.Completed(patients, counts, [], {"new": 0, "dropped": 0, "changed": 0}, 0, {}, [])
    runs.complete(store.con, run, trial.id, previous, previous_info.base_run if previous_info else None, done)
    return run


def _random_state(rng: random.Random, ids: list[str]) -> dict[str, PatientState]:
    return {
        pid: PatientState(
            rng.choice(["candidate", "possible", "excluded"]), "".join(rng.choice("mnux") for _ in range(WIDTH))
        )
        for pid in ids
    }


def test_every_state_reads_back_exactly_and_only_changes_are_written(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    rng = random.Random(7)
    ids = [f"p{n}" for n in range(200)]
    states = [_random_state(rng, ids)]
    for _ in range(runs.SNAPSHOT_EVERY + 5):  # across a second base run
        state = dict(states[-1])
        for pid in rng.sample(sorted(state), 10):  # ten patients change a night
            state[pid] = _random_state(rng, [pid])[pid]
        state.pop(rng.choice(sorted(state)))  # one leaves
        state[f"new{len(states)}"] = _random_state(rng, ["x"])["x"]  # one arrives
        states.append(state)
    numbers = [_complete(store, TRIAL, f"2026-01-{1 + n % 28:02d}", s) for n, s in enumerate(states)]
    for run, expected in zip(numbers, states, strict=True):
        info = runs.get(store.con, run)
        assert info is not None and info.state == "complete"
        assert dict(runs.state(store.con, info).patients) == expected, run
    written = dict(store.con.execute("SELECT run, count(*) FROM results GROUP BY run").fetchall())
    assert written[numbers[0]] == 200  # the first run is whole
    assert written[numbers[1]] <= 12  # then the changes: ten changed, one gone, one new
    bases = {runs.get(store.con, r).base_run for r in numbers}  # type: ignore[union-attr]
    assert len(bases) == 2  # a second base run after SNAPSHOT_EVERY runs
    store.close()


def test_a_run_whose_criteria_differ_is_stored_whole(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    state = {"p1": PatientState("candidate", "m" * WIDTH)}
    _complete(store, TRIAL, "2026-01-01", state)
    fewer = Trial(TRIAL.id, TRIAL.title, TRIAL.path, TRIAL.criteria[:-1], TRIAL.terminology)
    second = _complete(store, fewer, "2026-01-02", {"p1": PatientState("candidate", "m" * (WIDTH - 1))})
    info = runs.get(store.con, second)
    assert info is not None and info.base_run == second
    assert runs.state(store.con, info).criteria == tuple(c.id for c in fewer.criteria)
    store.close()


def test_a_failed_run_is_recorded_with_why_and_keeps_no_patients(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    run = runs.begin(store.con, TRIAL, "2026-01-01", "https://ehr.example.org/fhir", "python", ("a", "b"))
    runs.fail(store.con, run, 1, "could not read https://ehr.example.org/fhir at all")
    (info,) = runs.history(store.con)
    assert (info.state, info.exit_status, info.message) == (
        "failed",
        1,
        "could not read https://ehr.example.org/fhir at all",
    )
    assert info.finished_at is not None and info.started_at <= info.finished_at
    assert runs.last_complete(store.con, TRIAL.id) is None
    assert store.con.execute("SELECT count(*) FROM results").fetchone()[0] == 0
    store.close()


@pytest.mark.parametrize("changed", ["criteria", "mappings"])
def test_the_criteria_and_mappings_files_are_fingerprinted(tmp_path: Path, changed: str) -> None:
    import shutil

    folder = tmp_path / "trial"
    shutil.copytree(CRITERIA.parent / "mappings", folder / "mappings")
    (folder / "criteria").mkdir()
    path = folder / "criteria" / "t.yaml"
    path.write_text((CRITERIA / "nct07183761.yaml").read_text())
    before = runs.fingerprints(load_trial(path))
    if changed == "criteria":
        path.write_text(path.read_text() + "\n# a comment\n")
    else:
        labs = folder / "mappings" / "labs.yaml"
        labs.write_text(labs.read_text() + "\n# a comment\n")
    after = runs.fingerprints(load_trial(path))
    assert (before[0] != after[0]) == (changed == "criteria") and (before[1] != after[1]) == (changed == "mappings")


def test_state_of_a_run_equals_the_patients_it_was_given() -> None:
    state = RunState(3, "2026-01-01", ("a", "b"), {"p": PatientState("possible", "mu")})
    assert state.patients["p"].by_criterion(state.criteria) == {"a": "met", "b": "unknown"}


def test_a_run_keeps_its_criteria_key_values_and_manual_ones(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    run = _complete(store, TRIAL, "2026-06-30", {})
    info = runs.get(store.con, run)
    assert info is not None
    assert info.infos == TRIAL.infos  # ids, kinds, texts, computable, key value labels
    assert ("hba1c_over_12", "HbA1c") in info.keys and "informed_consent" in info.manual


def test_a_run_stored_before_key_values_reads_as_before(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    run = _complete(store, TRIAL, "2026-06-30", {})
    store.con.execute(  # the criteria as the first release wrote them: [id, kind, text]
        "UPDATE runs SET criteria = ? WHERE run = ?",
        ('[["alive", "inclusion", "Alive"], ["age_18_80", "inclusion", "Aged 18-80"]]', run),
    )
    info = runs.get(store.con, run)
    assert info is not None and info.criteria_ids == ("alive", "age_18_80")
    assert info.keys == () and all(c.computable for c in info.infos)


def test_one_patients_state_is_what_the_whole_state_says(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    rng = random.Random(3)
    ids = [f"p{n}" for n in range(30)]
    state = _random_state(rng, ids)
    for night in range(5):
        state = dict(state)
        state[f"p{night}"] = _random_state(rng, ["x"])["x"]  # one changes a night
        state.pop(f"p{10 + night}")  # one leaves
        run = _complete(store, TRIAL, f"2026-06-{night + 1:02d}", state)
    info = runs.get(store.con, run)
    assert info is not None
    whole = runs.state(store.con, info).patients
    for pid in [*ids, "nobody"]:
        assert runs.patient_state(store.con, info, pid) == whole.get(pid)
