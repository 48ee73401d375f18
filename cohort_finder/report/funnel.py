"""The attrition funnel: in protocol order, how many patients each criterion rules out and leaves
unknown, like the attrition table of a cohort tool (OHDSI ATLAS, Cumulus).

Read from the result letters the run store keeps (store/changes.py: m met, n not met,
u unknown, x manual), so the report and the review app count the same way. Two counts per
criterion answer two questions: `rules_out` is how many patients it excludes on its own (which
criterion is the hardest), `removed` how many it removes in order, of those no earlier criterion
removed (the funnel's step), leaving `remaining`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cohort_finder.model import CriterionInfo, ruling_out
from cohort_finder.store.changes import LETTER


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    kind: str
    rules_out: int  # patients this criterion rules out, whatever the others say
    unknown: int  # patients it leaves unknown
    removed: int  # patients it rules out that no earlier criterion ruled out
    remaining: int  # patients not ruled out by it or any earlier criterion


@dataclass(frozen=True, slots=True)
class Funnel:
    patients: int
    steps: tuple[Step, ...]


def funnel(criteria: Sequence[CriterionInfo], results: Iterable[str]) -> Funnel:
    """`results`: one string of result letters per patient, in the criteria's order."""
    n = len(criteria)
    bad = [LETTER[ruling_out(c.kind)] for c in criteria]
    rules_out = [0] * n
    unknown = [0] * n
    first_out = [0] * n  # patients whose first ruling-out criterion is this one
    patients = 0
    for letters in results:
        patients += 1
        first = -1
        for i, letter in enumerate(letters[:n]):
            if letter == bad[i]:
                rules_out[i] += 1
                if first < 0:
                    first = i
            elif letter == "u":
                unknown[i] += 1
        if first >= 0:
            first_out[first] += 1
    steps, remaining = [], patients
    for i, c in enumerate(criteria):
        remaining -= first_out[i]
        steps.append(Step(c.id, c.kind, rules_out[i], unknown[i], first_out[i], remaining))
    return Funnel(patients, tuple(steps))


# The chart's geometry (inline SVG, no script): one row per criterion.
ROW, LABEL, BAR = 22, 230, 520


@dataclass(frozen=True, slots=True)
class Bar:
    y: int
    id: str
    kept: float  # width of the patients left after this step
    removed: float  # width of the patients this step removed (drawn after `kept`)
    remaining: int
    step: Step


@dataclass(frozen=True, slots=True)
class Bars:
    """The chart: its geometry and one bar per criterion, below the all-patients row."""

    rows: tuple[Bar, ...]
    label: int = LABEL
    bar: int = BAR
    row: int = ROW

    def __len__(self) -> int:
        return len(self.rows)


def bars(f: Funnel) -> Bars:
    scale = BAR / f.patients if f.patients else 0.0
    return Bars(
        tuple(
            Bar((i + 1) * ROW, s.id, round(s.remaining * scale, 1), round(s.removed * scale, 1), s.remaining, s)
            for i, s in enumerate(f.steps)  # row 0: all patients
        )
    )
