"""The three outputs of a run (contract §2): candidates.json, candidates.csv, report.html.

All three are rendered in memory before any is written, so a rendering failure leaves the
previous outputs in OUT_DIR untouched; each is then written atomically with mode 0600.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from pathlib import Path

from cohort_finder.model import RunResult, Status
from cohort_finder.report.atomic import commit, discard, stage, write_atomic
from cohort_finder.report.csv_report import CsvRows, render_csv
from cohort_finder.report.html_report import page_html
from cohort_finder.report.json_report import json_chunks, render_json, summary
from cohort_finder.report.rendered import PatientRenderer, RenderedPatient, incomplete_patients
from cohort_finder.store.changes import Diff

__all__ = [
    "PatientRenderer",
    "RenderedPatient",
    "render_csv",
    "render_html",
    "render_json",
    "write_atomic",
    "write_rendered",
    "write_reports",
]

_DIR_MODE = 0o700


def _ensure_dir(out_dir: Path) -> None:
    """Create OUT_DIR owner-only if missing. An existing folder is the user's choice and keeps
    its mode; the files in it are 0600 anyway."""
    if out_dir.is_dir():
        return
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        out_dir.mkdir(mode=_DIR_MODE)
    except FileExistsError:
        if not out_dir.is_dir():
            raise
        return  # created concurrently by someone else: theirs to own
    # mkdir's mode is filtered by the umask; a umask that strips owner bits would leave a
    # folder we cannot write into, so set exactly 0700 on the folder we just made.
    os.chmod(out_dir, _DIR_MODE)


def write_reports(run: RunResult, out_dir: Path) -> list[Path]:
    """Write candidates.json, candidates.csv and report.html for a run holding its patients'
    results; return their paths in that order."""
    renderer = PatientRenderer(run.criteria, incomplete_patients(run.errors), as_of=_as_of(run))
    return write_rendered(run, renderer.render(run.patients), out_dir)


def _as_of(run: RunResult) -> date:
    return date.fromisoformat(run.as_of)


def write_rendered(
    run: RunResult, patients: Sequence[RenderedPatient], out_dir: Path, since: Diff | None = None
) -> list[Path]:
    """Write the three outputs from patients already rendered (sorted by id); `run` gives the
    rest (its own `patients` is not read). All three are written to temporary files first and
    renamed into place only when every one is complete, so a failure leaves the previous
    run's outputs as they were."""
    out_dir = Path(out_dir)
    _ensure_dir(out_dir)
    counts = summary((p.status for p in patients), len(run.errors))
    outputs: list[tuple[str, Callable[[], Iterable[bytes]]]] = [
        ("candidates.json", lambda: json_chunks(run, counts, (p.json for p in patients))),
        ("candidates.csv", lambda: [CsvRows(run.criteria).header(), *(p.csv for p in patients)]),
        ("report.html", lambda: [page(run, counts, patients, since)]),
    ]
    staged: list[tuple[Path, Path]] = []
    try:
        for name, chunks in outputs:
            staged.append((stage(out_dir / name, chunks()), out_dir / name))
    except BaseException:
        discard(tmp for tmp, _ in staged)
        raise
    commit(staged)
    return [path for _, path in staged]


def page(
    run: RunResult, counts: dict[str, int], patients: Sequence[RenderedPatient], since: Diff | None = None
) -> bytes:
    """report.html from the patients' rendered parts: candidates first, then possibles, in the
    overview and the details; excluded patients one line each."""
    open_ = [p for s in (Status.CANDIDATE, Status.POSSIBLE) for p in patients if p.status is s]
    return page_html(
        run,
        counts,
        [p.row or "" for p in open_],
        [p.detail or "" for p in open_],
        [p.line or "" for p in patients if p.status is Status.EXCLUDED],
        [p.results for p in patients],
        since,
    )


def render_html(run: RunResult) -> bytes:
    """report.html bytes for a run holding its patients' results."""
    patients = PatientRenderer(run.criteria, incomplete_patients(run.errors), as_of=_as_of(run)).render(run.patients)
    return page(run, summary((p.status for p in patients), len(run.errors)), patients)
