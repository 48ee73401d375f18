"""What the lab kinds (`lab`, `lab_uln`) share: the most recent usable Observation of an analyte
in a window, walked back to, and tested against a threshold; one statement decides every rule
of a kind for every patient of a batch.

Contract §3: usable means status final/amended/corrected/preliminary, a numeric
valueQuantity whose unit converts; a comparator (`<5`) is used only where it alone decides
the rule. Unusable values are passed over for an older usable one, and each reason is kept
so an `unknown` says why.

Units convert by the linear maps of units.py (UCUM and the analyte's own conversions), worked
out in Python once per rule and distinct unit of the batch and handed to the statement as a
parameter table; the value is converted, rounded and tested in SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..model import Evidence, Outcome, Result
from ..terminology import Analyte, CodeSet
from ..units import UnitConverter
from .base import Need, Rule
from .table import FactTable, sql_list

USABLE_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
ROUND = 9  # decimal places: keeps float noise (1400 /uL -> 1.4000000000000001) off thresholds
_EPS = "CAST('1e-09' AS DOUBLE)"  # just inside an open end of a reading's interval
_FAR = "CAST('1e+300' AS DOUBLE)"  # stands in for an infinite end
# a rule's conversions of the batch's units: (rule, source unit, target unit, scale, offset, identity)
CONVERSION_COLUMNS = (
    ("source", "VARCHAR"),
    ("target", "VARCHAR"),
    ("a", "DOUBLE"),
    ("b", "DOUBLE"),
    ("same", "BOOLEAN"),
)


def conversions(
    converter: UnitConverter, rule: int, analyte: Analyte, pairs: Iterable[tuple[str, str]]
) -> list[tuple[Any, ...]]:
    """The rows of CONVERSION_COLUMNS for the (source, target) pairs that convert; `same` when no
    arithmetic is done (the value is kept as it is)."""
    rows: list[tuple[Any, ...]] = []
    for source, target in sorted(set(pairs)):
        found = converter.linear(source, target, analyte.units)
        if found is not None:
            (scale, offset), same = found
            rows.append((rule, source, target, scale, offset, same))
    return rows


def converted(value: str, conversion: str) -> str:
    """`value` through a conversion row (alias `conversion`), rounded; NULL where none."""
    mapped = f"CASE WHEN {conversion}.same THEN {value} ELSE {conversion}.a * {value} + {conversion}.b END"
    return f"CASE WHEN {conversion}.a IS NOT NULL THEN round({mapped}, {ROUND}) END"


def holds(op: str, x: str, t: str) -> str:
    """SQL: `x op t`, with `op` a column holding <, <=, > or >=."""
    cases = " ".join(f"WHEN '{o}' THEN ({x}) {o} ({t})" for o in ("<", "<=", ">"))
    return f"CASE {op} {cases} ELSE ({x}) >= ({t}) END"


def decided(tested: str, edges: Sequence[str], test: Callable[[str], str]) -> str:
    """SELECT over `tested` (columns rule, k, x and comparator) adding `decided`: TRUE/FALSE when
    `test` gives the same answer for every value the reading allows (a comparator widens a value
    to an interval), else NULL. The interval's ends and just inside them, and every threshold
    inside it (`edges`: columns; NULL: none), are probed: the test is a union of intervals with
    ends at the thresholds, so these points decide it. The probes are rows (one `test` in the
    statement, not one per probe: DuckDB's cost grows with the expressions it plans)."""
    far = f"CASE WHEN x > 0 THEN {_FAR} ELSE -{_FAR} END"  # an infinite value probes as +-1e300
    ends = (
        f"SELECT *, comparator IN ('<', '<=') AS below, "
        f"CASE WHEN comparator IN ('<', '<=') THEN -{_FAR} WHEN isinf(x) THEN {far} "
        f"WHEN comparator = '>' THEN x + {_EPS} ELSE x END AS low, "
        f"CASE WHEN comparator IN ('>', '>=') THEN {_FAR} WHEN isinf(x) THEN {far} "
        f"WHEN comparator = '<' THEN x - {_EPS} ELSE x END AS high FROM ({tested})"
    )
    inside = [  # the thresholds inside the interval, and just either side of them
        f"CASE WHEN (below AND {t} < x) OR (NOT below AND x < {t}) THEN {point} END"
        for t in edges
        for point in (f"{t} - {_EPS}", t, f"{t} + {_EPS}")
    ]
    points = f"unnest([low, high, {', '.join(inside)}]) AS point"
    widened = "x IS NOT NULL AND comparator IN ('<', '<=', '>', '>=')"
    probed = (
        f"SELECT rule, k, bool_and({test('point')}) AS always, bool_or({test('point')}) AS ever "
        f"FROM (SELECT *, {points} FROM ends WHERE {widened}) WHERE point IS NOT NULL GROUP BY rule, k"
    )
    # "ad" and the like decide nothing
    return (
        f"WITH ends AS ({ends}) SELECT e.*, CASE WHEN e.x IS NULL THEN NULL "
        f"WHEN e.comparator IS NULL THEN {test('e.x')} "
        "WHEN e.comparator NOT IN ('<', '<=', '>', '>=') THEN NULL "
        "WHEN p.always THEN TRUE WHEN NOT p.ever THEN FALSE END AS decided "
        "FROM ends AS e LEFT JOIN (" + probed + ") AS p ON p.rule = e.rule AND p.k = e.k"
    )


@dataclass(frozen=True, slots=True)
class AnalyteRule(Rule):
    """What the lab kinds share: an analyte, the codes that name it, a look-back window; the
    statement walking back from the most recent value to the first one that decides."""

    analyte: Analyte | None = None
    codes: CodeSet | None = None
    lookback_days: int = 365
    met_stands = False  # a newer value may decide otherwise
    by_query = True
    # the kind's own parameter columns (name, DuckDB type), as `parameters` gives them
    columns: ClassVar[tuple[tuple[str, str], ...]] = ()

    def needs(self) -> list[Need]:
        assert self.codes is not None
        return [Need("Observation", "code", self.codes, self.lookback_days)]

    def analytes(self) -> list[str]:
        return [self.analyte.name] if self.analyte is not None else []

    def parameters(self) -> tuple[Any, ...]:
        """The rule's values of `columns`."""
        raise NotImplementedError

    @classmethod
    def tested(cls, rules: Sequence[AnalyteRule], t: FactTable, candidates: str) -> str:
        """SELECT over `candidates` (alias r) adding x (the value converted and rounded, NULL
        where it does not convert), target (its unit), uln and uln_source, and decided."""
        raise NotImplementedError

    def describe(self, target: str) -> str:
        """The test in words, as a note says it cannot be decided."""
        raise NotImplementedError

    @classmethod
    def query(cls, rules: Sequence[Rule], t: FactTable) -> str:
        mine = cls.mine(rules)
        params = t.params(
            (("set_id", "INTEGER"), ("start", "VARCHAR"), *cls.columns),
            [(n, t.set_id(r.codes), t.window(r.lookback_days), *r.parameters()) for n, r in enumerate(mine)],
        )
        order = "f.effective DESC, coalesce(f.effective_ts, '') DESC, f.resource_id DESC"
        reason = (
            f"CASE WHEN coalesce(f.status, '') NOT IN {sql_list(USABLE_STATUSES)} THEN 'status' "
            "WHEN f.value_kind IS DISTINCT FROM 'quantity' OR f.value IS NULL THEN 'value' END"
        )
        # Observations in the value set inside the window, most recent first. (Nothing is said
        # of older ones: a server source restricted by date never sees them, and every source
        # must give the same result.)
        candidates = (
            f"SELECT p.*, f.k, f.patient, f.resource_id, f.effective, f.status, {reason} AS reason, "
            "coalesce(f.unit_code, f.unit_text) AS unit, f.comparator, f.value, f.ref_high, "
            "coalesce(f.ref_high_unit_code, f.ref_high_unit_text, f.unit_code, f.unit_text) AS ref_unit, "
            "c.system, c.code, c.display, "
            f"row_number() OVER (PARTITION BY p.rule, f.patient ORDER BY {order}) AS pos "
            f"FROM facts AS f JOIN {t.first_codings()} AS c ON c.k = f.k JOIN {params} AS p ON p.set_id = c.set_id "
            f"WHERE f.resource_type = 'Observation' AND coalesce(f.status, '') <> 'cancelled' "
            f"AND {t.in_window('f.effective', 'p.start')}"
        )
        return (
            f"WITH tested AS ({cls.tested(mine, t, candidates)}), "
            "upto AS (SELECT rule, patient, min(pos) FILTER (WHERE decided IS NOT NULL) AS upto "
            "FROM tested GROUP BY rule, patient) "
            "SELECT r.rule, r.patient, r.resource_id, r.effective, r.status, r.reason, r.unit, r.comparator, "
            "r.value, r.x, r.decided, r.target, r.uln, r.uln_source, r.system, r.code, r.display "
            "FROM tested AS r JOIN upto USING (rule, patient) WHERE upto IS NULL OR r.pos <= upto "
            "ORDER BY r.rule, r.patient, r.pos"
        )

    def decide(self, rows: Sequence[tuple[Any, ...]]) -> Outcome:
        """Walk back from the most recent value to the first that decides; each one passed
        over says why."""
        analyte = self.analyte
        assert analyte is not None
        skipped: list[str] = []
        for rid, day, status, reason, unit, comparator, value, x, verdict, target, uln, source, *coding in rows:
            where = f"Observation/{rid} on {day} unusable:"
            if reason == "status":
                skipped.append(f"{where} status {status or 'missing'}")
                continue
            if reason == "value":
                skipped.append(f"{where} no numeric valueQuantity")
                continue
            if x is None:
                skipped.append(f"{where} unit {unit!r} does not convert to {target}")
                continue
            shown = f"{comparator or ''}{x:g}"
            if verdict is None:
                skipped.append(f"{where} {shown} {target} cannot decide {self.describe(target)}")
                continue
            system, code, display = coding
            original = unit != target
            evidence = Evidence(
                f"Observation/{rid}",
                code=f"{system}|{code}",
                date=day,
                value=x if comparator is None else shown,
                unit=target,
                original_value=value if original else None,
                original_unit=unit if original else None,
                uln=uln,
                uln_source=source,
                display=display,
            )
            note = f"most recent {analyte.title} {shown} {target} on {day}"
            if uln is not None:
                note += f" (ULN {uln:g} {target}, {'default ULN' if source == 'default' else 'reference range'})"
            return Outcome(Result.MET if verdict else Result.NOT_MET, (evidence,), (note, *skipped))
        if not rows:
            return Outcome(Result.UNKNOWN, (), (f"no {analyte.title} in the {self.lookback_days} days before as-of",))
        return Outcome(Result.UNKNOWN, (), tuple(skipped))
