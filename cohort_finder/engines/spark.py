"""The Spark engine: the reduce step as Spark SQL, and evaluation where the rows are.

- Reduce: the DuckDB text of schema.reduce_sql, transpiled by sqlglot, over the NDJSON files
  read with the declared columns (schema.COLUMNS as a Spark schema; JSON columns as text) in
  FAILFAST mode. As in the DuckDB engine, files Spark cannot read as declared (found by halving
  the list), files with a Bundle or a line without resourceType, and JSON files are read by the
  Python reader on the driver, which names the bad line.
- Evaluate: every kept Patient and clinical row (and every one the driver read) gets its
  patient's id, computed in Spark SQL from `subject`/`patient`; rows are grouped by a hash of
  it (`groupBy(...).applyInPandas`) and each group is a few patients' small catalogue, linked,
  reduced and evaluated by the code every engine shares (evaluate/batch.py evaluate_catalogue). The
  Medications (few), the Bundles' fullUrls and the driver's errors travel as one broadcast. Only
  results, errors and the patients' demographics come back to the driver.
- Errors: orphans and unreadable lines as the other engines report them; a row's error is
  placed at file:line by reading that file (origins.place).

`local[*]` by default; any cluster with `--spark-master URL`, as long as the executors have
cohort-finder installed and see the source folder at the same path as the driver.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import sqlglot
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sqlglot import exp

from ..catalogue import Catalogue
from ..criteria import Trial
from ..evaluate.batch import Evaluated, evaluate_catalogue, name_errors
from ..facts import CLINICAL_TYPES, MedicationDef
from ..model import PatientFact, PatientResult, RunError
from ..references import own_id, patient_id, patient_reference, ref_key
from ..resource_types import RESOURCE_TYPES
from ..sources import jsontext
from ..sources.base import Item, Source
from ..sources.files import FileSource, read_json, read_ndjson
from .origins import place, relative_name, row_origin
from .schema import CLINICAL, COLUMNS, reduce_sql, reduce_tables, references_sql

log = logging.getLogger(__name__)

_CORRUPT = "_cohort_finder_corrupt"
# Spark's JSON reader as the Python reader reads (sources/jsontext.py): NaN and Infinity are
# read (allowNonNumericNumbers, the default), single-quoted strings are not (Spark's default
# would read them, which no other engine does)
_JSON_OPTIONS = {"allowSingleQuotes": "false"}
# A row whose identity a string column would misread (a number where resourceType, an id, a
# reference or a coding's system or code should be text; `"code": {` is a CodeableConcept and
# `null` is absent): Spark gives 5 and "5" alike, so the file goes to the Python reader
_NON_TEXT_IDENTITY = r'"(resourceType|id|reference)"\s*:\s*[^"\s]|"(system|code)"\s*:\s*[^"\s{n]'
# groups per core Spark evaluates in: enough to spread the work, few enough that each group's
# queries (a fixed cost of milliseconds each) are paid a handful of times
_BUCKETS_PER_CORE = 4
_GROUPED = (
    "pkey STRING, fidx INT, pos BIGINT, local BOOLEAN, origin STRING, full_url STRING, "
    "rtype STRING, rid STRING, json STRING"
)
_LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex{short}
# a file Spark cannot read fails its task; the engine catches that and reads the file in Python
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = off
logger.tasks.name = org.apache.spark.scheduler.TaskSetManager
logger.tasks.level = off
logger.fetch.name = org.apache.spark.storage.ShuffleBlockFetcherIterator
logger.fetch.level = off
# no "Setting default log level" banner
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = error
"""


# -- the shared definition, in Spark's words ------------------------------------------------------


def spark_type(duckdb_type: str) -> str:
    """A DuckDB column type of schema.COLUMNS as a Spark type (sqlglot parses it). JSON becomes
    STRING: Spark's JSON reader keeps a nested value's raw JSON text in a string column."""

    def text_for_json(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.JSON:
            return exp.DataType.build("STRING")
        return node

    return exp.DataType.build(duckdb_type, dialect="duckdb").transform(text_for_json).sql("spark")


def spark_schema() -> str:
    """schema.COLUMNS as a Spark DDL schema."""
    return ", ".join(f"`{name}` {spark_type(kind)}" for name, kind in COLUMNS.items())


def spark_sql(duckdb_sql: str) -> str:
    """A query of schema.py, in DuckDB's dialect, as Spark SQL. sqlglot's output runs as is
    (no fix-ups needed): UNNEST becomes LATERAL VIEW EXPLODE, list_concat CONCAT,
    regexp_matches RLIKE."""
    return sqlglot.transpile(duckdb_sql, read="duckdb", write="spark")[0]


_REF = "coalesce(k.subject.reference, k.patient.reference)"
_TRIMMED = f"regexp_replace({_REF}, '/+$', '')"
# The patient a row is linked to, as the catalogue links it (references.ref_key, then
# Catalogue.resolve_patient): `Patient/x`, `.../Patient/x`, optionally `/_history/n`; urn:uuid
# references through the Bundles' fullUrls (table patient_urls); a bare id as itself. Any other
# row lands in a group without a Patient, where linking reports it.
_PATIENT_REF = "^(?:.*/)?Patient/([^/]*)(?:/_history/[^/]*)?$"
PATIENT_KEY = f"""CASE
  WHEN k.resourceType = 'Patient' THEN k.id
  WHEN {_REF} LIKE 'urn:%' THEN u.pid
  WHEN {_REF} NOT LIKE '%/%' THEN {_REF}
  WHEN {_TRIMMED} RLIKE '{_PATIENT_REF}' THEN regexp_extract({_TRIMMED}, '{_PATIENT_REF}', 1)
END"""


# -- the session ------------------------------------------------------------------------------------


def session(master: str) -> SparkSession:
    """A SparkSession on `master`, quiet, in UTC. Local masters run this interpreter's Python
    (so its packages) in the workers and bind to the loopback interface."""
    local = master.startswith("local")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    log4j = Path(tempfile.gettempdir()) / "cohort-finder-spark-log4j2.properties"
    if not log4j.exists() or log4j.read_text() != _LOG4J:
        log4j.write_text(_LOG4J)
    builder = (
        SparkSession.builder.master(master)
        .appName("cohort-finder")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={log4j.as_uri()}")
        # every line parsed whole, so a field of the wrong type fails its file however the query filters
        .config("spark.sql.json.filterPushdown.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    if local:
        builder = (
            builder.config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "4")
            # evaluation is CPU, not bytes: keep the groups spread over the cores
            .config("spark.sql.adaptive.coalescePartitions.enabled", "false")
            # small data: compiling whole stages costs more than it saves (17 s against 26 s cold)
            .config("spark.sql.codegen.wholeStage", "false")
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    atexit.register(spark.stop)  # a clean stop, not a JVM killed mid-task
    return spark


def _malformed(exc: Exception) -> bool:
    """Does a failed job say the data did not fit the declared columns (not the query)?"""
    text = str(exc)
    return "MALFORMED_RECORD_IN_PARSING" in text or "Malformed records are detected" in text


# -- what one group (one patient) does on an executor ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    """What every group needs besides its rows (one broadcast)."""

    trial: Trial
    as_of: date
    medications: dict[str, MedicationDef]
    full_urls: dict[str, str]
    known_errors: tuple[RunError, ...]  # found on the driver; they mark patients' data incomplete


@dataclass(frozen=True, slots=True)
class _Group:
    """What a group sends back (pickled)."""

    patients: list[PatientResult]
    errors: list[RunError]
    kept: int
    demographics: list[PatientFact]
    read: int  # rows Spark read (the driver's are counted there)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _resource(json: str) -> dict[str, Any]:
    """A row as it travels to a group: the file's own line (read as every engine reads JSON,
    sources/jsontext.py), or a driver item written by jsontext.dumps."""
    resource: dict[str, Any] = jsontext.loads(json)
    return resource


def evaluate_group(rows: pd.DataFrame, job: _Job) -> pd.DataFrame:
    """A group of patients' rows (or the rows naming patients the source lacks) -> their results."""
    catalogue = Catalogue(medications=job.medications, full_urls=job.full_urls)
    theirs = 0
    for row in rows.sort_values(["fidx", "pos"], kind="stable").itertuples(index=False):
        local = bool(row.local)
        resource = _resource(str(row.json))
        if local:  # read by the driver, which reported its errors already
            before = len(catalogue.errors)
            catalogue.add(Item(resource, str(row.origin), _text(row.full_url)))
            del catalogue.errors[before:]
        else:
            where = row_origin(row.origin, resource.get("resourceType"), resource.get("id"))
            catalogue.add(Item(resource, where))
            theirs += 1
    done = evaluate_catalogue(job.trial, catalogue, job.as_of, known_errors=job.known_errors)
    group = _Group(done.patients, done.errors, done.kept, list(catalogue.patients.values()), theirs)
    return pd.DataFrame({"payload": [pickle.dumps(group)]})


# -- the driver ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Prepared:
    """The driver's side of a run: what it read itself, and the rows Spark keeps."""

    index: Catalogue  # the driver's items and every Medication: medications, fullUrls, other refs, errors
    rows: DataFrame  # _GROUPED: Patient and clinical rows, the driver's and Spark's
    kept: DataFrame | None  # Spark's kept rows (persisted), with `filename`
    files: dict[str, tuple[int, str]]  # absolute path of an NDJSON file -> (its place in read order, its name)
    readable: list[Path]
    fallback: list[Path]
    cached: list[DataFrame]  # what to unpersist when done

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()


class SparkEngine:
    name = "spark"

    def __init__(self, master: str | None = None) -> None:
        self.master = master or "local[*]"
        self.root = Path(".")
        self._spark: SparkSession | None = None

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            started = time.monotonic()
            self._spark = session(self.master)
            log.info("Spark session on %s started in %.1f s", self.master, time.monotonic() - started)
        return self._spark

    def _frame(self, rows: list[tuple[Any, ...]], schema: str) -> DataFrame:
        """Rows from the driver, through Arrow."""
        columns = [column.split()[0] for column in schema.split(", ")]
        return self.spark.createDataFrame(pd.DataFrame(rows, columns=columns), schema)

    def _name(self, path: Path) -> str:
        return relative_name(self.root, path)

    # -- reading ---------------------------------------------------------------------------------

    def _read(self, files: list[Path]) -> DataFrame:
        """The files as the view `resources`: the declared columns, `filename`, `_pos` (read
        order within a file), `_line` (the line as written: what a kept row sends to Python,
        so that facts.py judges exactly what the Python engine judges), `_ref` (the patient
        reference) and `_bad` (a row whose identity Spark may misread, see _NON_TEXT_IDENTITY;
        or without id, or a clinical row without a patient reference)."""
        lines = self.spark.read.text([os.path.abspath(p) for p in files])
        parsed = lines.where(F.trim(F.col("value")) != "").select(
            F.from_json(F.col("value"), spark_schema(), {"mode": "FAILFAST", **_JSON_OPTIONS}).alias("r"),
            F.col("value").alias("_line"),
            F.col("_metadata.file_path").alias("filename"),
            F.monotonically_increasing_id().alias("_pos"),
        )
        ref = F.coalesce(F.col("r.subject.reference"), F.col("r.patient.reference"))
        bad = (
            ~F.col("r.resourceType").isin(*sorted(RESOURCE_TYPES))
            | F.col("r.id").isNull()
            | (F.col("r.id") == "")
            | F.col("_line").rlike(_NON_TEXT_IDENTITY)
            | (F.col("r.resourceType").isin(*CLINICAL) & ref.isNull())
        )
        frame = parsed.select("r.*", "_line", "filename", "_pos", ref.alias("_ref"), bad.alias("_bad"))
        frame.createOrReplaceTempView("resources")
        return frame

    def _reduce(self, files: list[Path], query: str, search: bool = True) -> tuple[list[DataFrame], list[Path]]:
        """The kept rows of `files` (persisted), and the files Spark could not read as declared.
        A failed job does not say which file failed: one pass over the files finds them, and
        halving the list stands behind it."""
        if not files:
            return [], []
        self._read(files)
        kept = self.spark.sql(query).persist()
        try:
            kept.count()  # reads every line of every file whole
            return [kept], []
        except (Py4JJavaError, PySparkException) as exc:
            kept.unpersist()
            if not _malformed(exc):
                raise
        bad = self._unreadable(files) if search and len(files) > 1 else []
        if bad:
            frames, worse = self._reduce([p for p in files if p not in bad], query, search=False)
            bad = bad + worse
        elif len(files) == 1:
            bad, frames = files, []
        else:
            half = len(files) // 2
            first, bad_first = self._reduce(files[:half], query, search=False)
            second, bad_second = self._reduce(files[half:], query, search=False)
            frames, bad = first + second, bad_first + bad_second
        for path in bad:
            log.info("Spark cannot read %s as declared: the Python reader takes it", self._name(path))
        return frames, bad

    def _unreadable(self, files: list[Path]) -> list[Path]:
        """The files with a line that does not fit the declared columns: what fails a FAILFAST
        read marks the line as corrupt in a PERMISSIVE one (every column is read, so every
        line is parsed whole)."""
        raw = (
            self.spark.read.schema(f"{spark_schema()}, `{_CORRUPT}` STRING")
            .options(**_JSON_OPTIONS)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", _CORRUPT)
            .json([os.path.abspath(p) for p in files])
        )
        checked = raw.groupBy(F.col("_metadata.file_path").alias("filename")).agg(
            F.max(F.col(_CORRUPT).isNotNull()).alias("bad"), F.sum(F.hash(*[F.col(f"`{c}`") for c in COLUMNS]))
        )
        by_path = {os.path.abspath(p): p for p in files}
        bad = {by_path[_path_of(row["filename"])] for row in checked.collect() if row["bad"]}
        return [p for p in files if p in bad]

    def _tables(self, trial: Trial) -> str:
        tables = reduce_tables(trial)
        self._frame(tables.codes, "system STRING, code STRING").createOrReplaceTempView("trial_codes")
        icd = [(c,) for c in tables.icd_categories]
        self._frame(icd, "category STRING").createOrReplaceTempView("trial_icd")
        return spark_sql(reduce_sql(tables))

    def _prepare(self, trial: Trial, folder: FileSource, fetch_errors: list[RunError]) -> _Prepared:
        self.root = folder.root
        files = folder.files()
        order = {path: index for index, path in enumerate(files)}
        ndjson = [p for p in files if p.suffix.lower() == ".ndjson"]
        driver: list[tuple[int, int, Item | RunError]] = []  # (file, position in it, item)
        for path in files:
            if path.suffix.lower() != ".ndjson":
                driver.extend((order[path], n, item) for n, item in enumerate(read_json(path, self._name(path))))
        query = self._tables(trial)
        frames, unreadable = self._reduce(ndjson, query)
        kept: DataFrame | None = None
        for frame in frames:
            kept = frame if kept is None else kept.unionByName(frame)
        # Spark names a file by URI; a Bundle on a line, or a line without resourceType: the
        # declared columns cannot carry it, so the whole file goes to the Python reader
        by_path = {os.path.abspath(p): p for p in ndjson}
        named: dict[str, Path] = {}
        odd: set[Path] = set()
        if kept is not None:
            odd_row = F.col("_bad") | F.col("resourceType").isNull() | (F.col("resourceType") == "Bundle")
            for row in kept.groupBy("filename").agg(F.max(odd_row).alias("odd")).collect():
                path = by_path[_path_of(row["filename"])]
                named[row["filename"]] = path
                if row["odd"]:
                    odd.add(path)
        fallback = sorted(set(unreadable) | odd, key=order.__getitem__)
        for path in fallback:
            driver.extend((order[path], n, item) for n, item in enumerate(read_ndjson(path, self._name(path))))
        readable = [p for p in ndjson if p not in fallback]
        file_rows = [(uri, order[path], self._name(path)) for uri, path in named.items() if path not in odd]
        if kept is not None:
            files_frame = F.broadcast(self._frame(file_rows, "filename STRING, fidx INT, file_name STRING"))
            kept = kept.join(files_frame, "filename")
        # every Medication and every driver item, in read order: the index the groups share
        index = Catalogue()
        index.errors.extend(fetch_errors)
        medications: list[tuple[int, int, Item | RunError]] = []
        if kept is not None:
            medication_rows = kept.where("resourceType = 'Medication'").select("fidx", "_pos", "file_name", "_line")
            for row in medication_rows.collect():
                resource = _resource(row["_line"])
                where = row_origin(row["file_name"], "Medication", resource.get("id"))
                medications.append((row["fidx"], row["_pos"], Item(resource, where)))
        for _, _, item in sorted(driver + medications, key=lambda entry: entry[:2]):
            index.add(item)
        rows = self._rows(driver, index, kept)
        files_of_path = {os.path.abspath(p): (order[p], self._name(p)) for p in ndjson}
        return _Prepared(index, rows, kept, files_of_path, readable, fallback, frames)

    def _rows(
        self, driver: list[tuple[int, int, Item | RunError]], index: Catalogue, kept: DataFrame | None
    ) -> DataFrame:
        """Patient and clinical rows with their patient's id (`pkey`): Spark's and the driver's."""
        mine = []
        for fidx, pos, item in driver:
            if isinstance(item, RunError):
                continue
            rtype = item.resource.get("resourceType")
            if rtype != "Patient" and rtype not in CLINICAL_TYPES:
                continue
            rid = _text(item.resource.get("id"))
            mine.append(
                (_local_key(item, index), fidx, pos, True, item.origin, item.full_url, rtype, rid,
                 jsontext.dumps(item.resource))
            )  # fmt: skip
        rows = self._frame(mine, _GROUPED)
        if kept is None:
            return rows
        urls = [
            (url, key.removeprefix("Patient/")) for url, key in index.full_urls.items() if key.startswith("Patient/")
        ]
        self._frame(urls, "url STRING, pid STRING").createOrReplaceTempView("patient_urls")
        kept.createOrReplaceTempView("kept")
        clinical = ", ".join(f"'{t}'" for t in ("Patient", *CLINICAL))
        theirs = self.spark.sql(f"""
SELECT {PATIENT_KEY} AS pkey, k.fidx, k._pos AS pos, FALSE AS local, k.file_name AS origin,
       CAST(NULL AS STRING) AS full_url, k.resourceType AS rtype, k.id AS rid, k._line AS json
FROM kept AS k LEFT JOIN patient_urls AS u ON u.url = {_REF}
WHERE k.resourceType IN ({clinical})
""")  # fmt: skip
        return rows.unionByName(theirs)

    # -- evaluating ------------------------------------------------------------------------------

    def evaluate(self, trial: Trial, source: Source, as_of: date) -> Evaluated:
        from . import PythonEngine, files_of

        folder, fetch_errors = files_of(source)
        if folder is None:  # REST streams resources one page at a time: nothing to scan
            return evaluate_catalogue(trial, PythonEngine().collect(trial, source), as_of)
        started = time.monotonic()
        prepared = self._prepare(trial, folder, fetch_errors)
        index = prepared.index
        job = _Job(trial, as_of, index.medications, index.full_urls, tuple(index.errors))
        shared = self.spark.sparkContext.broadcast(job)

        def evaluate(rows: pd.DataFrame) -> pd.DataFrame:
            return evaluate_group(rows, shared.value)

        patients: list[PatientResult] = []
        errors = list(index.errors)
        demographics: dict[str, PatientFact] = {}
        kept = read = 0
        # groups of patients (by a hash of their id), not one patient each: a group's evaluation
        # asks the rules' queries once for all of its patients (evaluate/plan.py answers); the
        # rows naming no patient of the source stay a group of their own
        buckets = _BUCKETS_PER_CORE * self.spark.sparkContext.defaultParallelism
        pkey = F.col("pkey")
        bucket = F.when(pkey.isNull(), F.lit(-1)).otherwise(F.pmod(F.hash(pkey), F.lit(buckets)))
        grouped = prepared.rows.groupBy(bucket.alias("bucket"))
        for row in grouped.applyInPandas(evaluate, "payload BINARY").toLocalIterator():
            group: _Group = pickle.loads(row["payload"])
            patients.extend(group.patients)
            errors.extend(group.errors)
            demographics.update((p.id, p) for p in group.demographics)
            kept += group.kept
            read += group.read
        shared.unpersist()
        tail = Catalogue(patients=demographics, full_urls=index.full_urls, other_refs=dict(index.other_refs))
        self._add_unkept(prepared, tail)
        errors.extend(tail.link()[1])
        prepared.release()
        log.info(
            "spark engine: %d resources read into Python (%d on the driver): %d patients, %d errors; "
            "%d NDJSON files reduced by Spark, %d read by the Python reader instead; %.2f s",
            read + index.resources_read,
            index.resources_read,
            len(demographics),
            len(errors),
            len(prepared.readable),
            len(prepared.fallback),
            time.monotonic() - started,
        )
        named, _ = name_errors(tail, errors, self.place)
        return Evaluated(sorted(patients, key=lambda p: p.id), named, kept)

    def _add_unkept(self, prepared: _Prepared, catalogue: Catalogue) -> None:
        """The rows the reduce did not keep (or no group held) that name a patient not in
        `catalogue`, added as the catalogue holds them for linking: a clinical row as a fact
        (with nothing but its reference), any other as a reference to check."""
        if prepared.kept is None or not prepared.readable:
            return
        self._read(prepared.readable)
        known = [(f"Patient/{p}",) for p in catalogue.patients]
        self._frame(known, "ref STRING").createOrReplaceTempView("known_patients")
        grouped = prepared.kept.where(F.col("resourceType").isin(*CLINICAL)).select("filename", "resourceType", "id")
        candidates = (
            self.spark.sql(spark_sql(references_sql()))
            .join(grouped, ["filename", "resourceType", "id"], "left_anti")
            .collect()
        )
        for _, name, rtype, rid, ref in sorted(
            ((*prepared.files[_path_of(r["filename"])], r["resourceType"], r["id"], r["ref"]) for r in candidates),
            key=lambda candidate: candidate[0],  # file order, as read
        ):
            if rid is not None:
                catalogue.add_unkept(rtype, rid, ref, row_origin(name, rtype, rid))

    # -- the Engine protocol -----------------------------------------------------------------------

    def collect(self, trial: Trial, source: Source) -> Catalogue:
        """Every row the trial can use in one catalogue on the driver (the pipeline evaluates
        per patient instead: evaluate)."""
        from . import PythonEngine, files_of

        folder, fetch_errors = files_of(source)
        if folder is None:
            return PythonEngine().collect(trial, source)
        prepared = self._prepare(trial, folder, fetch_errors)
        catalogue = prepared.index
        for row in prepared.rows.where("NOT local").orderBy("fidx", "pos").toLocalIterator():
            resource = _resource(row["json"])
            catalogue.add(Item(resource, row_origin(row["origin"], resource.get("resourceType"), resource.get("id"))))
        self._add_unkept(prepared, catalogue)
        prepared.release()
        return catalogue

    def place(self, error: RunError) -> RunError:
        return place(self.root, error)


def _path_of(uri: str) -> str:
    """The absolute path of a file Spark names by URI (file:/a%20b.ndjson -> /a b.ndjson)."""
    return os.path.abspath(unquote(urlparse(uri).path))


def _local_key(item: Item, index: Catalogue) -> str | None:
    """PATIENT_KEY for a Patient or clinical item the driver read."""
    if item.resource.get("resourceType") == "Patient":
        rid = item.resource.get("id")
        if isinstance(rid, str) and rid:
            return rid
        return own_id(item.resource, item.full_url)
    ref = patient_reference(item.resource)
    return None if ref is None else patient_key(ref, index.full_urls)


def patient_key(ref: str, full_urls: dict[str, str]) -> str | None:
    """PATIENT_KEY of a clinical row's reference, in Python."""
    if ref.startswith("urn:"):
        return patient_id(full_urls.get(ref, ""))
    if "/" not in ref:
        return ref
    return patient_id(ref_key(ref))
