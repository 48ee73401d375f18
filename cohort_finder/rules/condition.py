"""`condition`: a current (or ever recorded) Condition from a value set, optionally with an
onset inside a window (contract §3: current, void)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Outcome, Result
from ..terminology import CodeSet
from .base import Need, Outcomes, Rule, coded_evidence
from .table import FactTable, sql_list

if TYPE_CHECKING:
    from .parser import Parser

CURRENT_STATUSES = frozenset({"active", "recurrence", "relapse"})
VOID_VERIFICATION = frozenset({"refuted", "entered-in-error"})


@dataclass(frozen=True, slots=True)
class ConditionRule(Rule):
    valueset: CodeSet | None = None
    current: bool = True
    onset_within_days: int | None = None
    kind = "condition"
    by_query = True

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, cls.kind, {"valueset"}, {"current", "onset_within_days"})
        current = raw.get("current", True)
        if not isinstance(current, bool):
            raise p.fail(raw.line_of("current"), "'current' must be true or false")
        within = p.days(raw, "onset_within_days") if "onset_within_days" in raw else None
        return cls(line, outcome, p.codeset(raw, "valueset"), current, within)

    def needs(self) -> list[Need]:
        assert self.valueset is not None
        return [Need("Condition", "code", self.valueset)]

    @classmethod
    def query(cls, rules: Sequence[Rule], t: FactTable) -> str:
        params = t.params(
            (("set_id", "INTEGER"), ("current", "BOOLEAN"), ("start", "VARCHAR")),
            [
                (n, t.set_id(r.valueset), r.current, t.window(r.onset_within_days))
                for n, r in enumerate(cls.mine(rules))
            ],
        )
        day = "coalesce(f.onset, f.recorded)"
        current = (  # contract §3; an onset that gives no date does not stop it being current
            f"(f.clinical_status IS NULL OR f.clinical_status IN {sql_list(CURRENT_STATUSES)}) "
            # an abatement without a date counts as abated
            f"AND NOT (f.abated AND (f.abatement IS NULL OR f.abatement <= {t.as_of_text}))"
        )
        return (
            f"SELECT r.rule, f.patient, f.resource_id, c.system, c.code, c.display, {day} "
            f"FROM facts AS f JOIN {t.first_codings()} AS c ON c.k = f.k JOIN {params} AS r ON r.set_id = c.set_id "
            f"WHERE f.resource_type = 'Condition' "
            f"AND coalesce(f.verification_status, '') NOT IN {sql_list(VOID_VERIFICATION)} "
            f"AND (NOT r.current OR ({current})) AND (f.onset IS NULL OR f.onset <= {t.as_of_text}) "
            f"AND (r.start IS NULL OR ({t.in_window(day, 'r.start')})) "
            "ORDER BY r.rule, f.patient, f.resource_id"
        )

    def decide(self, rows: Sequence[tuple[Any, ...]]) -> Outcome:
        assert self.valueset is not None
        label = self.valueset.title
        if not rows:
            scope = "current " if self.current else ""
            return Outcome(Result.NOT_MET, (), (f"no {scope}{label} condition",))
        evidence = coded_evidence("Condition", rows)
        return Outcome(Result.MET, evidence, (f"{label}: {', '.join(e.code or '' for e in evidence)}",))
