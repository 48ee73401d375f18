"""The Spark engine's own pieces, in one local session: the patient key its SQL computes is the
one the catalogue links by, the schema translates, and odd inputs give what the python engine
gives (the CLI parity runs are in test_engine_parity)."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cohort_finder.catalogue import Catalogue
from cohort_finder.criteria import load_trial
from cohort_finder.engines import PythonEngine
from cohort_finder.pipeline import evaluate_source
from cohort_finder.sources.base import Item
from cohort_finder.sources.files import FileSource

from ..paths import CRITERIA
from .odd_inputs import obs, odd_folder

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(
        importlib.util.find_spec("pyspark") is None or shutil.which("java") is None, reason="needs pyspark and Java"
    ),
]

REFS = [
    "Patient/a",
    "Patient/a/",
    "Patient/a/_history/2",
    "http://x.org/fhir/Patient/a",
    "http://x.org/fhir/Patient/a/_history/7/",
    "http://x.org/fhir/Patient/Patient/b",
    "x/Patient/Patient/_history/2",
    "Patient/_history/1",
    "Patient/a/_history",
    "a/b/Patient/x/_history/2/_history/3",
    "Patient/",
    "Patient",
    "Group/1",
    "#p1",
    "a",
    "b/",
    "Patient/b",
    "urn:uuid:1234",
    "urn:uuid:unknown",
]


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from cohort_finder.engines.spark import SparkEngine

    yield SparkEngine()


def test_patient_key_is_the_catalogues(engine: Any) -> None:
    """Rows meet their patient's row in one group: the key SQL computes (and the driver's, in
    Python) is the patient the catalogue links the row to; a row it links to no one lands in a
    group without a Patient."""
    from cohort_finder.engines.spark import PATIENT_KEY, patient_key

    patients = {"a", "b", "Patient", "u1"}
    full_urls = {"urn:uuid:1234": "Patient/u1"}
    spark = engine.spark
    rows = [(f"o{i}", ref) for i, ref in enumerate(REFS)]
    spark.createDataFrame(rows, "id STRING, ref STRING").createOrReplaceTempView("refs")
    urls = [(url, key.removeprefix("Patient/")) for url, key in full_urls.items()]
    spark.createDataFrame(urls, "url STRING, pid STRING").createOrReplaceTempView("patient_urls")
    got = spark.sql(f"""
SELECT k.ref, {PATIENT_KEY} AS pkey FROM (
  SELECT id, 'Observation' AS resourceType, named_struct('reference', ref) AS subject,
         named_struct('reference', CAST(NULL AS STRING)) AS patient, ref FROM refs) AS k
LEFT JOIN patient_urls AS u ON u.url = coalesce(k.subject.reference, k.patient.reference)
""").collect()  # fmt: skip
    assert len(got) == len(REFS)
    for row in got:
        catalogue = Catalogue(full_urls=dict(full_urls))
        for pid in patients:
            catalogue.add(Item({"resourceType": "Patient", "id": pid}, "p"))
        catalogue.add(Item(obs("o", row["ref"]), "o"))
        by_patient, _ = catalogue.link()
        linked = next((pid for pid, facts in by_patient.items() if facts), None)
        for key in (row["pkey"], patient_key(row["ref"], full_urls)):
            if linked is not None:
                assert key == linked, row["ref"]
            else:
                assert key not in patients, row["ref"]


def test_schema_translates() -> None:
    from pyspark.sql.types import StructType

    from cohort_finder.engines.spark import spark_schema, spark_type

    assert spark_type("JSON") == "STRING"
    assert spark_type('STRUCT("start" VARCHAR, "end" VARCHAR)[]') == "ARRAY<STRUCT<`start`: STRING, `end`: STRING>>"
    schema = StructType.fromDDL(spark_schema())
    assert schema["contained"].dataType.simpleString() == "string"
    assert schema["valueQuantity"].dataType.simpleString().startswith("struct<value:double")


class _CollectOnly:
    """The Spark engine through the Engine protocol alone: rows collected to the driver."""

    name = "spark"

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self, trial: Any, source: Any) -> Any:
        return self.engine.collect(trial, source)

    def place(self, error: Any) -> Any:
        return self.engine.place(error)


@pytest.mark.parametrize("path", ["evaluate", "collect"])
def test_odd_inputs_give_what_the_python_engine_gives(engine: Any, tmp_path: Path, path: str) -> None:
    folder = odd_folder(tmp_path)
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    as_of = date(2026, 6, 30)
    expected = evaluate_source(trial, FileSource(folder), as_of, "t", PythonEngine())
    got = evaluate_source(trial, FileSource(folder), as_of, "t", engine if path == "evaluate" else _CollectOnly(engine))
    assert got.errors == expected.errors
    assert got.patients == expected.patients
    assert dataclasses.replace(got, generated_at="") == dataclasses.replace(expected, generated_at="")
