"""Days covered: the union of periods, overlaps once, gaps allowed."""

from __future__ import annotations

from datetime import date

import pytest

from cohort_finder.evaluate.medications import covered_days


def d(text: str) -> date:
    return date.fromisoformat(text)


@pytest.mark.parametrize(
    ("periods", "days"),
    [
        ([], 0),
        ([("2026-01-01", "2026-01-01")], 1),
        ([("2026-01-01", "2026-03-31")], 90),
        ([("2026-01-01", "2026-01-10"), ("2026-01-05", "2026-01-15")], 15),  # overlap counted once
        ([("2026-01-01", "2026-01-31"), ("2026-01-10", "2026-01-20")], 31),  # nested
        ([("2026-01-01", "2026-01-10"), ("2026-02-01", "2026-02-10")], 20),  # gap allowed
        ([("2026-01-01", "2026-01-10"), ("2026-01-11", "2026-01-20")], 20),  # adjacent
        ([("2026-02-01", "2026-02-10"), ("2026-01-01", "2026-01-10")], 20),  # any order
    ],
)
def test_covered_days(periods: list[tuple[str, str]], days: int) -> None:
    assert covered_days([(d(a), d(b)) for a, b in periods]) == days
