"""The combining kinds (`all_of`, `any_of`, `not`): Kleene three-valued logic over rule
outcomes, and the result mapping of `outcome:`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Outcome, Result
from .base import Outcomes, Rule

if TYPE_CHECKING:
    from .parser import Parser

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


@dataclass(frozen=True, slots=True)
class _Combination(Rule):
    members: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        return cls(line, outcome, p.rules(raw, line, cls.kind))

    def parts(self) -> tuple[Rule, ...]:
        return self.members


@dataclass(frozen=True, slots=True)
class AllOf(_Combination):
    kind = "all_of"

    def combine(self, outcomes: Sequence[Outcome]) -> Outcome:
        return all_of(outcomes)


@dataclass(frozen=True, slots=True)
class AnyOf(_Combination):
    kind = "any_of"

    def combine(self, outcomes: Sequence[Outcome]) -> Outcome:
        return any_of(outcomes)


@dataclass(frozen=True, slots=True)
class Not(Rule):
    part: Rule | None = None
    kind = "not"

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        return cls(line, outcome, p.rule(raw, line))

    def parts(self) -> tuple[Rule, ...]:
        return (self.part,) if self.part is not None else ()

    def combine(self, outcomes: Sequence[Outcome]) -> Outcome:
        return negate(outcomes[0])
