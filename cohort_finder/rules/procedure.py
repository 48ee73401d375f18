"""`procedure`: a Procedure from a value set, in the given statuses, performed on some day of
a window ending at as-of."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Outcome
from ..terminology import CodeSet
from .base import Need, Outcomes, Rule, coded_evidence, found_in_window
from .table import FactTable

if TYPE_CHECKING:
    from .parser import Parser

DEFAULT_STATUSES = ("completed", "in-progress")


@dataclass(frozen=True, slots=True)
class ProcedureRule(Rule):
    valueset: CodeSet | None = None
    within_days: int = 365
    statuses: frozenset[str] = frozenset(DEFAULT_STATUSES)
    kind = "procedure"
    by_query = True

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, cls.kind, {"valueset", "within_days"}, {"statuses"})
        statuses = raw.get("statuses", list(DEFAULT_STATUSES))
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            raise p.fail(raw.line_of("statuses"), "'statuses' must be a list of Procedure statuses")
        return cls(line, outcome, p.codeset(raw, "valueset"), p.days(raw, "within_days"), frozenset(statuses))

    def needs(self) -> list[Need]:
        assert self.valueset is not None
        return [Need("Procedure", "code", self.valueset, self.within_days)]

    @classmethod
    def query(cls, rules: Sequence[Rule], t: FactTable) -> str:
        params = t.params(
            (("set_id", "INTEGER"), ("statuses", "VARCHAR[]"), ("start", "VARCHAR")),
            [(n, t.set_id(r.valueset), r.statuses, t.window(r.within_days)) for n, r in enumerate(cls.mine(rules))],
        )
        start = "coalesce(f.performed_start, f.performed_end)"
        # any day of the performed period inside [window start, as-of]; no end: ongoing
        return (
            f"SELECT r.rule, f.patient, f.resource_id, c.system, c.code, c.display, {start} AS day "
            f"FROM facts AS f JOIN {t.first_codings()} AS c ON c.k = f.k JOIN {params} AS r ON r.set_id = c.set_id "
            f"WHERE f.resource_type = 'Procedure' AND list_contains(r.statuses, f.status) AND length({start}) = 10 "
            f"AND {start} <= {t.as_of_text} AND coalesce(f.performed_end, {t.as_of_text}) >= r.start "
            "ORDER BY r.rule, f.patient, day DESC, f.resource_id DESC"
        )

    def decide(self, rows: Sequence[tuple[Any, ...]]) -> Outcome:
        assert self.valueset is not None
        return found_in_window(self.valueset.title, self.within_days, coded_evidence("Procedure", rows))
