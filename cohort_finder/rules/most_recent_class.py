"""`most_recent_class`: the most recent class of a graded scale (NYHA I-IV) from Observation
values or Condition codes; each class maps to a result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Evidence, Outcome, Result
from ..terminology import CodeSet
from ..yamlio import LineList
from .base import OUTCOMES, Need, Outcomes, Rule
from .coded_observation import VOID_OBSERVATION
from .condition import VOID_VERIFICATION
from .table import FactTable, sql_list

if TYPE_CHECKING:
    from .parser import Parser

SOURCES = ("observation_value", "condition_code")


@dataclass(frozen=True, slots=True)
class MostRecentClassRule(Rule):
    classes: tuple[tuple[CodeSet, Result], ...] = ()  # lowest class first
    sources: frozenset[str] = frozenset(SOURCES)
    lookback_days: int = 365
    kind = "most_recent_class"
    met_stands = False  # a newer class may decide otherwise
    by_query = True

    @classmethod
    def parse(cls, p: Parser, raw: Any, line: int, outcome: Outcomes) -> Rule:
        raw = p.params(raw, line, cls.kind, {"classes"}, {"sources", "lookback_days"})
        classes = raw["classes"]
        if not isinstance(classes, LineList) or not classes:
            raise p.fail(raw.line_of("classes"), "'classes' lists {valueset, result} from the lowest class up")
        parsed = []
        for item in classes:
            item = p.params(item, classes.line, "classes", {"valueset", "result"}, set())
            if item["result"] not in OUTCOMES:
                raise p.fail(item.line_of("result"), "a class's result is met, not_met or unknown")
            parsed.append((p.codeset(item, "valueset"), OUTCOMES[item["result"]]))
        sources = raw.get("sources", LineList(list(SOURCES)))
        if not isinstance(sources, LineList) or not set(sources) <= set(SOURCES) or not sources:
            raise p.fail(raw.line_of("sources"), "'sources' lists observation_value and/or condition_code")
        lookback = p.days(raw, "lookback_days", "lookback_days")
        return cls(line, outcome, tuple(parsed), frozenset(sources), lookback)

    def needs(self) -> list[Need]:
        found = []
        for codes, _ in self.classes:
            if "observation_value" in self.sources:
                found.append(Need("Observation", "value", codes, self.lookback_days))
            if "condition_code" in self.sources:
                found.append(Need("Condition", "code", codes, self.lookback_days))
        return found

    @classmethod
    def query(cls, rules: Sequence[Rule], t: FactTable) -> str:
        # one row per rule, class and resource type it is read from
        params = t.params(
            (("rank", "INTEGER"), ("set_id", "INTEGER"), ("rtype", "VARCHAR"), ("start", "VARCHAR")),
            [
                (n, rank, t.set_id(codes), rtype, t.window(rule.lookback_days))
                for n, rule in enumerate(cls.mine(rules))
                for rank, (codes, _) in enumerate(rule.classes)
                for rtype, source in (("Observation", "observation_value"), ("Condition", "condition_code"))
                if source in rule.sources
            ],
        )
        seen = " UNION ALL ".join(
            f"SELECT r.rule, f.patient, {day} AS day, r.rank, '{rtype}/' || f.resource_id AS resource, "
            f"c.system, c.code, c.display FROM facts AS f JOIN {t.first_codings(field)} AS c ON c.k = f.k "
            f"JOIN {params} AS r ON r.set_id = c.set_id AND r.rtype = '{rtype}' "
            f"WHERE f.resource_type = '{rtype}' AND {void} AND {t.in_window(day, 'r.start')}"
            for rtype, field, day, void in (
                ("Observation", "value", "f.effective", f"coalesce(f.status, '') NOT IN {sql_list(VOID_OBSERVATION)}"),
                (
                    "Condition",
                    "code",
                    "coalesce(f.onset, f.recorded)",
                    f"coalesce(f.verification_status, '') NOT IN {sql_list(VOID_VERIFICATION)}",
                ),
            )
        )
        # the latest date wins, and on the same day the higher class
        latest = "row_number() OVER (PARTITION BY rule, patient ORDER BY day DESC, rank DESC, resource DESC)"
        return (
            "SELECT rule, patient, rank, resource, system, code, display, day FROM "
            f"(SELECT *, {latest} AS pos FROM ({seen})) WHERE pos = 1 ORDER BY rule, patient"
        )

    def decide(self, rows: Sequence[tuple[Any, ...]]) -> Outcome:
        if not rows:
            titles = "/".join(codes.title for codes, _ in self.classes)
            why = f"class not recorded ({titles}) in the {self.lookback_days} days before as-of"
            return Outcome(Result.UNKNOWN, (), (why,))
        ((rank, resource, system, code, display, day),) = rows
        codes, result = self.classes[rank]
        evidence = Evidence(resource, f"{system}|{code}", day, display=display)
        return Outcome(result, (evidence,), (f"most recent: {codes.title} on {day}",))
