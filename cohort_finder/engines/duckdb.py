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
from pathlib import Path

import duckdb

from ..catalogue import Catalogue
from ..criteria import Trial
from ..model import RunError
from ..sources import jsontext
from ..sources.base import Item, Source
from ..sources.files import read_json, read_ndjson
from .origins import place, relative_name, row_origin
from .schema import COLUMNS, DUCKDB_COLUMNS, duckdb_views, kept_sql, matched_sql, reduce_tables, references_sql

log = logging.getLogger(__name__)
_BATCH = 10_000
# What a scan raises when the data do not fit the declared columns (not when the query is
# wrong). DuckDB's Python binding raises UnicodeDecodeError when the message quotes a line cut
# in the middle of a character.
_UNREADABLE = (
    duckdb.InvalidInputException,
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    UnicodeDecodeError,
)
_Row = tuple[str, str | None, str, bool]  # file, resourceType, the row as JSON text, identity unreadable


def _columns_sql(columns: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items()) + "}"


class DuckDBEngine:
    name = "duckdb"

    def __init__(self) -> None:
        self.root = Path(".")
        self._names: dict[str, str] = {}
        self._references: set[str] = set()  # patient references of the NDJSON rows

    def _connect(self, trial: Trial) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        tables = reduce_tables(trial)
        # lists as parameters: one statement, not thousands of inserts
        con.execute(
            "CREATE TEMP TABLE trial_tokens AS SELECT unnest($1::VARCHAR[]) AS token",
            [[f"{system}|{code}" for system, code in tables.codes]],
        )
        con.execute("CREATE TEMP TABLE trial_icd AS SELECT unnest($1::VARCHAR[]) AS category", [tables.icd_categories])
        self._kept_query = kept_sql(tables)
        return con

    def _view(self, con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
        listing = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
        scans = (
            f"read_ndjson({listing}, columns = {_columns_sql(columns)}, filename = true, format = 'newline_delimited')"
            for columns in (COLUMNS, DUCKDB_COLUMNS)
        )
        for statement in duckdb_views(*scans):
            con.execute(statement)

    def _reduce(self, con: duckdb.DuckDBPyConnection, files: list[Path]) -> tuple[list[_Row | None], list[Path]]:
        """The kept rows of `files` as (file, resourceType, JSON text), and the files DuckDB
        could not read as declared (found by halving the list: a failed scan does not say
        which file failed). Rows are gathered before any reaches the catalogue, so a failed
        scan leaves nothing half-added; as text, which takes a fraction of the memory of
        parsed resources (the catalogue parses them one by one)."""
        if not files:
            return [], []
        self._view(con, files)
        try:
            # two passes, each streaming: the keys that match and the patient references
            # (small), then the matching rows whole
            con.execute(f"CREATE OR REPLACE TEMP TABLE first_pass AS {matched_sql()}")
            con.execute(
                "CREATE OR REPLACE TEMP TABLE matched AS SELECT value AS key FROM first_pass WHERE kind = 'key'"
            )
            self._references.update(
                r for (r,) in con.execute("SELECT value FROM first_pass WHERE kind = 'ref'").fetchall()
            )
            cursor = con.execute(self._kept_query)
            rows: list[_Row | None] = []
            while batch := cursor.fetchmany(_BATCH):
                rows.extend(batch)
            return rows, []
        except _UNREADABLE as exc:  # the data, not the query
            if len(files) == 1:
                log.info(
                    "DuckDB cannot read %s as declared (%s): the Python reader takes it",
                    self._name(files[0]),
                    type(exc).__name__,
                )
                return [], files
            half = len(files) // 2
            first, bad_first = self._reduce(con, files[:half])
            second, bad_second = self._reduce(con, files[half:])
            return first + second, bad_first + bad_second

    def _item(self, filename: str, text: str) -> Item | RunError:
        name = self._file_name(filename)
        try:
            resource = jsontext.loads(text)  # nulls stand for absent (facts.py)
        except jsontext.JSONTextError as exc:  # not expected: DuckDB read the line as JSON
            return RunError(name, f"a line DuckDB read could not be read again: {exc}")
        resource.pop("filename", None)  # a row of a type without declared columns comes whole
        for column in ("_ref", "_bad"):
            resource.pop(column, None)
        return Item(resource, row_origin(name, resource.get("resourceType"), resource.get("id")))

    def _name(self, path: Path) -> str:
        return relative_name(self.root, path)

    def _file_name(self, filename: str) -> str:
        """`_name` of a row's `filename` column, once per file (asked for every row)."""
        name = self._names.get(filename)
        if name is None:
            name = self._names[filename] = self._name(Path(filename))
        return name

    def collect(self, trial: Trial, source: Source) -> Catalogue:
        from . import PythonEngine, files_of

        folder, fetch_errors = files_of(source)
        if folder is None:  # REST streams resources one page at a time: nothing to scan
            return PythonEngine().collect(trial, source)
        self.root = folder.root
        self._names, self._references = {}, set()
        files = folder.files()
        ndjson = [f for f in files if f.suffix.lower() == ".ndjson"]
        catalogue = Catalogue()
        catalogue.errors.extend(fetch_errors)
        for path in files:
            if path.suffix.lower() != ".ndjson":
                for item in read_json(path, self._name(path)):
                    catalogue.add(item)
        con = self._connect(trial)
        rows, unreadable = self._reduce(con, ndjson)
        # a Bundle on a line, or a line without resourceType: the declared columns cannot carry it
        odd = {row[0] for row in rows if row is not None and (row[3] or row[1] in (None, "Bundle"))}
        fallback = sorted(set(unreadable) | {p for p in ndjson if str(p) in odd})
        for path in fallback:
            for item in read_ndjson(path, self._name(path)):
                catalogue.add(item)
        skip = {str(p) for p in fallback}
        for i, row in enumerate(rows):
            assert row is not None
            rows[i] = None  # each row's text is freed once it is in the catalogue
            if row[0] not in skip:
                catalogue.add(self._item(row[0], row[2]))
        del rows
        readable = [p for p in ndjson if p not in fallback]
        known = {f"Patient/{p}" for p in catalogue.patients}
        if readable and not self._references <= known:  # some reference needs a closer look
            self._orphans(con, catalogue, readable, known)
        log.info("DuckDB reduced %d NDJSON files (%d read by the Python reader instead)", len(readable), len(fallback))
        con.close()
        return catalogue

    def _orphans(
        self, con: duckdb.DuckDBPyConnection, catalogue: Catalogue, files: list[Path], known: set[str]
    ) -> None:
        self._view(con, files)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE known_patients AS SELECT unnest($1::VARCHAR[]) AS ref", [sorted(known)]
        )
        cursor = con.execute(references_sql())
        while batch := cursor.fetchmany(_BATCH):
            for filename, rtype, rid, ref in batch:
                if rid is not None:
                    catalogue.add_unkept(rtype, rid, ref, row_origin(self._file_name(filename), rtype, rid))

    def place(self, error: RunError) -> RunError:
        return place(self.root, error)
