"""Kleene three-valued logic: every combination, and that deciding parts keep their evidence."""

from __future__ import annotations

import itertools

import pytest

from cohort_finder.model import Evidence, Outcome, Result
from cohort_finder.rules import logic

M, N, U = Result.MET, Result.NOT_MET, Result.UNKNOWN
ORDER = {N: 0, U: 1, M: 2}  # Kleene: all_of is min, any_of is max


def out(result: Result, tag: str = "") -> Outcome:
    return Outcome(result, (Evidence(f"Observation/{tag or result.value}"),), (tag or result.value,))


@pytest.mark.parametrize(("a", "b"), list(itertools.product([M, N, U], repeat=2)))
def test_all_of_is_min_and_any_of_is_max(a: Result, b: Result) -> None:
    assert logic.all_of([out(a), out(b)]).result is min(a, b, key=ORDER.__getitem__)
    assert logic.any_of([out(a), out(b)]).result is max(a, b, key=ORDER.__getitem__)


def test_not_swaps_met_and_not_met_only() -> None:
    assert logic.negate(out(M)).result is N
    assert logic.negate(out(N)).result is M
    assert logic.negate(out(U)).result is U


def test_deciding_parts_keep_their_evidence() -> None:
    combined = logic.any_of([out(N, "a"), out(M, "b"), out(U, "c")])
    assert combined.result is M
    assert [e.resource for e in combined.evidence] == ["Observation/b"]
    unknown = logic.all_of([out(M, "a"), out(U, "c")])
    assert unknown.notes == ("c",)


def test_remap_changes_only_the_named_result() -> None:
    mapping = ((M, U),)
    assert logic.remap(out(M), mapping).result is U
    assert "met is read as unknown" in logic.remap(out(M), mapping).notes[-1]
    assert logic.remap(out(N), mapping).result is N
