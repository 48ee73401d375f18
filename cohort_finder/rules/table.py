"""A batch of patients' facts as tables in an in-process DuckDB, which the kinds that decide by
query (`Rule.query`) read: every rule of a kind and every patient of the batch in one statement.

- `facts`: one row per fact (k, patient, rtype, rid and the value columns of model.Fact the
  queries read), dates as written (their first 10 characters, contract §3);
- `codings`: a fact's codings in order (k, field 'code' or 'value', ord, system, code, display);
- `matches`: for each value set a query names (`set_id`), which of the batch's distinct codings
  it matches. That is decided here by CodeSet.matches, once per distinct coding (ICD-10-CM
  prefixes and ranges included), the way population tools join concept tables: the query joins,
  it never re-implements a value set.
- a kind's rules as a parameter table (`params`): one row per rule, numbered, so a statement's
  cost does not grow with the number of rules (DuckDB spends about a millisecond per operator of
  a statement however small its input; docs/decisions.md).

Columns travel as one list each (bound to `unnest`, or as an Arrow table for a large batch),
not as row inserts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from operator import attrgetter
from typing import Any

import duckdb

from ..model import Coding, Fact
from ..terminology import CodeSet
from ..units import UnitConverter

# model.Fact's columns the queries read, after the key and the patient
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("resource_type", "VARCHAR"),
    ("resource_id", "VARCHAR"),
    ("status", "VARCHAR"),
    ("clinical_status", "VARCHAR"),
    ("verification_status", "VARCHAR"),
    ("onset", "VARCHAR"),
    ("recorded", "VARCHAR"),
    ("abated", "BOOLEAN"),
    ("abatement", "VARCHAR"),
    ("effective", "VARCHAR"),
    ("effective_ts", "VARCHAR"),
    ("value_kind", "VARCHAR"),
    ("value", "DOUBLE"),
    ("comparator", "VARCHAR"),
    ("unit_code", "VARCHAR"),
    ("unit_text", "VARCHAR"),
    ("ref_high", "DOUBLE"),
    ("ref_high_unit_code", "VARCHAR"),
    ("ref_high_unit_text", "VARCHAR"),
    ("performed_start", "VARCHAR"),
    ("performed_end", "VARCHAR"),
    ("intent", "VARCHAR"),
    ("period_start", "VARCHAR"),
    ("period_end", "VARCHAR"),
    ("authored", "VARCHAR"),
    ("supply_duration", "DOUBLE"),
    ("repeats", "DOUBLE"),  # any whole number the record holds (the rule caps it)
    ("handed_over", "VARCHAR"),
    ("days_supply", "DOUBLE"),
)


# From this many rows a table goes to DuckDB as Arrow: lists bound to `unnest` take 0.55-0.75 s
# for a 2,500-patient batch's 19,000 facts, Arrow 0.1-0.2 s; below it, importing pyarrow (a
# quarter of a second) would cost more than it saves.
_ARROW_FROM = 2000


def sql_text(value: str) -> str:
    """A string literal (as-of, window starts, statuses: never text from the record)."""
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(sql_text(v) for v in sorted(values)) + ")"


def _literal(value: Any, kind: str) -> str:
    if value is None:
        return f"CAST(NULL AS {kind})"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return f"CAST({value} AS {kind})"
    if isinstance(value, float):
        return f"CAST('{value!r}' AS DOUBLE)"  # a plain 0.1 would be a DECIMAL
    if isinstance(value, str):
        return f"CAST({sql_text(value)} AS {kind})"
    return f"CAST([{', '.join(sql_text(v) for v in sorted(value))}] AS VARCHAR[])"


_DATABASE: duckdb.DuckDBPyConnection | None = None


def _database() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process (starting one costs tens of milliseconds, a batch's
    connection to it well under one); a forked worker opens its own (close_database)."""
    global _DATABASE
    if _DATABASE is None:
        # one thread: a batch is small, and the workers (workers.py) are the parallelism; more
        # threads only add their start-up to every one of the many small statements
        _DATABASE = duckdb.connect(config={"threads": 1})
    return _DATABASE


def close_database() -> None:
    """Closed before the process forks: a child that inherits an open DuckDB (its threads and
    locks do not come along) can die when it touches or frees it. Parent and child each open
    one again when they next need it."""
    global _DATABASE
    if _DATABASE is not None:
        _DATABASE.close()
        _DATABASE = None


os.register_at_fork(before=close_database)


class FactTable:
    def __init__(
        self,
        facts: Sequence[tuple[str, Fact]],
        as_of: date,
        converter: UnitConverter | None = None,
        known_medication_codes: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        """`facts`: (patient id, fact) pairs; `converter`: the mappings' unit conversions (the
        lab kinds work out theirs for the batch's units); `known_medication_codes`: every code
        the mappings know to name a medication (such a code decides, not the name)."""
        self.as_of = as_of
        self.converter = converter
        self.known_medication_codes = known_medication_codes
        self._facts = [fact for _, fact in facts]
        # the distinct (unit, referenceRange high's unit) of the Observations: conversions are
        # worked out for these, not for every row
        self.units: set[tuple[str, str | None]] = set()
        self.as_of_text = sql_text(as_of.isoformat())
        self._con = _database().cursor()  # its own connection: the tables are its TEMP tables
        self._sets: dict[int, int] = {}  # id(CodeSet) -> set_id
        self._keep: list[CodeSet] = []  # the sets named, so their ids stay theirs
        self._pending: list[tuple[int, str, str]] = []  # matches not yet inserted
        # column by column (a list per column is what DuckDB takes, and the fastest to build)
        columns: dict[str, list[Any]] = {"k": list(range(len(facts))), "patient": [p for p, _ in facts]}
        for name, kind in _COLUMNS:
            values = list(map(attrgetter(name), self._facts))
            columns[name] = [None if v is None else float(v) for v in values] if kind == "DOUBLE" else values
        coded_rows = [
            (k, field, n, coding.system, coding.code, coding.display)
            for k, fact in enumerate(self._facts)
            for field, codings in (("code", fact.codings), ("value", fact.value_codings))
            for n, coding in enumerate(codings)
        ]
        names = ("k", "field", "ord", "system", "code", "display")
        coded: dict[str, list[Any]] = {name: [row[n] for row in coded_rows] for n, name in enumerate(names)}
        for fact in self._facts:
            if fact.resource_type == "Observation" and (unit := fact.unit_code or fact.unit_text):
                high = fact.ref_high_unit_code or fact.ref_high_unit_text or unit if fact.ref_high is not None else None
                self.units.add((unit, high))
        self.value_units = {unit for unit, _ in self.units}
        types = {"k": "INTEGER", "patient": "VARCHAR", **dict(_COLUMNS)}
        self.load("facts", columns, types)
        coded_types = {"k": "INTEGER", "field": "VARCHAR", "ord": "INTEGER"}
        self.load("codings", coded, {**coded_types, "system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"})
        self._distinct = sorted(set(zip(coded["system"], coded["code"], strict=True)))
        self._con.execute("CREATE TEMP TABLE matches (set_id INTEGER, system VARCHAR, code VARCHAR)")

    def facts_of(self, types: Iterable[str]) -> Iterable[tuple[int, Fact]]:
        """(k, fact) of the facts of these resource types: what a kind works out in Python once
        per fact (which ingredient a medication record names: by code, or by name, a regular
        expression) and loads as a table of its own."""
        wanted = frozenset(types)
        return ((k, fact) for k, fact in enumerate(self._facts) if fact.resource_type in wanted)

    def load(self, name: str, columns: dict[str, list[Any]], types: dict[str, str]) -> None:
        """A temporary table from columns of values (VARCHAR unless `types` says otherwise)."""
        kinds = {column: types.get(column, "VARCHAR") for column in columns}
        rows = len(next(iter(columns.values()), []))
        if rows < _ARROW_FROM:  # lists bound as parameters
            select = ", ".join(f"unnest(${n + 1}::{kinds[c]}[]) AS {c}" for n, c in enumerate(columns))
            self._con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {select}", list(columns.values()))
            return
        import pyarrow as pa  # a tenth of the time of lists for a large batch; a quarter second to import

        arrow = {"VARCHAR": pa.string(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(), "INTEGER": pa.int32()}
        schema = pa.schema([(column, arrow[kind]) for column, kind in kinds.items()])
        self._con.register("incoming", pa.table(columns, schema=schema))
        try:
            self._con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM incoming")
        finally:
            self._con.unregister("incoming")

    def set_id(self, codes: CodeSet | None) -> int:
        """The id under which `matches` holds the batch's codings in this value set."""
        assert codes is not None  # a parsed rule always has its value sets
        found = self._sets.get(id(codes))
        if found is None:
            found = self._sets[id(codes)] = len(self._keep)
            self._keep.append(codes)
            # inserted when the next statement runs: one insert for all the sets a query names
            self._pending += [(found, s, c) for s, c in self._distinct if codes.matches(Coding(s, c))]
        return found

    def window(self, days: int | None) -> str | None:
        """A look-back's first day as a parameter (None: no window)."""
        return None if days is None else (self.as_of - timedelta(days=days)).isoformat()

    def in_window(self, column: str, start: str) -> str:
        """SQL for contract §3's window with its first day from a parameter column (`start`,
        NULL: none): a full date, on or before as-of, on or after `start`."""
        return f"length({column}) = 10 AND {column} <= {self.as_of_text} AND ({start} IS NULL OR {column} >= {start})"

    def first_codings(self, field: str = "code") -> str:
        """A relation (k, set_id, system, code, display): for each fact and each value set one of
        its codings (by `field`) is in, the first such coding, as CodeSet.first_match picks it:
        the coding the evidence names. Join it on k and set_id."""
        # one struct, so that a coding without a display is still the one picked (arg_min
        # passes over a NULL argument)
        first = (
            f"SELECT c.k, m.set_id, arg_min({{'system': c.system, 'code': c.code, 'display': c.display}}, c.ord) "
            "AS hit FROM codings AS c JOIN matches AS m ON m.system = c.system AND m.code = c.code "
            f"WHERE c.field = '{field}' GROUP BY c.k, m.set_id"
        )
        return f"(SELECT k, set_id, hit.system AS system, hit.code AS code, hit.display AS display FROM ({first}))"

    def params(self, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> str:
        """A kind's rules as a relation (rule, *columns): each row is (the rule's number, *values)
        (a rule may have several rows); `columns` are (name, DuckDB type); values are numbers,
        booleans, None, strings (never text from a record) or lists of strings."""
        if not rows:  # no rows: VALUES cannot be empty
            typed = ", ".join(
                ["CAST(NULL AS INTEGER) AS rule", *(f"CAST(NULL AS {kind}) AS {name}" for name, kind in columns)]
            )
            return f"(SELECT {typed} WHERE FALSE)"
        names = ", ".join(["rule", *(name for name, _ in columns)])
        values = ", ".join(
            "("
            + ", ".join([str(int(row[0])), *(_literal(v, kind) for v, (_, kind) in zip(row[1:], columns, strict=True))])
            + ")"
            for row in rows
        )
        return f"(SELECT * FROM (VALUES {values}) AS r({names}))"

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self._pending:
            ids, systems, codes = (list(column) for column in zip(*self._pending, strict=True))
            self._con.execute(
                "INSERT INTO matches SELECT unnest($1::INTEGER[]), unnest($2::VARCHAR[]), unnest($3::VARCHAR[])",
                [ids, systems, codes],
            )
            self._pending = []
        return self._con.execute(query).fetchall()

    def close(self) -> None:
        self._con.close()
