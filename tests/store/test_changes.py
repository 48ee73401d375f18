"""What changed between two runs (contract §7): new, dropped, changed, and each patient's change."""

from __future__ import annotations

from cohort_finder.store.changes import Change, PatientState, RunState, change_of, diff

CRITERIA = ("alive", "hba1c", "egfr")


def state(run: int, **patients: tuple[str, str]) -> RunState:
    return RunState(run, f"2026-06-{run:02d}", CRITERIA, {pid: PatientState(*v) for pid, v in patients.items()})


def test_new_dropped_and_changed_as_the_contract_defines_them() -> None:
    before = state(
        4,
        stays=("candidate", "mnm"),
        worsens=("candidate", "mnm"),
        leaves=("possible", "mnu"),
        rises=("excluded", "mmm"),
        retested=("possible", "mnu"),
        still_out=("excluded", "mmm"),
        same_status_new_result=("possible", "mun"),
    )
    after = state(
        5,
        stays=("candidate", "mnm"),
        worsens=("excluded", "mmm"),
        rises=("candidate", "mnm"),
        retested=("candidate", "mnm"),
        still_out=("excluded", "mmn"),
        same_status_new_result=("possible", "mnu"),
        arrives=("possible", "mnu"),
    )
    d = diff("T", before, after)
    assert d.as_json() == {
        "trial": "T",
        "from": {"run": 4, "as_of": "2026-06-04"},
        "to": {"run": 5, "as_of": "2026-06-05"},
        "new": [{"id": "arrives", "status": "possible"}, {"id": "rises", "status": "candidate"}],
        "dropped": [
            {"id": "leaves", "from": "possible", "to": "absent", "criteria": []},
            {"id": "worsens", "from": "candidate", "to": "excluded", "criteria": ["hba1c"]},
        ],
        "changed": [
            {"id": "retested", "from": "possible", "to": "candidate", "criteria": ["egfr"]},
            {"id": "same_status_new_result", "from": "possible", "to": "possible", "criteria": ["hba1c", "egfr"]},
        ],
    }


def test_a_patients_change_against_the_previous_run() -> None:
    before = state(4, p=("possible", "mnu"), q=("excluded", "mmm"))
    assert change_of("possible", "mnu", CRITERIA, before, "p") is None
    assert change_of("candidate", "mnn", CRITERIA, before, "p") == Change(4, "possible", ("egfr",))
    assert change_of("excluded", "mmn", CRITERIA, before, "q") == Change(4, "excluded", ("egfr",))
    assert change_of("candidate", "mnn", CRITERIA, before, "new") == Change(4, "absent", ())
    assert change_of("candidate", "mnn", CRITERIA, None, "p") is None  # the first run has nothing to compare with
    # criteria that differ between the runs: compared by id
    assert change_of("possible", "mu", ("alive", "egfr"), before, "p") == Change(4, "possible", ("hba1c",))


def test_criteria_added_or_removed_count_as_changed_results() -> None:
    before = RunState(1, "d", ("alive", "hba1c"), {"p": PatientState("candidate", "mn")})
    after = RunState(2, "d", ("alive", "hba1c", "egfr"), {"p": PatientState("candidate", "mnn")})
    assert diff("T", before, after).as_json()["changed"] == [
        {"id": "p", "from": "candidate", "to": "candidate", "criteria": ["egfr"]}
    ]
