"""Engines: who does the reduce step. Every engine yields the same catalogue of rows that the
trial can use, and everything after it (linking, rules, reports) is shared, so engines cannot
drift in their clinical answers; the parity tests hold them to identical outputs.

- python: reads every resource in Python (any source: files, REST, Bulk). The reference.
- duckdb: SQL over NDJSON files in-process; the default for folders and Bulk caches.
- spark: the same SQL, transpiled, on a Spark cluster (optional extra `cohort-finder[spark]`).
"""

from __future__ import annotations

from typing import Protocol

from ..catalogue import Catalogue, collect
from ..criteria import Trial
from ..errors import UsageError
from ..model import RunError
from ..sources.base import Source
from ..sources.bulk import BulkSource
from ..sources.files import FileSource

ENGINES = ("python", "duckdb", "spark")


class Engine(Protocol):
    name: str

    def collect(self, trial: Trial, source: Source) -> Catalogue: ...

    def place(self, error: RunError) -> RunError: ...


class PythonEngine:
    name = "python"

    def collect(self, trial: Trial, source: Source) -> Catalogue:
        return collect(source.read())

    def place(self, error: RunError) -> RunError:
        return error


def files_of(source: Source) -> tuple[FileSource | None, list[RunError]]:
    """The folder an SQL engine can scan (a folder, or a Bulk export's cache, fetched now),
    with the errors fetching it gave; None for a source that only streams (REST)."""
    if isinstance(source, FileSource):
        return source, []
    if isinstance(source, BulkSource):
        folder = source.fetch()
        return FileSource(folder), list(source.errors)
    return None, []


def get_engine(name: str, spark_master: str | None = None) -> Engine:
    if name == "python":
        return PythonEngine()
    if name == "duckdb":
        from .duckdb import DuckDBEngine

        return DuckDBEngine()
    if name == "spark":
        try:
            from .spark import SparkEngine
        except ImportError as exc:
            raise UsageError(f"--engine spark needs pyspark: pip install 'cohort-finder[spark]' ({exc})") from exc
        return SparkEngine(master=spark_master)
    raise UsageError(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")
