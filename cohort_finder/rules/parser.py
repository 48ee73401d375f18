"""The criteria file's building blocks, as the rule kinds parse their parameters: line-numbered
errors, days, numbers, value sets, analytes, and nested rules through the registry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CriteriaError
from ..terminology import Analyte, CodeSet, MedicationSet, Terminology
from ..yamlio import LineDict, LineList
from . import KINDS
from .base import OUTCOMES, Outcomes, Rule

OPS = ("<", "<=", ">", ">=")
T = TypeVar("T")


class Parser:
    def __init__(self, path: Path, term: Terminology, defaults: LineDict) -> None:
        self.path = path
        self.term = term
        self.defaults = defaults

    def fail(self, line: int, reason: str) -> CriteriaError:
        return CriteriaError(self.path, line, reason)

    def rule(self, node: Any, line: int) -> Rule:
        if not isinstance(node, LineDict):
            raise self.fail(line, "a rule must be a mapping such as {condition: {valueset: ...}}")
        kinds = [k for k in node if k != "outcome"]
        if len(kinds) != 1:
            raise self.fail(node.line, f"a rule needs exactly one kind, found {kinds or 'none'}")
        kind = kinds[0]
        rule_class = KINDS.get(kind)
        if rule_class is None:
            known = ", ".join(sorted(KINDS))
            raise self.fail(node.line_of(kind), f"unknown rule kind '{kind}' (known: {known})")
        return rule_class.parse(self, node[kind], node.line_of(kind), self.outcome(node))

    def outcome(self, node: LineDict) -> Outcomes:
        raw = node.get("outcome")
        if raw is None:
            return ()
        if not isinstance(raw, LineDict):
            raise self.fail(node.line_of("outcome"), "outcome must map results, e.g. {met: unknown}")
        pairs = []
        for key, value in raw.items():
            if key not in OUTCOMES or value not in OUTCOMES:
                raise self.fail(raw.line_of(key), f"outcome maps met/not_met/unknown, not {key!r}: {value!r}")
            pairs.append((OUTCOMES[key], OUTCOMES[value]))
        return tuple(pairs)

    def params(self, raw: Any, line: int, kind: str, required: set[str], optional: set[str]) -> LineDict:
        if not isinstance(raw, LineDict):
            raise self.fail(line, f"'{kind}' needs parameters as a mapping")
        for key in raw:
            if key not in required | optional:
                allowed = ", ".join(sorted(required | optional))
                raise self.fail(raw.line_of(key), f"'{kind}' has no parameter '{key}' (allowed: {allowed})")
        for key in sorted(required):
            if key not in raw:
                raise self.fail(raw.line, f"'{kind}' needs '{key}'")
        return raw

    def number(self, raw: LineDict, key: str, default: float | None = None) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(raw.line_of(key), f"'{key}' must be a number")
        return float(value)

    def days(self, raw: LineDict, key: str, fallback_key: str | None = None) -> int:
        value = raw.get(key)
        if value is None and fallback_key is not None:
            value = self.defaults.get(fallback_key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(raw.line_of(key), f"'{key}' must be a whole number of days (>= 0)")
        return value

    def codeset(self, raw: LineDict, key: str) -> CodeSet:
        return self._named(raw, key, self.term.codesets, "value set")

    def medset(self, raw: LineDict, key: str) -> MedicationSet:
        return self._named(raw, key, self.term.medsets, "medication value set")

    def _named(self, raw: LineDict, key: str, table: Mapping[str, T], what: str) -> T:
        name = raw.get(key)
        found = table.get(str(name))
        if found is None:
            raise self.fail(raw.line_of(key), f"unknown {what} '{name}' (not in {self.term.folder})")
        return found

    def analyte(self, raw: LineDict) -> tuple[Analyte, CodeSet]:
        name = raw.get("analyte")
        analyte = self.term.analytes.get(str(name))
        if analyte is None:
            raise self.fail(raw.line_of("analyte"), f"unknown analyte '{name}' (not in {self.term.folder})")
        codes = self.codeset(raw, "valueset") if "valueset" in raw else analyte.codes
        return analyte, codes

    def op(self, raw: LineDict) -> str:
        op = raw.get("op")
        if op not in OPS:
            raise self.fail(raw.line_of("op"), f"'op' must be one of {', '.join(OPS)}")
        return str(op)

    def unit(self, raw: LineDict, analyte: Analyte, unit: str) -> str:
        if not self.term.converter.factor_known(analyte.unit, unit, analyte.units):
            raise self.fail(
                raw.line_of("unit"), f"unit '{unit}' cannot be converted from {analyte.name}'s unit '{analyte.unit}'"
            )
        return unit

    def rules(self, raw: Any, line: int, kind: str) -> tuple[Rule, ...]:
        if not isinstance(raw, LineList) or not raw:
            raise self.fail(line, f"'{kind}' needs a non-empty list of rules")
        return tuple(self.rule(item, raw.line) for item in raw)
