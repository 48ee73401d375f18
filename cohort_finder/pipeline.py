"""source -> facts -> reduce -> evaluate -> outputs, with errors carried along (contract §4).

Logs carry counts and ids only, never anything a patient could be recognised by (§5).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from . import units
from .catalogue import Catalogue
from .criteria import Trial
from .engines import Engine, PythonEngine
from .evaluate import evaluate_patient
from .model import ALL_PATIENTS, PatientRecord, RunError, RunResult
from .reduce import trial_codes
from .progress import Progress
from .report import write_reports
from .sources.base import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunSummary:
    result: RunResult
    outputs: list[Path]

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
        pid: str | None = None
        if error.patient_id:
            ref = error.patient_id
            pid = ref if ref in catalogue.patients else catalogue.resolve_patient(ref)
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


def evaluate_source(
    trial: Trial, source: Source, as_of: date, source_label: str, engine: Engine | None = None
) -> RunResult:
    started = time.monotonic()
    units.warm_up()
    engine = engine or PythonEngine()
    catalogue = engine.collect(trial, source)
    log.info(
        "%s engine: %d resources read into Python: %d patients, %d clinical resources, %d errors",
        engine.name,
        catalogue.resources_read,
        len(catalogue.patients),
        len(catalogue.facts),
        len(catalogue.errors),
    )
    by_patient, link_errors = catalogue.link()
    placed = sorted((engine.place(e) for e in catalogue.errors + link_errors), key=_natural)
    errors, incomplete = _name_patients(catalogue, placed)
    codes = trial_codes(trial)
    kept = 0
    patients = []
    with Progress(len(by_patient), "patients") as progress:
        for pid in sorted(by_patient):
            facts = [f for f in by_patient[pid] if codes.keeps(f)]
            kept += len(facts)
            record = PatientRecord(catalogue.patients[pid], facts, incomplete.get(pid, set()))
            patients.append(evaluate_patient(trial, record, as_of))
            progress.update()
    log.info(
        "kept %d rows the trial's value sets use; evaluated %d patients in %.2f s",
        kept,
        len(patients),
        time.monotonic() - started,
    )
    return RunResult(
        trial_id=trial.id,
        trial_title=trial.title,
        as_of=as_of.isoformat(),
        source=source_label,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        criteria=tuple(c.info for c in trial.criteria),
        patients=tuple(patients),
        errors=tuple(errors),
    )


def run(
    trial: Trial, source: Source, as_of: date, out_dir: Path, source_label: str, engine: Engine | None = None
) -> RunSummary:
    result = evaluate_source(trial, source, as_of, source_label, engine)
    outputs = write_reports(result, out_dir)
    log.info(
        "patients %d: candidate %d, possible %d, excluded %d; errors %d",
        len(result.patients),
        *(sum(1 for p in result.patients if p.status.value == s) for s in ("candidate", "possible", "excluded")),
        len(result.errors),
    )
    return RunSummary(result, outputs)
