"""Contract §4: a result that depended on data that could not be read becomes unknown; a rule
that reads other resource types keeps its result."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from cohort_finder.criteria import load_trial
from cohort_finder.evaluate import evaluate_patient
from cohort_finder.model import Coding, Fact, PatientFact, PatientRecord

from ..paths import MAPPINGS

AS_OF = date(2026, 6, 30)
NYHA_3 = Coding("http://snomed.info/sct", "420913000")


def _trial(tmp_path: Path, sources: str) -> Path:
    path = tmp_path / "nyha.yaml"
    path.write_text(
        f"""trial: {{id: T1, title: NYHA only}}
mappings: {MAPPINGS}
criteria:
  - id: nyha_3_4
    kind: exclusion
    text: NYHA class III or IV
    rule:
      most_recent_class:
        sources: [{sources}]
        lookback_days: 365
        classes:
          - {{valueset: nyha_class_3, result: met}}
          - {{valueset: nyha_class_4, result: met}}
"""
    )
    return path


def _result(tmp_path: Path, sources: str, incomplete: set[str]) -> str:
    trial = load_trial(_trial(tmp_path, sources))
    observation = Fact("Observation", "o1", "p1", status="final", effective="2026-05-01", value_codings=(NYHA_3,))
    record = PatientRecord(PatientFact("p1", "female", "1960-01-01", False, None), [observation], incomplete)
    return next(c for c in evaluate_patient(trial, record, AS_OF).criteria if c.id == "nyha_3_4").result.value


def test_unreadable_conditions_leave_an_observation_only_class_rule_decided(tmp_path: Path) -> None:
    assert _result(tmp_path, "observation_value", set()) == "met"
    assert _result(tmp_path, "observation_value", {"Condition"}) == "met"


def test_unreadable_data_the_rule_reads_makes_a_most_recent_result_unknown(tmp_path: Path) -> None:
    assert _result(tmp_path, "observation_value, condition_code", {"Condition"}) == "unknown"
    assert _result(tmp_path, "observation_value", {"Observation"}) == "unknown"
