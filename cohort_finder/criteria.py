"""Criteria YAML -> a typed model, checked against the value sets, with line-numbered errors.

The language is documented in docs/criteria-language.md. The file's frame (trial, mappings,
defaults, key values, the criteria list) is read here; each rule is parsed by its kind's class
in `rules/`. Nothing about a trial lives in Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import CriteriaError
from .model import CriterionInfo
from .rules import Rule
from .rules.parser import Parser
from .terminology import Terminology, load_terminology
from .yamlio import LineDict, LineList, load_yaml

_ID = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True, slots=True)
class Criterion:
    id: str
    kind: str  # inclusion / exclusion
    text: str
    rule: Rule | None  # None: manual

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
            analyte = next((a for a in (c.rule.analytes() if c.rule else []) if a in labels), None)
            if analyte is not None:
                info = replace(info, key=labels.pop(analyte))
            out.append(info)
        return tuple(out)


def _short(title: str) -> str:
    """'Hemoglobin A1c (NGSP %)' -> 'Hemoglobin A1c': a column heading."""
    return title.split(" (")[0]


# Without `key_values:`, the overview shows the analytes of the first lab criteria, this many.
DEFAULT_KEY_VALUES = 3


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
    parser = Parser(path, term, defaults)
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
            for name in c.rule.analytes() if c.rule else []:
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
        if not any(c.rule and name in c.rule.analytes() for c in criteria):
            raise CriteriaError(path, line, f"key_values: no criterion reads analyte '{name}'")
        out.append((name, label.strip() if label else _short(analyte.title)))
    return tuple(out)
