"""source -> facts -> reduce -> evaluate -> outputs, with errors carried along (contract §4).

Logs carry counts and ids only, never anything a patient could be recognised by (§5).
"""

from __future__ import annotations

import gc
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from . import units
from .catalogue import Catalogue
from .criteria import Trial
from .engines import Engine, PythonEngine
from .errors import CohortFinderError
from .evaluate import evaluate_patient
from .evaluate.plan import Plan, plan_for
from .model import ALL_PATIENTS, Fact, PatientFact, PatientRecord, PatientResult, RunError, RunResult, Status
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


def _name_patients(catalogue: Catalogue, errors: list[RunError]) -> tuple[list[RunError], dict[str, set[str]]]:
    """Resolve the patient each error names; say so in its message (contract §4: the patient
    is named in errors) and remember which of their data is missing."""
    incomplete: dict[str, set[str]] = {}
    named: list[RunError] = []
    for error in errors:
        if error.patient_id == ALL_PATIENTS:  # a failed search page: whose rows it held is unknown
            for every in catalogue.patients:
                incomplete.setdefault(every, set()).add(error.resource_type or "*")
            named.append(RunError(error.source, f"{error.message} (every patient's {error.resource_type or 'data'})"))
            continue
        pid = catalogue.resolve_patient(error.patient_id) if error.patient_id else None
        if pid is None or pid not in catalogue.patients:
            named.append(RunError(error.source, error.message))
            continue
        incomplete.setdefault(pid, set()).add(error.resource_type or "*")
        message = error.message if f"Patient/{pid}" in error.message else f"{error.message} (Patient/{pid})"
        named.append(RunError(error.source, message, pid, error.resource_type))
    return named, incomplete


def _natural(error: RunError) -> tuple[tuple[int, str, int], ...]:
    """File order, then line and entry numbers as numbers (a.ndjson:9 before a.ndjson:10):
    every engine reads in its own order, the errors come out in one."""
    return tuple(
        (0, part, 0) if not part.isdigit() else (1, "", int(part)) for part in re.split(r"(\d+)", error.source)
    )


def name_errors(
    catalogue: Catalogue, errors: list[RunError], place: Callable[[RunError], RunError] = lambda e: e
) -> tuple[list[RunError], dict[str, set[str]]]:
    """Errors placed (file:line), in one natural order, naming their patients; and which
    patients' data they leave incomplete."""
    placed = sorted((place(e) for e in errors), key=_natural)
    return _name_patients(catalogue, placed)


@dataclass(frozen=True, slots=True)
class Evaluated:
    patients: list[PatientResult]  # sorted by id
    errors: list[RunError]  # as name_errors gives them
    kept: int  # rows the trial's value sets use


@dataclass(frozen=True, slots=True)
class Linked:
    """A catalogue linked: every patient's facts, and the errors (named, placed)."""

    patients: dict[str, PatientFact]
    by_patient: dict[str, list[Fact]]
    errors: list[RunError]
    incomplete: dict[str, set[str]]  # patient id -> resource types that could not be read
    unusable: dict[str, list[tuple[int, str]]]  # patient id -> (rules' bits, why) of unusable resources

    @property
    def ids(self) -> list[str]:
        return sorted(self.by_patient)


def _unusable(
    catalogue: Catalogue, by_patient: dict[str, list[Fact]], plan: Plan, place: Callable[[RunError], RunError]
) -> tuple[list[RunError], dict[str, list[tuple[int, str]]]]:
    """Take the resources whose values are unusable (facts.py `problems`) out of the facts the
    rules read. Where some rule of the trial would read one, it is an error of its place and
    those rules cannot be decided (evaluate); where none would, it is ignored, as it is by an
    engine that never reads it."""
    errors: list[RunError] = []
    unusable: dict[str, list[tuple[int, str]]] = {}
    for pid, facts in by_patient.items():
        if not any(f.problems for f in facts):
            continue
        by_patient[pid] = [f for f in facts if not f.problems]
        for fact in facts:
            bits = plan.bits_of(fact) if fact.problems else 0
            if not bits:
                continue
            why = f"{fact.resource_type}/{fact.resource_id} {'; '.join(fact.problems)}"
            origin = catalogue.facts[(fact.resource_type, fact.resource_id)][1]
            errors.append(place(RunError(origin, f"{why} (Patient/{pid})", pid, fact.resource_type)))
            unusable.setdefault(pid, []).append((bits, why))
    return errors, unusable


def link(
    catalogue: Catalogue,
    plan: Plan,
    place: Callable[[RunError], RunError] = lambda e: e,
    known_errors: Sequence[RunError] = (),
) -> Linked:
    """`known_errors`, found outside the catalogue, only mark the data of the patients they
    name as incomplete."""
    by_patient, link_errors = catalogue.link()
    errors, incomplete = name_errors(catalogue, catalogue.errors + link_errors, place)
    value_errors, unusable = _unusable(catalogue, by_patient, plan, place)
    if value_errors:
        errors = sorted(errors + value_errors, key=_natural)
    if known_errors:
        for pid, kinds in _name_patients(catalogue, list(known_errors))[1].items():
            incomplete.setdefault(pid, set()).update(kinds)
    return Linked(catalogue.patients, by_patient, errors, incomplete, unusable)


def evaluate_patients(trial: Trial, linked: Linked, as_of: date, ids: Sequence[str]) -> tuple[list[PatientResult], int]:
    """Evaluate these patients (criteria.py's rules, evaluate/); also the number of rows the
    trial's rules can use. The evaluation plan (and its caches) is one per process."""
    plan = plan_for(trial, as_of)
    kept = 0
    patients = []
    for pid in ids:
        facts, fact_bits = plan.relevant(linked.by_patient[pid])  # the rows some rule can use
        kept += len(facts)
        record = PatientRecord(
            linked.patients[pid], facts, linked.incomplete.get(pid, set()), linked.unusable.get(pid, [])
        )
        patients.append(evaluate_patient(trial, record, as_of, plan, fact_bits))
    return patients, kept


def evaluate_catalogue(
    trial: Trial,
    catalogue: Catalogue,
    as_of: date,
    place: Callable[[RunError], RunError] = lambda e: e,
    known_errors: Sequence[RunError] = (),
) -> Evaluated:
    """Link, reduce and evaluate every patient of a catalogue: the whole source's (python and
    duckdb engines), or one patient's (a Spark group)."""
    linked = link(catalogue, plan_for(trial, as_of), place, known_errors)
    patients, kept = evaluate_patients(trial, linked, as_of, linked.ids)
    return Evaluated(patients, linked.errors, kept)


@runtime_checkable
class EvaluatingEngine(Protocol):
    """An engine that evaluates where the rows are (spark: per patient on the cluster) and
    hands back the results and the errors, as evaluate_catalogue gives them."""

    def evaluate(self, trial: Trial, source: Source, as_of: date) -> Evaluated: ...


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
            rendered, kept = renderer.render(done.patients), done.kept
        else:
            linked = _collect(trial, source, engine, as_of)
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
