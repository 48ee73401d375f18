"""What every rule kind is: a small frozen dataclass that parses itself from the criteria
file, states what it reads, decides (a batch by query, or one patient) and words its note.

A kind is one class in one module of this package, listed once in `rules.KINDS`; the parser
(criteria.py), the reduce filter and search plan (reduce.py, search_plan.py) and the
evaluation (evaluate/) all ask the rule, never a list of kinds of their own.

A kind decided by query (`by_query`) states one SQL statement over a batch's fact table
(rules/table.py) that decides all of its rules for every patient of the batch at once
(`query`), and words each patient's rows (`decide`): that is its only evaluation. The other
kinds (`age`, `sex`: they read the Patient, not facts) decide one patient at a time
(`evaluate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

from ..model import Evidence, Outcome, Result
from ..terminology import CodeSet, MedicationSet
from .table import FactTable

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
    # Decided by `query` (every rule of the kind, every patient of a batch) and worded by `decide`
    by_query: ClassVar[bool] = False

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raise NotImplementedError

    def evaluate(self, ctx: Context) -> Outcome:
        """One patient's outcome, for a kind that reads the Patient itself (age, sex). A kind
        decided by query is answered for a batch (evaluate/plan.py `answers`), even a batch of
        one patient; combinations use `combine`."""
        raise NotImplementedError

    @classmethod
    def query(cls, rules: Sequence[Rule], table: FactTable) -> str:
        """One statement deciding `rules` (all of this kind) for every patient of the batch:
        rows (rule's position in `rules`, patient id, ...) ordered by rule and patient, then in
        the order `decide` wants them; none for a patient with nothing that counts."""
        raise NotImplementedError

    @classmethod
    def mine(cls, rules: Sequence[Rule]) -> list[Self]:
        """`rules` as this kind (the plan hands a kind only its own rules)."""
        assert all(isinstance(r, cls) for r in rules)
        return [r for r in rules if isinstance(r, cls)]

    def decide(self, rows: Sequence[tuple[Any, ...]]) -> Outcome:
        """One patient's rows of `query` for this rule (without rule and patient) as its outcome
        and note."""
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


def coded_evidence(resource_type: str, rows: Sequence[tuple[Any, ...]]) -> tuple[Evidence, ...]:
    """Rows of (id, system, code, display, day), as a presence kind's query gives them."""
    return tuple(
        Evidence(f"{resource_type}/{rid}", code=f"{system}|{code}", date=day, display=display)
        for rid, system, code, display, day in rows
    )


def found_in_window(label: str, within_days: int, evidence: tuple[Evidence, ...]) -> Outcome:
    """A presence rule with a window: met by the evidence (most recent first), else not met."""
    if not evidence:
        return Outcome(Result.NOT_MET, (), (f"no {label} in the {within_days} days before as-of",))
    return Outcome(Result.MET, evidence, (f"{label} on {evidence[0].date}",))
