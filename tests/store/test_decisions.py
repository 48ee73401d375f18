"""Reviewer decisions: recorded for patients the store has seen, every change kept, all or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from cohort_finder.errors import UsageError
from cohort_finder.store import Store, decisions

from .test_runs import TRIAL, WIDTH, PatientState, _complete


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store.open(tmp_path / "h.sqlite")
    _complete(opened, TRIAL, "2026-01-01", {"p1": PatientState("candidate", "m" * WIDTH)})
    _complete(opened, TRIAL, "2026-01-02", {"p2": PatientState("possible", "u" * WIDTH)})  # p1 has left
    return opened


def test_each_change_is_kept_with_who_when_and_what_it_replaced(store: Store) -> None:
    p = decisions.Proposed
    decisions.record(store.con, [p(TRIAL.id, "p1", "contacted", "left a message", "ann")], at="2026-01-03T09:00:00Z")
    decisions.record(store.con, [p(TRIAL.id, "p1", "contacted", "left a message", "bob")])  # the same: not again
    decisions.record(store.con, [p(TRIAL.id, "p1", "declined", None, "bob")], at="2026-01-04T10:00:00Z")
    history = decisions.history(store.con, TRIAL.id, "p1")
    assert [(d.decision, d.by, d.at, d.before) for d in history] == [
        ("contacted", "ann", "2026-01-03T09:00:00Z", None),
        ("declined", "bob", "2026-01-04T10:00:00Z", "contacted"),
    ]
    assert decisions.latest(store.con, TRIAL.id)["p1"].decision == "declined"  # p1 left the source: kept


def test_nothing_is_recorded_when_any_decision_is_wrong(store: Store) -> None:
    p = decisions.Proposed
    wrong = [
        p(TRIAL.id, "p2", "eligible", where="w.csv:row 2"),
        p(TRIAL.id, "p2", "maybe", where="w.csv:row 3"),
        p(TRIAL.id, "nobody", "eligible", where="w.csv:row 4"),
        p("NCT00000000", "p2", "eligible", where="w.csv:row 5"),
    ]
    with pytest.raises(UsageError) as raised:
        decisions.record(store.con, wrong)
    message = str(raised.value)
    assert "w.csv:row 3: unknown decision 'maybe'" in message
    assert "w.csv:row 4: patient 'nobody' has never been in a run of NCT07183761" in message
    assert "w.csv:row 5: trial 'NCT00000000' has no complete run" in message
    assert "row 2" not in message
    assert decisions.latest(store.con, TRIAL.id) == {}
