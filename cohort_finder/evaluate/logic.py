"""Kleene three-valued logic over rule outcomes, and the result mapping of `outcome:`."""

from __future__ import annotations

from collections.abc import Sequence

from ..model import Outcome, Result

MET, NOT_MET, UNKNOWN = Result.MET, Result.NOT_MET, Result.UNKNOWN


def _deciding(parts: Sequence[Outcome], result: Result) -> Outcome:
    """A combination keeps the evidence and notes of the parts that decided it."""
    chosen = [p for p in parts if p.result is result]
    evidence = tuple(e for p in chosen for e in p.evidence)
    notes = tuple(n for p in chosen for n in p.notes)
    return Outcome(result, evidence, notes)


def _first_of(parts: Sequence[Outcome], order: tuple[Result, Result, Result]) -> Outcome:
    """The first result of `order` that some part has decides (the last one when no part
    has either of the first two: an empty combination included)."""
    for result in order[:2]:
        if any(p.result is result for p in parts):
            return _deciding(parts, result)
    return _deciding(parts, order[2])


def all_of(parts: Sequence[Outcome]) -> Outcome:
    return _first_of(parts, (NOT_MET, UNKNOWN, MET))


def any_of(parts: Sequence[Outcome]) -> Outcome:
    return _first_of(parts, (MET, UNKNOWN, NOT_MET))


def negate(part: Outcome) -> Outcome:
    flipped = {MET: NOT_MET, NOT_MET: MET}.get(part.result, part.result)
    return Outcome(flipped, part.evidence, part.notes)


def remap(outcome: Outcome, mapping: Sequence[tuple[Result, Result]]) -> Outcome:
    for source, target in mapping:
        if outcome.result is source:
            note = f"{source.value} is read as {target.value} for this criterion"
            return Outcome(target, outcome.evidence, (*outcome.notes, note))
    return outcome
