"""The Python API, for notebooks: the same run, history and diff as the command line.

    import cohort_finder
    result = cohort_finder.run("criteria/nct07183761.yaml", "fixtures/fhir_bundles", as_of="2026-06-30")
    result.to_pandas()                      # one row per patient, one column per criterion
    cohort_finder.history("out/history.sqlite").to_pandas()
    cohort_finder.diff("out/history.sqlite").to_pandas()

`run` without `out` evaluates in memory and writes nothing; with `out` it is `cohort-finder
run` (outputs, run store, lock). `to_pandas` needs pandas (`pip install 'cohort-finder[pandas]'`).
Errors are the package's CohortFinderError classes, never exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .criteria import load_trial
from .engines import get_engine
from .errors import CohortFinderError, UsageError
from .pipeline import RunSummary, evaluate_source
from .pipeline import run as run_pipeline
from .report import render_json
from .settings import load_settings
from .source_factory import ServerOptions, is_server, open_source
from .store import DEFAULT_NAME, Store, db
from .store import runs as store_runs
from .store.changes import Diff
from .store.recorder import Recorder
from .store.runs import RunInfo

if TYPE_CHECKING:
    import pandas


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:  # an optional extra
        raise UsageError("to_pandas needs pandas: pip install 'cohort-finder[pandas]'") from exc
    return pandas


@dataclass(frozen=True)
class Results:
    """A run's results as candidates.json holds them (the contract's schema: `patients`,
    `criteria`, `errors`, `summary`), and the run's summary when it was written."""

    document: dict[str, Any]
    summary: RunSummary | None = None

    @property
    def patients(self) -> list[dict[str, Any]]:
        return list(self.document["patients"])

    @property
    def errors(self) -> list[dict[str, str]]:
        return list(self.document["errors"])

    def to_pandas(self) -> pandas.DataFrame:
        """One row per patient (id, status, age, gender), one column per criterion."""
        ids = [c["id"] for c in self.document["criteria"]]
        rows = [
            {"id": p["id"], "status": p["status"], "age": p["age"], "gender": p["gender"],
             **{c["id"]: c["result"] for c in p["criteria"]}}
            for p in self.patients
        ]  # fmt: skip
        return _pandas().DataFrame(rows, columns=["id", "status", "age", "gender", *ids]).set_index("id")


def run(
    criteria: str | Path,
    source: str | Path,
    *,
    as_of: str | date | None = None,
    out: str | Path | None = None,
    store: str | Path | None = None,
    engine: str = "duckdb",
    mappings: str | Path | None = None,
    ignore: Sequence[str] = (),
) -> Results:
    """Evaluate a folder (or, with server settings from the environment, a server) against a
    criteria file. With `out`, write the outputs and record the run in the store
    (`out/history.sqlite` unless `store`), as `cohort-finder run` does."""
    trial = load_trial(Path(criteria), Path(mappings) if mappings else None)
    day = as_of if isinstance(as_of, date) else date.fromisoformat(as_of) if as_of else datetime.now(UTC).date()
    label = str(source)
    chosen = get_engine(engine)
    if out is None:
        opened = open_source(label, trial, day, _server_options(label), ignore)
        return Results(orjson.loads(render_json(evaluate_source(trial, opened, day, label, chosen))))
    path = Path(store) if store else Path(out) / DEFAULT_NAME
    opened_store = Store.open(path)
    try:
        with db.writer_lock(path):
            recorder = Recorder(opened_store, trial, day.isoformat(), label, engine)
            try:
                opened = open_source(label, trial, day, _server_options(label), ignore)
            except CohortFinderError as exc:
                recorder.fail(exc.exit_code, str(exc))
                raise
            summary = run_pipeline(trial, opened, day, Path(out), label, chosen, None, recorder)
    finally:
        opened_store.close()
    return Results(orjson.loads((Path(out) / "candidates.json").read_bytes()), summary)


def _server_options(source: str) -> ServerOptions | None:
    return ServerOptions(load_settings(None)) if is_server(source) else None


@dataclass(frozen=True)
class History:
    runs: list[RunInfo]

    def to_pandas(self) -> pandas.DataFrame:
        return _pandas().DataFrame([r.as_json() for r in self.runs]).set_index("run")


def history(store: str | Path, trial: str | None = None) -> History:
    opened = Store.open(Path(store))
    try:
        return History(store_runs.history(opened.con, trial))
    finally:
        opened.close()


@dataclass(frozen=True)
class Changes:
    diff: Diff

    def as_json(self) -> dict[str, object]:
        return self.diff.as_json()

    def to_pandas(self) -> pandas.DataFrame:
        """One row per patient that is new, dropped or changed."""
        d = self.diff
        rows = [{"id": e.id, "change": "new", "from": None, "to": e.status, "criteria": ""} for e in d.new]
        for kind, entries in (("dropped", d.dropped), ("changed", d.changed)):
            rows += [
                {"id": e.id, "change": kind, "from": e.before, "to": e.after, "criteria": ", ".join(e.criteria)}
                for e in entries
            ]
        return _pandas().DataFrame(rows, columns=["id", "change", "from", "to", "criteria"])


def diff(
    store: str | Path, trial: str | None = None, from_run: int | None = None, to_run: int | None = None
) -> Changes:
    from .store.queries import compare

    opened = Store.open(Path(store))
    try:
        return Changes(compare(opened, trial, from_run, to_run))
    finally:
        opened.close()
