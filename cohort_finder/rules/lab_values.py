"""What the lab kinds (`lab`, `lab_uln`) share: the most recent usable Observation in a window,
walked back to, and tested against a threshold.

Contract §3: usable means status final/amended/corrected/preliminary, a numeric
valueQuantity whose unit converts; a comparator (`<5`) is used only where it alone decides
the rule. Unusable values are passed over for an older usable one, and each reason is kept
so an `unknown` says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..model import Coding, Evidence, Fact, Outcome, Result
from ..terminology import Analyte, CodeSet
from .base import Need, Rule
from .context import Context

USABLE_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
ROUND = 9  # decimal places: keeps float noise (1400 /uL -> 1.4000000000000001) off thresholds


@dataclass(frozen=True, slots=True)
class Reading:
    """A value and the interval of true values it allows (a comparator widens it)."""

    value: float
    low: float
    high: float
    low_open: bool
    high_open: bool


def _reading(value: float, comparator: str | None) -> Reading | None:
    if comparator is None:
        return Reading(value, value, value, False, False)
    if comparator in ("<", "<="):
        return Reading(value, -math.inf, value, True, comparator == "<")
    if comparator in (">", ">="):
        return Reading(value, value, math.inf, comparator == ">", True)
    return None  # "ad" (sufficient to achieve this total) and the like decide nothing


def holds(op: str, x: float, t: float) -> bool:
    return {"<": x < t, "<=": x <= t, ">": x > t, ">=": x >= t}[op]


def _decide(reading: Reading, test: Callable[[float], bool], edges: tuple[float, ...]) -> bool | None:
    """True/False when the test gives the same answer for every value the reading allows."""
    if reading.low == reading.high:
        return test(reading.value)
    # Probe the interval's ends and just inside them, and every threshold inside it: the test
    # is a union of intervals with ends at the thresholds, so these points decide it.
    points = []
    eps = 1e-9
    for end, is_open, inward in ((reading.low, reading.low_open, eps), (reading.high, reading.high_open, -eps)):
        if math.isfinite(end):
            points.append(end + inward if is_open else end)
        else:
            points.append(math.copysign(1e300, end))
    for t in edges:
        if reading.low < t < reading.high:
            points.extend((t - eps, t, t + eps))
    answers = {test(p) for p in points}
    return answers.pop() if len(answers) == 1 else None


def _candidates(ctx: Context, codes: CodeSet, lookback: int) -> list[tuple[Fact, Coding]]:
    """Observations in the value set inside the window, most recent first. (Nothing is said
    of older ones: a server source restricted by date never sees them, and every source must
    give the same result.)"""
    inside = []
    for fact in ctx.facts("Observation"):
        coding = codes.first_match(fact.codings)
        if coding is not None and fact.status != "cancelled" and ctx.in_window(fact.effective, lookback):
            inside.append((fact, coding))
    inside.sort(key=lambda p: (p[0].effective or "", p[0].effective_ts or "", p[0].resource_id), reverse=True)
    return inside


def _unusable_reason(fact: Fact) -> str | None:
    if fact.status not in USABLE_STATUSES:
        return f"status {fact.status or 'missing'}"
    if fact.value_kind != "quantity" or fact.value is None:
        return "no numeric valueQuantity"
    return None


@dataclass(frozen=True, slots=True)
class AnalyteRule(Rule):
    """What the lab kinds share: an analyte, the codes that name it, a look-back window."""

    analyte: Analyte | None = None
    codes: CodeSet | None = None
    lookback_days: int = 365
    met_stands = False  # a newer value may decide otherwise

    def needs(self) -> list[Need]:
        assert self.codes is not None
        return [Need("Observation", "code", self.codes, self.lookback_days)]

    def analytes(self) -> list[str]:
        return [self.analyte.name] if self.analyte is not None else []


@dataclass(frozen=True, slots=True)
class Test:
    test: Callable[[float], bool]
    edges: tuple[float, ...]
    unit: str  # the unit the value must be in
    describe: str
    uln: float | None = None
    uln_source: str | None = None


def most_recent(
    ctx: Context, analyte: Analyte, codes: CodeSet, lookback: int, make_test: Callable[[Fact, str], Test | str]
) -> Outcome:
    """Walk back from the most recent value to the first usable one; it decides."""
    candidates = _candidates(ctx, codes, lookback)
    skipped: list[str] = []
    for fact, coding in candidates:
        where = f"Observation/{fact.resource_id}"
        reason = _unusable_reason(fact)
        unit = fact.unit_code or fact.unit_text
        test = make_test(fact, unit or "") if reason is None else reason
        if isinstance(test, str):
            skipped.append(f"{where} on {fact.effective} unusable: {test}")
            continue
        assert fact.value is not None
        converted = ctx.converter.convert(fact.value, unit, test.unit, analyte.units)
        if converted is None:
            skipped.append(f"{where} on {fact.effective} unusable: unit {unit!r} does not convert to {test.unit}")
            continue
        converted = round(converted, ROUND)
        reading = _reading(converted, fact.comparator)
        decided = _decide(reading, test.test, test.edges) if reading else None
        shown = f"{fact.comparator or ''}{converted:g}"
        if decided is None:
            skipped.append(f"{where} on {fact.effective} unusable: {shown} {test.unit} cannot decide {test.describe}")
            continue
        original = unit != test.unit
        evidence = Evidence(
            where,
            code=coding.token,
            date=fact.effective,
            value=converted if fact.comparator is None else shown,
            unit=test.unit,
            original_value=fact.value if original else None,
            original_unit=unit if original else None,
            uln=test.uln,
            uln_source=test.uln_source,
            display=coding.display,
        )
        note = f"most recent {analyte.title} {shown} {test.unit} on {fact.effective}"
        if test.uln is not None:
            source = "default ULN" if test.uln_source == "default" else "reference range"
            note += f" (ULN {test.uln:g} {test.unit}, {source})"
        return Outcome(Result.MET if decided else Result.NOT_MET, (evidence,), (note, *skipped))
    if not candidates:
        return Outcome(Result.UNKNOWN, (), (f"no {analyte.title} in the {lookback} days before as-of",))
    return Outcome(Result.UNKNOWN, (), tuple(skipped))
