"""source -> facts -> reduce -> evaluate -> outputs, with errors carried along (contract §4).

Logs carry counts and ids only, never anything a patient could be recognised by (§5).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

from . import units
from .criteria import Trial
from .engines import Engine, PythonEngine
from .errors import CohortFinderError
from .evaluate.batch import Evaluated, EvaluatingEngine, Linked, evaluate_patients, link
from .evaluate.plan import plan_for
from .model import RunError, RunResult, Status
from .report import PatientRenderer, write_rendered
from .report.rendered import incomplete_patients
from .sources.base import Source
from .store.changes import Diff, PatientState
from .store.recorder import Recorder, worklist_rows
from .workers import evaluate_and_render

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunSummary:
    result: RunResult  # without its patients: they went to the outputs
    counts: dict[str, int]  # patients by status
    outputs: list[Path]
    since: Diff | None = None  # against the previous complete run in the store

    @property
    def changes_text(self) -> str:
        """`since run 4: 1 new, 0 dropped, 2 changed` (the summary line and the log)."""
        if self.since is None:
            return ""
        d = self.since
        return f"since run {d.before.run}: {len(d.new)} new, {len(d.dropped)} dropped, {len(d.changed)} changed"

    @property
    def patients(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        return 1 if self.result.errors else 0


def _collect(trial: Trial, source: Source, engine: Engine, as_of: date) -> Linked:
    catalogue = engine.collect(trial, source)
    log.info(
        "%s engine: %d resources read into Python: %d patients, %d clinical resources, %d errors",
        engine.name,
        catalogue.resources_read,
        len(catalogue.patients),
        len(catalogue.facts),
        len(catalogue.errors),
    )
    return link(catalogue, plan_for(trial, as_of), engine.place)


def _header(
    trial: Trial, as_of: date, source_label: str, errors: Sequence[RunError], source: Source | None = None
) -> RunResult:
    """The run without its patients (they are added, or rendered, by the caller)."""
    return RunResult(
        trial_id=trial.id,
        trial_title=trial.title,
        as_of=as_of.isoformat(),
        source=source_label,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        criteria=trial.infos,
        patients=(),
        errors=tuple(errors),
        source_lacks=tuple(getattr(source, "lacks", ())),
    )


def evaluate_source(
    trial: Trial, source: Source, as_of: date, source_label: str, engine: Engine | None = None
) -> RunResult:
    """Every patient's results, in memory (library use and tests; `run` renders as it goes)."""
    started = time.monotonic()
    units.warm_up()
    engine = engine or PythonEngine()
    if isinstance(engine, EvaluatingEngine):
        done = engine.evaluate(trial, source, as_of)
    else:
        linked = _collect(trial, source, engine, as_of)
        patients, kept = evaluate_patients(trial, linked, as_of, linked.ids)
        done = Evaluated(patients, linked.errors, kept)
    _log_evaluated(done.kept, len(done.patients), started)
    return replace(_header(trial, as_of, source_label, done.errors, source), patients=tuple(done.patients))


def _log_evaluated(kept: int, patients: int, started: float) -> None:
    log.info(
        "kept %d rows the trial's value sets use; evaluated %d patients in %.2f s",
        kept,
        patients,
        time.monotonic() - started,
    )


def _log_after_reduce(patients: int, reduced: float) -> None:
    """What follows the reduce (evaluation, rendering, writing the outputs), timed on its own:
    bench/run.py reads this line for `evaluate_patients_per_s`."""
    seconds = time.monotonic() - reduced
    rate = patients / seconds if seconds > 0 else float("inf")
    log.info("evaluated and wrote %d patients in %.3f s after the reduce (%.0f patients/s)", patients, seconds, rate)


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """A run builds millions of small objects that all live to its end (facts, results, report
    rows) and makes no reference cycles worth collecting; CPython's cycle collector would walk
    the growing heap again and again (measured at 20,000 patients: 7 of 20 seconds). Reference
    counting still frees everything; any cycle is collected once the collector is back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run(
    trial: Trial,
    source: Source,
    as_of: date,
    out_dir: Path,
    source_label: str,
    engine: Engine | None = None,
    workers: int | None = None,
    recorder: Recorder | None = None,
) -> RunSummary:
    """The main command: evaluate, render and write. Patients are evaluated and rendered by
    `workers` processes (default: one per core; see workers.py), except on engines that
    evaluate where the data are (Spark). With a `recorder` (the run store), each patient's
    `change` and `review` are rendered, "since the last run" leads the report, and the run is
    recorded, complete or failed (contract §7); a source that cannot be read at all writes
    nothing (§4)."""
    try:
        return _run(trial, source, as_of, out_dir, source_label, engine or PythonEngine(), workers, recorder)
    except CohortFinderError as exc:
        if recorder is not None:
            recorder.fail(exc.exit_code, str(exc))
        raise
    except BaseException as exc:
        if recorder is not None:
            recorder.fail(1, f"{type(exc).__name__}: {exc}")
        raise


def _run(
    trial: Trial,
    source: Source,
    as_of: date,
    out_dir: Path,
    source_label: str,
    engine: Engine,
    workers: int | None,
    recorder: Recorder | None,
) -> RunSummary:
    started = time.monotonic()
    previous = recorder.previous if recorder else None
    decisions = recorder.decisions if recorder else {}
    with _without_cycle_collection():
        units.warm_up()
        if isinstance(engine, EvaluatingEngine):
            done = engine.evaluate(trial, source, as_of)
            if recorder:
                recorder.guard_empty(len(done.patients))
            header = _header(trial, as_of, source_label, done.errors, source)
            renderer = PatientRenderer(header.criteria, incomplete_patients(done.errors), previous, decisions, as_of)
            reduced = time.monotonic()  # Spark evaluates inside the engine: only rendering follows
            rendered, kept = renderer.render(done.patients), done.kept
        else:
            linked = _collect(trial, source, engine, as_of)
            reduced = time.monotonic()
            if recorder:
                recorder.guard_empty(len(linked.patients))
            header = _header(trial, as_of, source_label, linked.errors, source)
            incomplete = incomplete_patients(linked.errors)
            rendered, kept = evaluate_and_render(
                linked.ids,
                lambda ids: evaluate_patients(trial, linked, as_of, ids),
                lambda: PatientRenderer(header.criteria, incomplete, previous, decisions, as_of),
                workers,
            )
        _log_evaluated(kept, len(rendered), started)
        current = {p.id: PatientState(p.status.value, p.results) for p in rendered}
        since = recorder.since(current) if recorder else None
        outputs = write_rendered(header, rendered, out_dir, since)
    _log_after_reduce(len(rendered), reduced)
    counts = {s.value: sum(1 for p in rendered if p.status is s) for s in Status}
    summary = RunSummary(header, counts, outputs, since)
    log.info(
        "patients %d: candidate %d, possible %d, excluded %d; errors %d%s",
        len(rendered),
        counts["candidate"],
        counts["possible"],
        counts["excluded"],
        len(header.errors),
        f"; {summary.changes_text}" if since else "",
    )
    if recorder is not None:
        totals = {"patients": len(rendered), **counts, "errors": len(header.errors)}
        notes = dict(getattr(source, "notes", None) or {})
        if header.source_lacks:
            notes["lacks"] = list(header.source_lacks)
        recorder.complete(current, totals, header.errors, since, summary.exit_code, worklist_rows(rendered), notes)
    return summary
