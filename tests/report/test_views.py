"""report/views.py: evidence in words, grouping by effect, key values, what changed."""

from __future__ import annotations

from datetime import date

import pytest

from cohort_finder.model import CriterionInfo
from cohort_finder.report.views import (
    ago,
    change_words,
    code_text,
    evidence_view,
    group_of,
    note_text,
    patient_view,
    quantity,
)

AS_OF = date(2026, 6, 30)


@pytest.mark.parametrize(
    ("day", "words"),
    [
        ("2026-06-30", "on as-of"),
        ("2026-06-29", "1 day before as-of"),
        ("2026-06-17", "13 days before as-of"),  # the last day counted in days
        ("2026-06-16", "2 weeks before as-of"),  # 14 days: weeks from here
        ("2026-05-01", "9 weeks before as-of"),  # 60 days
        ("2026-04-30", "2 months before as-of"),  # 61 days: months from here
        ("2024-07-01", "24 months before as-of"),  # 729 days
        ("2024-06-30", "2 years before as-of"),  # 730 days: years
        ("2026-07-02", "2 days after as-of"),
        ("2026-13-45", None),  # not a date: no words rather than a guess
        ("2026", None),  # partial: no span
        (None, None),
    ],
)
def test_ago_words_each_side_of_each_unit(day: str | None, words: str | None) -> None:
    assert ago(day, AS_OF) == words


@pytest.mark.parametrize(
    ("kind", "result", "group"),
    [
        ("inclusion", "met", "supports"),
        ("inclusion", "not_met", "rules_out"),
        ("exclusion", "met", "rules_out"),
        ("exclusion", "not_met", "supports"),
        ("inclusion", "unknown", "unknown"),
        ("exclusion", "manual", "manual"),
    ],
)
def test_group_is_the_results_effect_on_eligibility(kind: str, result: str, group: str) -> None:
    assert group_of(kind, result) == group


def test_evidence_in_words_with_the_code_as_secondary_detail() -> None:
    ev = evidence_view(
        {
            "resource": "Observation/x",
            "code": "http://loinc.org|1742-6",
            "display": "ALT [Enzymatic activity/volume]",
            "date": "2026-06-01",
            "value": 130.0,
            "unit": "U/L",
            "uln": 40,
            "uln_source": "default",
            "original_value": 2.2,
            "original_unit": "ukat/L",
        },
        AS_OF,
    )
    assert ev.what == "ALT [Enzymatic activity/volume]"
    assert ev.value == "130 U/L"
    assert ev.when == "2026-06-01 (4 weeks before as-of)"
    assert ev.extras == ("converted from 2.2 ukat/L", "ULN 40 U/L (default ULN)")
    assert (ev.code, ev.resource) == ("LOINC 1742-6", "Observation/x")


def test_units_and_codes_as_a_reader_writes_them() -> None:
    assert quantity(75, "mL/min/{1.73_m2}") == "75 mL/min/1.73 m²"
    assert quantity(3.5, "10*9/L") == "3.5 \u00d710⁹/L"
    assert quantity(61, "a") == "61 years"
    assert code_text("http://snomed.info/sct|44054006") == "SNOMED CT 44054006"
    assert code_text("urn:example|x1") == "urn:example x1"
    assert note_text("T2DM: http://snomed.info/sct|44054006, http://hl7.org/fhir/sid/icd-10-cm|E11.9") == (
        "T2DM: SNOMED CT 44054006, ICD-10-CM E11.9"
    )


def test_change_words_name_new_dropped_and_changed() -> None:
    assert change_words(None, "candidate") == (None, None)
    assert change_words({"since_run": 3, "status_before": "absent", "criteria": []}, "possible") == (
        "new since run 3",
        "new",
    )
    assert change_words({"since_run": 3, "status_before": "excluded", "criteria": ["egfr"]}, "candidate") == (
        "new since run 3 (was excluded: egfr)",
        "new",
    )
    assert change_words({"since_run": 3, "status_before": "candidate", "criteria": ["egfr"]}, "excluded")[1] == (
        "dropped"
    )
    assert change_words({"since_run": 3, "status_before": "possible", "criteria": ["egfr"]}, "candidate")[1] == (
        "changed"
    )


def test_patient_view_groups_counts_and_key_values() -> None:
    criteria = (
        CriterionInfo("alive", "inclusion", "Alive", True),
        CriterionInfo("hba1c_over_12", "exclusion", "HbA1c > 12 %", True, key="HbA1c"),
        CriterionInfo("egfr_under_30", "exclusion", "eGFR < 30", True, key="eGFR"),
        CriterionInfo("consent", "inclusion", "Signed consent", False),
    )
    line = {
        "id": "p1",
        "status": "possible",
        "age": 61,
        "gender": "female",
        "criteria": [
            {"id": "alive", "kind": "inclusion", "result": "met", "evidence": []},
            {
                "id": "hba1c_over_12",
                "kind": "exclusion",
                "result": "not_met",
                "evidence": [{"resource": "Observation/h", "date": "2026-05-01", "value": 8.1, "unit": "%"}],
            },
            {"id": "egfr_under_30", "kind": "exclusion", "result": "unknown", "evidence": [], "note": "no eGFR"},
            {"id": "consent", "kind": "inclusion", "result": "manual", "evidence": []},
        ],
        "review": {"decision": "contacted", "note": None, "by": "ana", "at": "2026-06-30T09:00:00Z"},
    }
    view = patient_view(line, criteria, AS_OF, name="Ann", identifier="MRN1")
    assert [g for g, _, _ in view.groups] == ["unknown", "manual", "supports"]
    assert (view.unknown_count, view.manual_count) == (1, 1)
    assert view.deciding == ("egfr_under_30",)
    assert view.letters == "mnux"
    assert view.decision == "contacted"
    assert [(k.label, k.value, k.date) for k in view.keys] == [
        ("HbA1c", "8.1 %", "2026-05-01"),
        ("eGFR", None, None),  # no reading: shown as none, never a guess
    ]
