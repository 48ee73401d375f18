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

Columns travel as one list each (`unnest`), not as row inserts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

import duckdb

from ..model import Coding, Fact
from ..terminology import CodeSet

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
    ("performed_start", "VARCHAR"),
    ("performed_end", "VARCHAR"),
)


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


_DATABASE: tuple[int, duckdb.DuckDBPyConnection] | None = None


def _database() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process (starting one costs tens of milliseconds, a batch's
    connection to it well under one); a forked worker starts its own."""
    global _DATABASE
    if _DATABASE is None or _DATABASE[0] != os.getpid():
        # one thread: a batch is small, and the workers (workers.py) are the parallelism; more
        # threads only add their start-up to every one of the many small statements
        _DATABASE = (os.getpid(), duckdb.connect(config={"threads": 1}))
    return _DATABASE[1]


def close_database() -> None:
    """Closed before the process forks: a child that inherits an open DuckDB (its threads and
    locks do not come along) can die when it touches or frees it. The parent opens it again when
    it next needs it."""
    global _DATABASE
    if _DATABASE is not None:
        if _DATABASE[0] == os.getpid():
            _DATABASE[1].close()
        _DATABASE = None


os.register_at_fork(before=close_database)


class FactTable:
    def __init__(self, facts: Sequence[tuple[str, Fact]], as_of: date) -> None:
        """`facts`: (patient id, fact) pairs."""
        self.as_of = as_of
        self.as_of_text = sql_text(as_of.isoformat())
        self._con = _database().cursor()  # its own connection: the tables are its TEMP tables
        self._sets: dict[int, int] = {}  # id(CodeSet) -> set_id
        self._keep: list[CodeSet] = []  # the sets named, so their ids stay theirs
        columns: dict[str, list[Any]] = {"k": [], "patient": [], **{name: [] for name, _ in _COLUMNS}}
        coded: dict[str, list[Any]] = {"k": [], "field": [], "ord": [], "system": [], "code": [], "display": []}
        for k, (patient, fact) in enumerate(facts):
            columns["k"].append(k)
            columns["patient"].append(patient)
            for name, kind in _COLUMNS:
                value = getattr(fact, name)
                columns[name].append(float(value) if kind == "DOUBLE" and value is not None else value)
            for field, codings in (("code", fact.codings), ("value", fact.value_codings)):
                for n, coding in enumerate(codings):
                    for key, value in (("k", k), ("field", field), ("ord", n)):
                        coded[key].append(value)
                    coded["system"].append(coding.system)
                    coded["code"].append(coding.code)
                    coded["display"].append(coding.display)
        types = {"k": "INTEGER", "patient": "VARCHAR", **dict(_COLUMNS)}
        self._load("facts", columns, types)
        coded_types = {"k": "INTEGER", "field": "VARCHAR", "ord": "INTEGER"}
        self._load("codings", coded, {**coded_types, "system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"})
        self._distinct = sorted(set(zip(coded["system"], coded["code"], strict=True)))
        self._con.execute("CREATE TEMP TABLE matches (set_id INTEGER, system VARCHAR, code VARCHAR)")

    def _load(self, name: str, columns: dict[str, list[Any]], types: dict[str, str]) -> None:
        select = ", ".join(f"unnest(${n + 1}::{types[c]}[]) AS {c}" for n, c in enumerate(columns))
        self._con.execute(f"CREATE TEMP TABLE {name} AS SELECT {select}", list(columns.values()))

    def set_id(self, codes: CodeSet | None) -> int:
        """The id under which `matches` holds the batch's codings in this value set."""
        assert codes is not None  # a parsed rule always has its value sets
        found = self._sets.get(id(codes))
        if found is None:
            found = self._sets[id(codes)] = len(self._keep)
            self._keep.append(codes)
            hits = [(s, c) for s, c in self._distinct if codes.matches(Coding(s, c))]
            if hits:
                self._con.execute(
                    "INSERT INTO matches SELECT $1, unnest($2::VARCHAR[]), unnest($3::VARCHAR[])",
                    [found, [s for s, _ in hits], [c for _, c in hits]],
                )
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

    def matched(self, codes: CodeSet, field: str = "code", alias: str = "c") -> str:
        """A join of `facts AS f` to the first of its codings (by `field`) in one value set.
        Gives columns {alias}.system, {alias}.code, {alias}.display."""
        sid = self.set_id(codes)
        return f"JOIN {self.first_codings(field)} AS {alias} ON {alias}.k = f.k AND {alias}.set_id = {sid}"

    def params(self, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> str:
        """A kind's rules as a relation (rule, *columns): each row is (the rule's number, *values)
        (a rule may have several rows); `columns` are (name, DuckDB type); values are numbers,
        booleans, None, strings (never text from a record) or lists of strings."""
        names = ", ".join(["rule", *(name for name, _ in columns)])
        values = ", ".join(
            "("
            + ", ".join([str(int(row[0])), *(_literal(v, kind) for v, (_, kind) in zip(row[1:], columns, strict=True))])
            + ")"
            for row in rows
        )
        return f"(SELECT * FROM (VALUES {values}) AS r({names}))"

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        return self._con.execute(query).fetchall()

    def close(self) -> None:
        self._con.close()
