"""Criteria YAML -> a typed model, checked against the value sets, with line-numbered errors.

The language is documented in docs/criteria-language.md. Each rule kind is a small frozen
dataclass; `evaluate/` holds one function per kind. Nothing about a trial lives in Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

from .errors import CriteriaError
from .model import CriterionInfo, Result
from .terminology import Analyte, CodeSet, MedicationSet, Terminology, load_terminology
from .yamlio import LineDict, LineList, load_yaml

OPS = ("<", "<=", ">", ">=")
_ID = re.compile(r"^[a-z0-9_]+$")
_GENDERS = frozenset({"male", "female", "other", "unknown"})
_OUTCOMES = {r.value: r for r in (Result.MET, Result.NOT_MET, Result.UNKNOWN)}


@dataclass(frozen=True, slots=True)
class Rule:
    line: int = field(default=0, compare=False)
    # result -> result, applied after the rule (e.g. met -> unknown: "investigator's judgement")
    outcome: tuple[tuple[Result, Result], ...] = ()


@dataclass(frozen=True, slots=True)
class AgeRule(Rule):
    min: int | None = None
    max: int | None = None


@dataclass(frozen=True, slots=True)
class SexRule(Rule):
    values: frozenset[str] = frozenset()
    negate: bool = False  # not_in


@dataclass(frozen=True, slots=True)
class ConditionRule(Rule):
    valueset: CodeSet | None = None
    current: bool = True
    onset_within_days: int | None = None


@dataclass(frozen=True, slots=True)
class LabRule(Rule):
    analyte: Analyte | None = None
    codes: CodeSet | None = None
    unit: str = ""
    op: str = ">"
    value: float = 0.0
    between: tuple[float, float] | None = None
    lookback_days: int = 365


@dataclass(frozen=True, slots=True)
class LabUlnRule(Rule):
    analyte: Analyte | None = None
    codes: CodeSet | None = None
    op: str = ">"
    multiple: float = 1.0
    default_uln: tuple[float, str] | None = None
    lookback_days: int = 365


@dataclass(frozen=True, slots=True)
class CodedObservationRule(Rule):
    code_valueset: CodeSet | None = None
    value_valueset: CodeSet | None = None
    within_days: int = 365


@dataclass(frozen=True, slots=True)
class MostRecentClassRule(Rule):
    classes: tuple[tuple[CodeSet, Result], ...] = ()  # lowest class first
    sources: frozenset[str] = frozenset({"observation_value", "condition_code"})
    lookback_days: int = 365


@dataclass(frozen=True, slots=True)
class ProcedureRule(Rule):
    valueset: CodeSet | None = None
    within_days: int = 365
    statuses: frozenset[str] = frozenset({"completed", "in-progress"})


@dataclass(frozen=True, slots=True)
class MedicationDaysRule(Rule):
    medications: MedicationSet | None = None
    min_days: int = 1
    within_days: int | None = None


@dataclass(frozen=True, slots=True)
class AllOf(Rule):
    parts: tuple[AnyRule, ...] = ()


@dataclass(frozen=True, slots=True)
class AnyOf(Rule):
    parts: tuple[AnyRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Not(Rule):
    part: AnyRule | None = None


AnyRule = Union[  # noqa: UP007 - used at runtime by isinstance dispatch
    AgeRule,
    SexRule,
    ConditionRule,
    LabRule,
    LabUlnRule,
    CodedObservationRule,
    MostRecentClassRule,
    ProcedureRule,
    MedicationDaysRule,
    AllOf,
    AnyOf,
    Not,
]


@dataclass(frozen=True, slots=True)
class Criterion:
    id: str
    kind: str  # inclusion / exclusion
    text: str
    rule: AnyRule | None  # None: manual

    @property
    def info(self) -> CriterionInfo:
        # `alive` is built in: computed, though no YAML rule spells it
        return CriterionInfo(self.id, self.kind, self.text, self.rule is not None or self is ALIVE)


@dataclass(frozen=True, slots=True)
class Trial:
    id: str
    title: str
    path: Path
    criteria: tuple[Criterion, ...]
    terminology: Terminology
    # analyte name -> label: the values the overview shows per patient (`key_values:`)
    key_values: tuple[tuple[str, str], ...] = ()

    @property
    def infos(self) -> tuple[CriterionInfo, ...]:
        """Each criterion's CriterionInfo, the first lab criterion of each key analyte
        carrying that analyte's label."""
        labels, out = dict(self.key_values), []
        for c in self.criteria:
            info = c.info
            analyte = next((a for a in _analytes(c.rule) if a in labels), None)
            if analyte is not None:
                info = replace(info, key=labels.pop(analyte))
            out.append(info)
        return tuple(out)


def _analytes(rule: AnyRule | None) -> list[str]:
    """The analytes a rule's lab parts read, in the order written."""
    if isinstance(rule, LabRule | LabUlnRule):
        return [rule.analyte.name] if rule.analyte is not None else []
    if isinstance(rule, AllOf | AnyOf):
        return [a for part in rule.parts for a in _analytes(part)]
    if isinstance(rule, Not):
        return _analytes(rule.part)
    return []


def _short(title: str) -> str:
    """'Hemoglobin A1c (NGSP %)' -> 'Hemoglobin A1c': a column heading."""
    return title.split(" (")[0]


# Without `key_values:`, the overview shows the analytes of the first lab criteria, this many.
DEFAULT_KEY_VALUES = 3


class _Parser:
    def __init__(self, path: Path, term: Terminology, defaults: LineDict) -> None:
        self.path = path
        self.term = term
        self.defaults = defaults

    def fail(self, line: int, reason: str) -> CriteriaError:
        return CriteriaError(self.path, line, reason)

    def rule(self, node: Any, line: int) -> AnyRule:
        if not isinstance(node, LineDict):
            raise self.fail(line, "a rule must be a mapping such as {condition: {valueset: ...}}")
        kinds = [k for k in node if k != "outcome"]
        if len(kinds) != 1:
            raise self.fail(node.line, f"a rule needs exactly one kind, found {kinds or 'none'}")
        kind = kinds[0]
        builder = _KINDS.get(kind)
        if builder is None:
            known = ", ".join(sorted(_KINDS))
            raise self.fail(node.line_of(kind), f"unknown rule kind '{kind}' (known: {known})")
        outcome = self.outcome(node)
        return builder(self, node[kind], node.line_of(kind), outcome)

    def outcome(self, node: LineDict) -> tuple[tuple[Result, Result], ...]:
        raw = node.get("outcome")
        if raw is None:
            return ()
        if not isinstance(raw, LineDict):
            raise self.fail(node.line_of("outcome"), "outcome must map results, e.g. {met: unknown}")
        pairs = []
        for key, value in raw.items():
            if key not in _OUTCOMES or value not in _OUTCOMES:
                raise self.fail(raw.line_of(key), f"outcome maps met/not_met/unknown, not {key!r}: {value!r}")
            pairs.append((_OUTCOMES[key], _OUTCOMES[value]))
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
        name = raw.get(key)
        found = self.term.codesets.get(str(name))
        if found is None:
            raise self.fail(raw.line_of(key), f"unknown value set '{name}' (not in {self.term.folder})")
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

    def rules(self, raw: Any, line: int, kind: str) -> tuple[AnyRule, ...]:
        if not isinstance(raw, LineList) or not raw:
            raise self.fail(line, f"'{kind}' needs a non-empty list of rules")
        return tuple(self.rule(item, raw.line) for item in raw)


def _age(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    raw = p.params(raw, line, "age", set(), {"min", "max"})
    lo, hi = raw.get("min"), raw.get("max")
    for key, value in (("min", lo), ("max", hi)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise p.fail(raw.line_of(key), f"age '{key}' must be whole years")
    if lo is None and hi is None:
        raise p.fail(raw.line, "age needs 'min', 'max' or both")
    return AgeRule(line, outcome, lo, hi)


def _sex(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    raw = p.params(raw, line, "sex", set(), {"in", "not_in"})
    if ("in" in raw) == ("not_in" in raw):
        raise p.fail(raw.line, "sex needs exactly one of 'in' or 'not_in'")
    key = "in" if "in" in raw else "not_in"
    values = raw[key]
    if not isinstance(values, LineList) or not set(values) <= _GENDERS:
        raise p.fail(raw.line_of(key), f"sex '{key}' must list genders from {sorted(_GENDERS)}")
    return SexRule(line, outcome, frozenset(values), key == "not_in")


def _condition(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    raw = p.params(raw, line, "condition", {"valueset"}, {"current", "onset_within_days"})
    current = raw.get("current", True)
    if not isinstance(current, bool):
        raise p.fail(raw.line_of("current"), "'current' must be true or false")
    within = p.days(raw, "onset_within_days") if "onset_within_days" in raw else None
    return ConditionRule(line, outcome, p.codeset(raw, "valueset"), current, within)


def _lab(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    raw = p.params(raw, line, "lab", {"analyte", "unit"}, {"valueset", "op", "value", "between", "lookback_days"})
    analyte, codes = p.analyte(raw)
    unit = p.unit(raw, analyte, str(raw["unit"]))
    lookback = p.days(raw, "lookback_days", "lookback_days")
    if "between" in raw:
        bounds = raw["between"]
        if (
            "op" in raw
            or "value" in raw
            or not isinstance(bounds, LineList)
            or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            or bounds[0] > bounds[1]
        ):
            raise p.fail(raw.line_of("between"), "'between' is [low, high] (inclusive), without 'op'/'value'")
        return LabRule(line, outcome, analyte, codes, unit, ">=", 0.0, (float(bounds[0]), float(bounds[1])), lookback)
    if "op" not in raw or "value" not in raw:
        raise p.fail(raw.line, "lab needs 'op' and 'value' (or 'between')")
    return LabRule(line, outcome, analyte, codes, unit, p.op(raw), p.number(raw, "value"), None, lookback)


def _lab_uln(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    raw = p.params(raw, line, "lab_uln", {"analyte", "op", "multiple"}, {"valueset", "default_uln", "lookback_days"})
    analyte, codes = p.analyte(raw)
    uln = analyte.default_uln
    if "default_uln" in raw:
        spec = raw["default_uln"]
        if not isinstance(spec, LineDict) or not isinstance(spec.get("unit"), str):
            raise p.fail(raw.line_of("default_uln"), "default_uln needs 'value' and 'unit'")
        uln = (p.number(spec, "value"), str(spec["unit"]))
    if uln is None:
        raise p.fail(raw.line, f"analyte '{analyte.name}' has no default ULN: give 'default_uln'")
    return LabUlnRule(
        line,
        outcome,
        analyte,
        codes,
        p.op(raw),
        p.number(raw, "multiple"),
        uln,
        p.days(raw, "lookback_days", "lookback_days"),
    )


def _coded_observation(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    raw = p.params(raw, line, "coded_observation", {"code_valueset", "value_valueset", "within_days"}, set())
    return CodedObservationRule(
        line, outcome, p.codeset(raw, "code_valueset"), p.codeset(raw, "value_valueset"), p.days(raw, "within_days")
    )


def _most_recent_class(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    raw = p.params(raw, line, "most_recent_class", {"classes"}, {"sources", "lookback_days"})
    classes = raw["classes"]
    if not isinstance(classes, LineList) or not classes:
        raise p.fail(raw.line_of("classes"), "'classes' lists {valueset, result} from the lowest class up")
    parsed = []
    for item in classes:
        item = p.params(item, classes.line, "classes", {"valueset", "result"}, set())
        if item["result"] not in _OUTCOMES:
            raise p.fail(item.line_of("result"), "a class's result is met, not_met or unknown")
        parsed.append((p.codeset(item, "valueset"), _OUTCOMES[item["result"]]))
    sources = raw.get("sources", LineList(["observation_value", "condition_code"]))
    if not isinstance(sources, LineList) or not set(sources) <= {"observation_value", "condition_code"} or not sources:
        raise p.fail(raw.line_of("sources"), "'sources' lists observation_value and/or condition_code")
    return MostRecentClassRule(
        line, outcome, tuple(parsed), frozenset(sources), p.days(raw, "lookback_days", "lookback_days")
    )


def _procedure(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    raw = p.params(raw, line, "procedure", {"valueset", "within_days"}, {"statuses"})
    statuses = raw.get("statuses", ["completed", "in-progress"])
    if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
        raise p.fail(raw.line_of("statuses"), "'statuses' must be a list of Procedure statuses")
    return ProcedureRule(line, outcome, p.codeset(raw, "valueset"), p.days(raw, "within_days"), frozenset(statuses))


def _medication_days(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    raw = p.params(raw, line, "medication_days", {"valueset", "min_days"}, {"within_days"})
    name = raw["valueset"]
    meds = p.term.medsets.get(str(name))
    if meds is None:
        raise p.fail(raw.line_of("valueset"), f"unknown medication value set '{name}' (not in {p.term.folder})")
    min_days = p.days(raw, "min_days")
    within = p.days(raw, "within_days") if "within_days" in raw else None
    return MedicationDaysRule(line, outcome, meds, min_days, within)


def _all_of(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    return AllOf(line, outcome, p.rules(raw, line, "all_of"))


def _any_of(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    return AnyOf(line, outcome, p.rules(raw, line, "any_of"))


def _not(p: _Parser, raw: Any, line: int, outcome: Any) -> AnyRule:
    return Not(line, outcome, p.rule(raw, line))


_KINDS = {
    "age": _age,
    "sex": _sex,
    "condition": _condition,
    "lab": _lab,
    "lab_uln": _lab_uln,
    "coded_observation": _coded_observation,
    "most_recent_class": _most_recent_class,
    "procedure": _procedure,
    "medication_days": _medication_days,
    "all_of": _all_of,
    "any_of": _any_of,
    "not": _not,
}

ALIVE = Criterion("alive", "inclusion", "Alive at as-of (built in: not deceased on or before as-of)", None)


def load_trial(path: Path, mappings: Path | None = None) -> Trial:
    """Read and check a criteria file. `mappings` overrides the file's own `mappings:`."""
    doc = load_yaml(path)
    allowed = ("trial", "mappings", "defaults", "key_values", "criteria")
    for key in doc:
        if key not in allowed:
            raise CriteriaError(
                path, doc.line_of(key), f"unknown top-level key '{key}' (allowed: {', '.join(allowed)})"
            )
    trial = doc.get("trial")
    if (
        not isinstance(trial, LineDict)
        or not isinstance(trial.get("id"), str)
        or not isinstance(trial.get("title"), str)
    ):
        raise CriteriaError(path, doc.line_of("trial"), "'trial' needs 'id' and 'title'")
    if mappings is None:
        if not isinstance(doc.get("mappings"), str):
            raise CriteriaError(
                path, doc.line_of("mappings"), "'mappings' must name the value-set folder (relative to this file)"
            )
        mappings = (path.parent / str(doc["mappings"])).resolve()
    term = load_terminology(mappings)
    defaults = doc.get("defaults", LineDict())
    if not isinstance(defaults, LineDict) or set(defaults) - {"lookback_days"}:
        raise CriteriaError(path, doc.line_of("defaults"), "'defaults' may only hold lookback_days")
    parser = _Parser(path, term, defaults)
    items = doc.get("criteria")
    if not isinstance(items, LineList) or not items:
        raise CriteriaError(path, doc.line_of("criteria"), "'criteria' must be a non-empty list")
    criteria = [ALIVE]
    seen = {"alive"}
    for item in items:
        item = parser.params(item, items.line, "criterion", {"id", "kind", "text", "rule"}, set())
        cid = item["id"]
        if not isinstance(cid, str) or not _ID.match(cid):
            raise parser.fail(item.line_of("id"), f"criterion id {cid!r} must match [a-z0-9_]+")
        if cid in seen:
            raise parser.fail(item.line_of("id"), f"criterion id '{cid}' is used twice (or is the built-in 'alive')")
        seen.add(cid)
        if item["kind"] not in ("inclusion", "exclusion"):
            raise parser.fail(item.line_of("kind"), "kind must be inclusion or exclusion")
        if not isinstance(item["text"], str) or not item["text"].strip():
            raise parser.fail(item.line_of("text"), "text must give the protocol's wording")
        rule = None if item["rule"] == "manual" else parser.rule(item["rule"], item.line_of("rule"))
        criteria.append(Criterion(cid, str(item["kind"]), item["text"].strip(), rule))
    keys = _key_values(path, doc, term, criteria)
    return Trial(str(trial["id"]), str(trial["title"]), path, tuple(criteria), term, keys)


def _key_values(path: Path, doc: LineDict, term: Terminology, criteria: list[Criterion]) -> tuple[tuple[str, str], ...]:
    """`key_values:` as (analyte, label) pairs: a list of analyte names, or a mapping of analyte
    name to column label. Absent: the analytes of the first lab criteria."""
    raw = doc.get("key_values")
    if raw is None:
        seen: dict[str, str] = {}
        for c in criteria:
            for name in _analytes(c.rule):
                seen.setdefault(name, _short(term.analytes[name].title))
        return tuple(list(seen.items())[:DEFAULT_KEY_VALUES])
    line = doc.line_of("key_values")
    if isinstance(raw, LineList):
        pairs = [(str(name), None) for name in raw]
    elif isinstance(raw, LineDict):
        pairs = [(str(name), label) for name, label in raw.items()]
    else:
        raise CriteriaError(path, line, "'key_values' must list analytes (or map each analyte to its column label)")
    out = []
    for name, label in pairs:
        analyte = term.analytes.get(name)
        if analyte is None:
            raise CriteriaError(path, line, f"key_values: unknown analyte '{name}' (not in {term.folder})")
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise CriteriaError(path, line, f"key_values: the label of '{name}' must be text")
        if not any(name in _analytes(c.rule) for c in criteria):
            raise CriteriaError(path, line, f"key_values: no criterion reads analyte '{name}'")
        out.append((name, label.strip() if label else _short(analyte.title)))
    return tuple(out)
