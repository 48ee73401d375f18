"""`most_recent_class`: the most recent class of a graded scale (NYHA I-IV) from Observation
values or Condition codes; each class maps to a result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Evidence, Outcome, Result
from ..terminology import CodeSet
from ..yamlio import LineList
from .base import OUTCOMES, Need, Outcomes, Rule
from .coded_observation import VOID_OBSERVATION
from .condition import is_void
from .context import Context

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

    def evaluate(self, ctx: Context) -> Outcome:
        # (date, rank, evidence): the latest date wins, and on the same day the higher class
        seen: list[tuple[str, int, Evidence]] = []
        for rank, (codes, _) in enumerate(self.classes):
            if "observation_value" in self.sources:
                for fact in ctx.facts("Observation"):
                    coding = codes.first_match(fact.value_codings)
                    if (
                        coding
                        and fact.status not in VOID_OBSERVATION
                        and ctx.in_window(fact.effective, self.lookback_days)
                    ):
                        where = f"Observation/{fact.resource_id}"
                        evidence = Evidence(where, coding.token, fact.effective, display=coding.display)
                        seen.append((fact.effective or "", rank, evidence))
            if "condition_code" in self.sources:
                for fact in ctx.facts("Condition"):
                    coding = codes.first_match(fact.codings)
                    day = fact.onset or fact.recorded
                    if coding and not is_void(fact) and ctx.in_window(day, self.lookback_days):
                        evidence = Evidence(f"Condition/{fact.resource_id}", coding.token, day, display=coding.display)
                        seen.append((day or "", rank, evidence))
        if not seen:
            titles = "/".join(codes.title for codes, _ in self.classes)
            why = f"class not recorded ({titles}) in the {self.lookback_days} days before as-of"
            return Outcome(Result.UNKNOWN, (), (why,))
        day, rank, evidence = max(seen, key=lambda s: (s[0], s[1], s[2].resource))
        codes, result = self.classes[rank]
        return Outcome(result, (evidence,), (f"most recent: {codes.title} on {day}",))
