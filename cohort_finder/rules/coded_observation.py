"""`coded_observation`: an Observation from one value set whose coded value is in another
(pregnancy status = pregnant), inside a window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Outcome
from ..terminology import CodeSet
from .base import Need, Outcomes, Rule, coded_evidence, found_in_window
from .table import FactTable, sql_list

if TYPE_CHECKING:
    from .parser import Parser

VOID_OBSERVATION = frozenset({"cancelled", "entered-in-error"})


@dataclass(frozen=True, slots=True)
class CodedObservationRule(Rule):
    code_valueset: CodeSet | None = None
    value_valueset: CodeSet | None = None
    within_days: int = 365
    kind = "coded_observation"
    by_query = True

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, cls.kind, {"code_valueset", "value_valueset", "within_days"}, set())
        return cls(
            line, outcome, p.codeset(raw, "code_valueset"), p.codeset(raw, "value_valueset"), p.days(raw, "within_days")
        )

    def needs(self) -> list[Need]:
        assert self.code_valueset is not None
        return [Need("Observation", "code", self.code_valueset, self.within_days)]

    @classmethod
    def query(cls, rules: Sequence[Rule], t: FactTable) -> str:
        params = t.params(
            (("code_set", "INTEGER"), ("value_set", "INTEGER"), ("start", "VARCHAR")),
            [
                (n, t.set_id(r.code_valueset), t.set_id(r.value_valueset), t.window(r.within_days))
                for n, r in enumerate(cls.mine(rules))
            ],
        )
        what = (  # what the Observation is: any of its codings in the code value set
            "EXISTS (SELECT 1 FROM codings AS w JOIN matches AS m ON m.system = w.system AND m.code = w.code "
            "WHERE w.k = f.k AND w.field = 'code' AND m.set_id = r.code_set)"
        )
        return (
            "SELECT r.rule, f.patient, f.resource_id, c.system, c.code, c.display, f.effective "
            f"FROM facts AS f JOIN {t.first_codings('value')} AS c ON c.k = f.k "
            f"JOIN {params} AS r ON r.value_set = c.set_id "
            f"WHERE f.resource_type = 'Observation' AND coalesce(f.status, '') NOT IN {sql_list(VOID_OBSERVATION)} "
            f"AND {t.in_window('f.effective', 'r.start')} AND {what} "
            "ORDER BY r.rule, f.patient, f.effective DESC, f.resource_id DESC"
        )

    def decide(self, rows: Sequence[tuple[Any, ...]]) -> Outcome:
        assert self.code_valueset is not None and self.value_valueset is not None
        label = f"{self.code_valueset.title} = {self.value_valueset.title}"
        return found_in_window(label, self.within_days, coded_evidence("Observation", rows))
