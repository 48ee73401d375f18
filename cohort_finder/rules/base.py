"""What every rule kind is: a small frozen dataclass that parses itself from the criteria
file, states what it reads, evaluates one patient and words its note.

A kind is one class in one module of this package, listed once in `rules.KINDS`; the parser
(criteria.py), the reduce filter and search plan (reduce.py, search_plan.py) and the
evaluation (evaluate/) all ask the rule, never a list of kinds of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..model import Outcome, Result
from ..terminology import CodeSet, MedicationSet

if TYPE_CHECKING:
    from .context import Context
    from .parser import Parser

Outcomes = tuple[tuple[Result, Result], ...]  # `outcome:`, result -> result
OUTCOMES = {r.value: r for r in (Result.MET, Result.NOT_MET, Result.UNKNOWN)}  # what `outcome:` may name


@dataclass(frozen=True, slots=True)
class Need:
    """What one rule reads: a value set on a resource type's `code` (or coded `value`), or the
    medications of a set (`field` "medication"), and how far back (None: no window). The reduce
    step and the server search plan both start here."""

    resource_type: str
    field: str  # "code", "value" or "medication"
    codes: CodeSet
    window: int | None = None
    medications: MedicationSet | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    line: int = field(default=0, compare=False)
    # result -> result, applied after the rule (e.g. met -> unknown: "investigator's judgement")
    outcome: Outcomes = ()

    kind: ClassVar[str] = ""  # its key in the criteria file
    # Whether `met` stands however much more data there is (presence rules) or could change
    # (most-recent rules): used when some of a patient's data could not be read (contract §4).
    met_stands: ClassVar[bool] = True

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raise NotImplementedError

    def evaluate(self, ctx: Context) -> Outcome:
        """One patient's outcome (a leaf kind; combinations use `combine`)."""
        raise NotImplementedError

    def needs(self) -> list[Need]:
        """What it reads; none for the rules that read the Patient itself."""
        return []

    def reads(self) -> frozenset[str]:
        """The resource types it reads."""
        return frozenset(n.resource_type for n in self.needs())

    def parts(self) -> tuple[Rule, ...]:
        """The rules it combines (all_of, any_of, not); none for a leaf."""
        return ()

    def combine(self, outcomes: Sequence[Outcome]) -> Outcome:
        raise NotImplementedError

    def analytes(self) -> list[str]:
        """The analytes its lab parts read, in the order written (the overview's key values)."""
        return [a for part in self.parts() for a in part.analytes()]
