"""report/funnel.py: attrition in protocol order, counted by hand."""

from __future__ import annotations

from cohort_finder.model import CriterionInfo
from cohort_finder.report.funnel import BAR, ROW, bars, funnel

CRITERIA = (
    CriterionInfo("alive", "inclusion", "", True),
    CriterionInfo("age", "inclusion", "", True),
    CriterionInfo("hba1c_high", "exclusion", "", True),
    CriterionInfo("consent", "inclusion", "", False),
)


def test_counts_alone_in_order_unknown_and_left() -> None:
    results = [
        "mmnx",  # candidate
        "nnnx",  # ruled out by alive first, and by age too
        "mnmx",  # ruled out by age first, and by hba1c too
        "mumx",  # ruled out by hba1c; age unknown
        "mmux",  # hba1c unknown
    ]
    f = funnel(CRITERIA, results)
    assert f.patients == 5
    got = [(s.id, s.rules_out, s.unknown, s.removed, s.remaining) for s in f.steps]
    assert got == [
        ("alive", 1, 0, 1, 4),
        ("age", 2, 1, 1, 3),
        ("hba1c_high", 2, 1, 1, 2),
        ("consent", 0, 0, 0, 2),  # manual never rules anyone out
    ]


def test_no_patients_draws_no_bars() -> None:
    f = funnel(CRITERIA, [])
    assert f.patients == 0 and all(s.remaining == 0 for s in f.steps)
    assert all(b.kept == 0 and b.removed == 0 for b in bars(f).rows)


def test_bars_are_to_scale_below_the_all_patients_row() -> None:
    b = bars(funnel(CRITERIA, ["nmnx", "mmnx"])).rows
    assert b[0].y == ROW  # row 0 is all patients
    assert (b[0].kept, b[0].removed) == (BAR / 2, BAR / 2)
