"""Criteria files: the real trials load; invalid ones fail with file, line and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cohort_finder.criteria import load_trial
from cohort_finder.errors import CriteriaError
from cohort_finder.model import Result
from cohort_finder.rules.condition import ConditionRule
from cohort_finder.rules.lab import LabRule
from cohort_finder.rules.logic import AnyOf

from .paths import CRITERIA, ROOT, TEST_DATA

# Written down once, by hand from the trial page, in the fixture builder; it writes them here.
_HAND = json.loads((ROOT / "tests" / "expected" / "nct07183761_fixtures.json").read_text(encoding="utf-8"))
NCT07183761_IDS: list[str] = _HAND["criteria"]
# manual for every hand-built patient: no computable rule
MANUAL = {c for c in NCT07183761_IDS if all(p["criteria"][c] == "manual" for p in _HAND["patients"].values())}


def test_nct07183761_has_every_row_of_the_trial_page_in_order() -> None:
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    assert trial.id == "NCT07183761"
    assert [c.id for c in trial.criteria] == NCT07183761_IDS
    assert {c.id for c in trial.criteria if c.rule is None} - {"alive"} == MANUAL
    kinds = {c.id: c.kind for c in trial.criteria}
    assert kinds["age_18_80"] == "inclusion" and kinds["hba1c_over_12"] == "exclusion"
    assert all(c.text for c in trial.criteria)
    info = {c.id: c.info for c in trial.criteria}
    assert info["alive"].computable and not info["tcss_9_or_more"].computable


def test_thresholds_come_from_yaml() -> None:
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    hba1c = next(c for c in trial.criteria if c.id == "hba1c_over_12").rule
    assert isinstance(hba1c, LabRule)
    assert (hba1c.op, hba1c.value, hba1c.unit, hba1c.lookback_days) == (">", 12.0, "%", 365)
    dpn = next(c for c in trial.criteria if c.id == "diabetic_peripheral_neuropathy").rule
    assert isinstance(dpn, AnyOf) and isinstance(dpn.parts()[1], ConditionRule)
    assert dpn.parts()[1].outcome == ((Result.MET, Result.UNKNOWN),)


def test_every_criteria_file_in_the_repo_loads() -> None:
    files = sorted(CRITERIA.glob("*.yaml"))
    assert len(files) >= 2
    for path in files:
        trial = load_trial(path)
        assert trial.criteria[0].id == "alive"


@pytest.mark.parametrize(
    ("name", "line", "reason"),
    [
        ("criteria_invalid_unknown_rule.yaml", 13, "unknown rule kind 'lab_ul'"),
        ("criteria_invalid_unknown_valueset.yaml", 8, "unknown value set 'type_2_diabetes_typo'"),
        ("criteria_invalid_duplicate_id.yaml", 8, "'adults' is used twice"),
        ("criteria_invalid_yaml_syntax.yaml", 6, "not valid YAML"),
        ("criteria_invalid_unit.yaml", 8, "unit 'mg/dL' cannot be converted"),
        ("criteria_invalid_unknown_parameter.yaml", 8, "no parameter 'lookback'"),
        ("criteria_invalid_reserved_alive.yaml", 4, "built-in 'alive'"),
        ("criteria_invalid_missing_lookback.yaml", 8, "'lookback_days' must be a whole number"),
        ("criteria_invalid_outcome.yaml", 9, "outcome maps met/not_met/unknown"),
        ("criteria_invalid_key_value_unknown_analyte.yaml", 3, "key_values: unknown analyte 'hbalc'"),
        ("criteria_invalid_key_value_not_read.yaml", 3, "key_values: no criterion reads analyte 'egfr'"),
    ],
)
def test_invalid_criteria_name_file_line_and_reason(name: str, line: int, reason: str) -> None:
    path = TEST_DATA / "criteria" / name
    with pytest.raises(CriteriaError) as caught:
        load_trial(path)
    error = caught.value
    assert error.path == str(path)
    assert error.line == line, str(error)
    assert reason in error.reason
    assert str(error).startswith(f"{path}:{line}: ")


def test_key_values_label_the_first_criterion_reading_each_analyte() -> None:
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    assert trial.key_values == (("hba1c", "HbA1c"), ("egfr", "eGFR"))
    keyed = [(c.id, c.key) for c in trial.infos if c.key]
    assert keyed == [("hba1c_over_12", "HbA1c"), ("egfr_under_30", "eGFR")]


def test_without_key_values_the_first_three_lab_analytes_are_shown(tmp_path: Path) -> None:
    labs = ["hba1c", "egfr", "alt", "platelets"]
    units = {"hba1c": "%", "egfr": "mL/min/{1.73_m2}", "alt": "U/L", "platelets": "10*9/L"}
    rows = "".join(
        f"""  - id: {name}_high
    kind: exclusion
    text: {name} high
    rule:
      lab: {{analyte: {name}, unit: "{units[name]}", op: ">", value: 1, lookback_days: 365}}
"""
        for name in labs
    )
    path = tmp_path / "trial.yaml"
    path.write_text(f"trial: {{id: T, title: T}}\nmappings: {ROOT / 'mappings'}\ncriteria:\n{rows}")
    trial = load_trial(path)
    assert [name for name, _ in trial.key_values] == ["hba1c", "egfr", "alt"]
    assert dict(trial.key_values)["hba1c"] == "Hemoglobin A1c"  # the title before its parenthesis
