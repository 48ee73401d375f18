"""What changed between two runs of one trial (contract §7): per patient, and as the lists
`diff` prints and the report shows. Pure functions over states; the store supplies them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..model import Result, Status

ABSENT = "absent"
# one letter per result: how the store keeps results, and what the funnel and the overview's
# filters read
LETTER = {Result.MET: "m", Result.NOT_MET: "n", Result.UNKNOWN: "u", Result.MANUAL: "x"}
RESULT_OF = {letter: result for result, letter in LETTER.items()}
_STATUS_LETTER = {Status.CANDIDATE.value: "c", Status.POSSIBLE.value: "p", Status.EXCLUDED.value: "e", ABSENT: "a"}
_STATUS = {letter: status for status, letter in _STATUS_LETTER.items()}
_OPEN = (Status.CANDIDATE.value, Status.POSSIBLE.value)  # still in the running for the trial


def encode_results(results: Sequence[Result]) -> str:
    """One letter per criterion, in the run's criteria order: compact in the store."""
    return "".join(LETTER[r] for r in results)


class PatientState(NamedTuple):
    """One patient in one run: status and one result letter per criterion (store encoding)."""

    status: str  # candidate | possible | excluded | absent
    results: str

    def by_criterion(self, criteria: Sequence[str]) -> dict[str, str]:
        return {cid: RESULT_OF[letter].value for cid, letter in zip(criteria, self.results, strict=False)}

    def packed(self) -> tuple[str, str]:
        return _STATUS_LETTER[self.status], self.results

    @classmethod
    def unpacked(cls, status: str, results: str) -> PatientState:
        return cls(_STATUS[status], results)


@dataclass(frozen=True, slots=True)
class RunState:
    """Every patient of a complete run, and the run's criteria ids (what the letters mean)."""

    run: int
    as_of: str
    criteria: tuple[str, ...]
    patients: Mapping[str, PatientState]


@dataclass(frozen=True, slots=True)
class Change:
    """A patient whose status or some result differs from the previous complete run."""

    since_run: int
    status_before: str  # candidate | possible | excluded | absent
    criteria: tuple[str, ...]  # the criteria whose result differs


def differing(before: dict[str, str], after: dict[str, str]) -> tuple[str, ...]:
    """Criteria whose result differs, in `after`'s order then any only `before` had."""
    ids = list(after) + [cid for cid in before if cid not in after]
    return tuple(cid for cid in ids if before.get(cid) != after.get(cid))


def _differing(
    before: PatientState, before_criteria: tuple[str, ...], after: PatientState, after_criteria: tuple[str, ...]
) -> tuple[str, ...]:
    if before_criteria == after_criteria:  # the usual case: compare the letters, build nothing
        return tuple(cid for cid, a, b in zip(after_criteria, before.results, after.results, strict=False) if a != b)
    return differing(before.by_criterion(before_criteria), after.by_criterion(after_criteria))


def change_of(
    status: str, results: str, criteria: tuple[str, ...], previous: RunState | None, pid: str
) -> Change | None:
    """`results`: the patient's letters now (encode_results), in `criteria`'s order."""
    if previous is None:
        return None
    before = previous.patients.get(pid)
    if before is None:
        return Change(previous.run, ABSENT, ())
    now = PatientState(status, results)
    if before == now and previous.criteria == criteria:
        return None
    changed = _differing(before, previous.criteria, now, criteria)
    if before.status == status and not changed:
        return None
    return Change(previous.run, before.status, changed)


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    status: str  # `new`: the status now
    before: str = ""  # `dropped`/`changed`: the status before
    after: str = ""  # `dropped`/`changed`: the status now (`absent` when gone from the source)
    criteria: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Diff:
    trial: str
    before: RunState
    after: RunState
    new: list[Entry] = field(default_factory=list)
    dropped: list[Entry] = field(default_factory=list)
    changed: list[Entry] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        """Exactly the contract's shape (§7)."""
        return {
            "trial": self.trial,
            "from": {"run": self.before.run, "as_of": self.before.as_of},
            "to": {"run": self.after.run, "as_of": self.after.as_of},
            "new": [{"id": e.id, "status": e.status} for e in self.new],
            "dropped": [
                {"id": e.id, "from": e.before, "to": e.after, "criteria": list(e.criteria)} for e in self.dropped
            ],
            "changed": [
                {"id": e.id, "from": e.before, "to": e.after, "criteria": list(e.criteria)} for e in self.changed
            ],
        }


def diff(trial: str, before: RunState, after: RunState) -> Diff:
    """new: candidate or possible now, excluded or absent before; dropped: candidate or
    possible before, excluded or absent now; changed: candidate or possible in both, with a
    different status or result. Each list sorted by id."""
    result = Diff(trial, before, after)
    same_criteria = before.criteria == after.criteria
    for pid in sorted(set(before.patients) | set(after.patients)):
        old, new = before.patients.get(pid), after.patients.get(pid)
        if same_criteria and old == new:
            continue  # most patients of most nights
        was = old.status if old else ABSENT
        now = new.status if new else ABSENT
        if now in _OPEN and was not in _OPEN:
            result.new.append(Entry(pid, now))
            continue
        criteria = _differing(old, before.criteria, new, after.criteria) if old and new else ()
        if was in _OPEN and now not in _OPEN:
            result.dropped.append(Entry(pid, was, was, now, criteria))
        elif was in _OPEN and now in _OPEN and (was != now or criteria):
            result.changed.append(Entry(pid, now, was, now, criteria))
    return result
