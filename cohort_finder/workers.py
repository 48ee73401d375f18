"""Evaluate and render patients on every core.

The rules are plain Python (evaluate/), so one process uses one core. After linking, the run
forks worker processes; each takes contiguous batches of patients (ids sorted), evaluates them
and renders their parts of the three outputs (report/rendered.py), and sends back bytes and
text only: nothing clinical is computed twice and no result object is pickled. Forking shares
the linked rows copy-on-write, so nothing is sent to the workers either. The parent writes the
parts in patient order, so the outputs are byte-identical whatever the number of workers.

Where fork is not available (Windows, macOS's default spawn), or for small runs, or with
`workers=1`, the same batches run in the calling process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from . import units
from .errors import WorkerError
from .model import PatientResult, Status
from .progress import Progress
from .report.rendered import PatientRenderer, RenderedPatient

log = logging.getLogger(__name__)

Evaluate = Callable[[Sequence[str]], tuple[list[PatientResult], int]]  # ids -> (results, rows kept)
_Part = tuple[list[tuple[str, str, bytes, bytes, str | None, str | None, str | None, str, str | None, str | None]], int]

# Below this many patients a run stays in one process: forking and gathering cost more than
# they save (the whole evaluation takes well under a second).
MIN_PATIENTS = 4000
# Patients per batch: large, so that a batch of a hospital-sized run holds more excluded
# patients than the report shows as cards (their cards are then not rendered at all), and
# small enough that the workers finish together.
BATCH = 2500


@dataclass(frozen=True, slots=True)
class _Job:
    ids: list[str]
    evaluate: Evaluate
    renderer: Callable[[], PatientRenderer]


_JOB: _Job | None = None  # set in the parent just before forking; the workers inherit it
_RENDERER: PatientRenderer | None = None  # one per worker process: its caches serve every batch


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (cgroups, taskset)
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _batch(bounds: tuple[int, int]) -> _Part:
    global _RENDERER
    assert _JOB is not None
    if _RENDERER is None:
        _RENDERER = _JOB.renderer()
    results, kept = _JOB.evaluate(_JOB.ids[bounds[0] : bounds[1]])
    parts = [
        (r.id, r.status.value, r.json, r.csv, r.row, r.detail, r.line, r.results, r.name, r.identifier)
        for r in _RENDERER.render(results)
    ]
    return parts, kept


def evaluate_and_render(
    ids: list[str], evaluate: Evaluate, renderer: Callable[[], PatientRenderer], workers: int | None = None
) -> tuple[list[RenderedPatient], int]:
    """Every patient of `ids` (sorted) evaluated and rendered, in order; and the rows kept."""
    global _JOB, _RENDERER
    count = workers or default_workers()
    bounds = [(i, min(i + BATCH, len(ids))) for i in range(0, len(ids), BATCH)]
    forked = count > 1 and len(ids) >= MIN_PATIENTS and "fork" in multiprocessing.get_all_start_methods()
    rendered: list[RenderedPatient] = []
    kept = 0
    _JOB, _RENDERER = _Job(ids, evaluate, renderer), None
    try:
        with Progress(len(ids), "patients") as progress:
            if forked:
                # A lock held by a thread at fork time stays held in the child: the UCUM
                # registry's builder (units.warm_up) must be done first.
                units.ready()
                processes = min(count, len(bounds))
                log.info("evaluating %d patients in %d worker processes", len(ids), processes)
                context = multiprocessing.get_context("fork")
                # an executor, not a Pool: it notices a worker that dies (a Pool would wait forever)
                with ProcessPoolExecutor(processes, mp_context=context) as pool:
                    try:
                        for part in pool.map(_batch, bounds):
                            kept += _gather(part, rendered, progress)
                    except BrokenProcessPool as exc:
                        raise WorkerError(f"a worker process died ({exc}); no outputs were written") from exc
            else:
                for one in bounds:
                    kept += _gather(_batch(one), rendered, progress)
    finally:
        _JOB, _RENDERER = None, None
    return rendered, kept


def _gather(part: _Part, into: list[RenderedPatient], progress: Progress) -> int:
    rows, kept = part
    into.extend(
        RenderedPatient(pid, Status(status), j, c, row, detail, line, results, name, identifier)
        for pid, status, j, c, row, detail, line, results, name, identifier in rows
    )
    progress.update(len(rows))
    return kept
