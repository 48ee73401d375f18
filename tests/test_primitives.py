"""FHIR date and dateTime: which written dates are dates at all (primitives.py)."""

from __future__ import annotations

import pytest

from cohort_finder.primitives import is_date, is_date_time


@pytest.mark.parametrize("text", ["2026", "2026-02", "2026-02-28", "2024-02-29", "1900-12-31", "0001-01-01"])
def test_dates_fhir_allows(text: str) -> None:
    assert is_date(text) and is_date_time(text)


@pytest.mark.parametrize(
    "text",
    ["2026-13-45", "2026-02-30", "2025-02-29", "1900-02-29", "2026-00-01", "2026-01-00", "2026-1-1", "26-01-01",
     "2026/01/01", "0000", "2026-01-01 ", " 2026-01-01", "", "yesterday", "2026-01-01T"],
)  # fmt: skip
def test_dates_fhir_refuses(text: str) -> None:
    assert not is_date(text) and not is_date_time(text)


@pytest.mark.parametrize(
    "text",
    ["2026-01-01T10:00:00Z", "2026-01-01T23:59:60+14:00", "2026-01-01T00:00:00.123456-05:00", "2026-01-01T10:00:00"],
)
def test_date_times_with_a_time_and_an_optional_zone(text: str) -> None:
    assert is_date_time(text) and not is_date(text)


@pytest.mark.parametrize(
    "text",
    ["2026-01-01T24:00:00Z", "2026-01-01T10:00Z", "2026-01-01 10:00:00", "2026-01-01T10:00:00+15:00",
     "2026-01T10:00:00Z", "2026-02-30T10:00:00Z", "2026-01-01T10:00:00+0500"],
)  # fmt: skip
def test_date_times_fhir_refuses(text: str) -> None:
    assert not is_date_time(text)
