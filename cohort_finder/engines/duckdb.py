"""The DuckDB engine: the reduce step as SQL over NDJSON, in-process, no server.

NDJSON files are scanned by DuckDB with explicit columns (schema.COLUMNS) and reduced to the
rows the trial can use (schema.reduce_sql); only those rows reach Python, where the same
catalogue, rules and reports as every other engine take over. So memory holds the reduced
rows, not the source. Files DuckDB cannot read as declared (a broken line, a field of the
wrong type, a Bundle on a line) are read by the Python reader instead, which names the bad
line; JSON Bundles are always read by it (they carry urn:uuid references and are small).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from ..catalogue import Catalogue
from ..criteria import Trial
from ..model import RunError
from ..sources.base import Item, Source
from ..sources.files import read_json, read_ndjson
from .schema import COLUMNS, reduce_sql, reduce_tables, references_sql

log = logging.getLogger(__name__)
_BATCH = 10_000
_PLACE = "\x00"  # origin of a DuckDB row: file NUL Type/id; turned into file:line only for errors


def strip_nulls(value: Any) -> Any:
    """A row as the resource it came from: columns the line did not have are absent, not null
    (facts.py tells `valueQuantity` present from absent)."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value if v is not None]
    return value


def _columns_sql() -> str:
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items()) + "}"


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, threads: int | None = None, memory_limit: str | None = None) -> None:
        self.threads = threads
        self.memory_limit = memory_limit
        self.root = Path(".")

    def _connect(self, trial: Trial) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(config={"threads": self.threads} if self.threads else {})
        if self.memory_limit:
            con.execute(f"SET memory_limit = '{self.memory_limit}'")
        tables = reduce_tables(trial)
        con.execute("CREATE TEMP TABLE trial_codes (system VARCHAR, code VARCHAR)")
        if tables.codes:
            con.executemany("INSERT INTO trial_codes VALUES (?, ?)", tables.codes)
        con.execute("CREATE TEMP TABLE trial_icd (category VARCHAR)")
        if tables.icd_categories:
            con.executemany("INSERT INTO trial_icd VALUES (?)", [(c,) for c in tables.icd_categories])
        self._reduce = reduce_sql(tables)
        return con

    def _view(self, con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
        listing = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW resources AS SELECT * FROM read_ndjson({listing}, "
            f"columns = {_columns_sql()}, filename = true, format = 'newline_delimited')"
        )

    def _reduce_into_table(self, con: duckdb.DuckDBPyConnection, files: list[Path]) -> list[Path]:
        """Reduce `files` into the temp table `kept`; return the files DuckDB could not read
        (found by halving the list, since a failed scan does not say which file failed)."""
        if not files:
            return []
        self._view(con, files)
        try:
            con.execute(f"INSERT INTO kept {self._reduce}")
            return []
        except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:  # the data, not the query
            if len(files) == 1:
                log.info(
                    "DuckDB cannot read %s as declared (%s): the Python reader takes it",
                    self._name(files[0]),
                    type(exc).__name__,
                )
                return files
            half = len(files) // 2
            return self._reduce_into_table(con, files[:half]) + self._reduce_into_table(con, files[half:])

    def _name(self, path: Path) -> str:
        return path.name if self.root.is_file() else path.relative_to(self.root).as_posix()

    def collect(self, trial: Trial, source: Source) -> Catalogue:
        from . import PythonEngine, files_of

        folder, fetch_errors = files_of(source)
        if folder is None:  # REST streams resources one page at a time: nothing to scan
            return PythonEngine().collect(trial, source)
        self.root = folder.root
        files = folder.files()
        ndjson = [f for f in files if f.suffix.lower() == ".ndjson"]
        catalogue = Catalogue()
        catalogue.errors.extend(fetch_errors)
        for path in files:
            if path.suffix.lower() != ".ndjson":
                for item in read_json(path, self._name(path)):
                    catalogue.add(item)
        con = self._connect(trial)
        unreadable: list[Path] = []
        if ndjson:
            self._view(con, ndjson[:1])  # binds the columns; nothing is read yet
            con.execute(f"CREATE TEMP TABLE kept AS SELECT * FROM ({self._reduce}) WHERE FALSE")
            unreadable = self._reduce_into_table(con, ndjson)
        odd = self._odd_files(con) if ndjson else set()
        fallback = sorted(set(unreadable) | {p for p in ndjson if str(p) in odd})
        for path in fallback:
            for item in read_ndjson(path, self._name(path)):
                catalogue.add(item)
        readable = [p for p in ndjson if p not in fallback]
        if readable:
            skip = {str(p) for p in fallback}
            for item in self._kept_items(con, skip):
                catalogue.add(item)
            self._orphans(con, catalogue, readable)
        log.info("DuckDB reduced %d NDJSON files (%d read by the Python reader instead)", len(readable), len(fallback))
        con.close()
        return catalogue

    def _odd_files(self, con: duckdb.DuckDBPyConnection) -> set[str]:
        """Files with lines the declared columns cannot carry: a Bundle, or no resourceType."""
        rows = con.execute(
            "SELECT DISTINCT filename FROM kept WHERE resourceType IS NULL OR resourceType = 'Bundle'"
        ).fetchall()
        return {str(r[0]) for r in rows}

    def _kept_items(self, con: duckdb.DuckDBPyConnection, skip: set[str]) -> Iterator[Item]:
        cursor = con.execute("SELECT * FROM kept")
        names = [d[0] for d in cursor.description or []]
        while batch := cursor.fetchmany(_BATCH):
            for row in batch:
                record = dict(zip(names, row, strict=True))
                filename = str(record.pop("filename"))
                if filename in skip:
                    continue
                resource = strip_nulls(record)
                where = f"{self._name(Path(filename))}{_PLACE}{resource.get('resourceType')}/{resource.get('id')}"
                yield Item(resource, where)

    def _orphans(self, con: duckdb.DuckDBPyConnection, catalogue: Catalogue, files: list[Path]) -> None:
        self._view(con, files)
        con.execute("CREATE OR REPLACE TEMP TABLE known_patients (ref VARCHAR)")
        con.executemany("INSERT INTO known_patients VALUES (?)", [(f"Patient/{p}",) for p in catalogue.patients])
        cursor = con.execute(references_sql())
        while batch := cursor.fetchmany(_BATCH):
            for filename, rtype, rid, ref in batch:
                if (rtype, rid) not in catalogue.facts and (rtype, rid) not in catalogue.other_refs:
                    where = f"{self._name(Path(filename))}{_PLACE}{rtype}/{rid}"
                    catalogue.other_refs[(rtype, rid)] = (ref, where)

    def place(self, error: RunError) -> RunError:
        """`file:line` for an error about a DuckDB row (found by reading that one file)."""
        if _PLACE not in error.source:
            return error
        name, key = error.source.split(_PLACE, 1)
        line = locate(self.root / name if not self.root.is_file() else self.root, key)
        source = f"{name}:{line}" if line else name
        return RunError(source, error.message, error.patient_id, error.resource_type)


def locate(path: Path, key: str) -> int | None:
    """The line of `path` holding the resource `Type/id`."""
    rtype, rid = key.split("/", 1)
    pattern = re.compile(rb'"id"\s*:\s*"' + re.escape(rid.encode()) + rb'"')
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if pattern.search(line) and f'"{rtype}"'.encode() in line:
                return number
    return None
