"""What one `cohort-finder run` writes to the run store, from its start to its end.

Opened before the source is read: the run is recorded as running, with what it will compare
against (the previous complete run of the trial) and the reviewers' current decisions. It ends
complete (its patients, counts, errors, changes, worklist) or failed (why, and its exit
status): every run is recorded, successful or not (contract §7).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..criteria import Trial
from ..errors import SourceError
from ..model import RunError, Status
from . import Store, decisions, runs
from .changes import Diff, PatientState, RunState, diff

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, store: Store, trial: Trial, as_of: str, source: str, engine: str) -> None:
        self.store, self.trial, self.as_of, self.source = store, trial, as_of, source
        con = store.con
        self.previous_info = runs.last_complete(con, trial.id)
        self.previous: RunState | None = runs.state(con, self.previous_info) if self.previous_info else None
        self.decisions = decisions.latest(con, trial.id)
        self.run = runs.begin(con, trial, as_of, source, engine, runs.fingerprints(trial))
        log.info(
            "run %d of %s begun in %s%s",
            self.run,
            trial.id,
            store.path,
            f" (compared with run {self.previous_info.run})" if self.previous_info else " (no complete run before it)",
        )

    def guard_empty(self, patients: int) -> None:
        """No Patient at all where the previous run of this trial on this source found some
        is a failure of the source, not an empty cohort (contract §4)."""
        if patients:
            return
        before = runs.last_complete(self.store.con, self.trial.id, source=self.source)
        if before is not None and before.counts.get("patients"):
            raise SourceError(
                f"the source holds no Patient, where run {before.run} ({before.as_of}) of {self.trial.id} on it "
                f"found {before.counts['patients']}: nothing written, the previous outputs stay"
            )

    def since(self, current: Mapping[str, PatientState]) -> Diff | None:
        if self.previous is None:
            return None
        after = RunState(self.run, self.as_of, tuple(c.id for c in self.trial.criteria), current)
        return diff(self.trial.id, self.previous, after)

    def complete(
        self,
        current: Mapping[str, PatientState],
        counts: Mapping[str, int],
        errors: Sequence[RunError],
        since: Diff | None,
        exit_status: int,
        worklist: Iterable[tuple[str, str | None, str | None, str, str]],
        notes: Mapping[str, Any] | None = None,
    ) -> None:
        changes = {
            "new": len(since.new) if since else 0,
            "dropped": len(since.dropped) if since else 0,
            "changed": len(since.changed) if since else 0,
        }
        done = runs.Completed(
            current, counts, [(e.source, e.message) for e in errors], changes, exit_status, notes or {}, worklist
        )
        base = self.previous_info.base_run if self.previous_info else None
        runs.complete(self.store.con, self.run, self.trial.id, self.previous, base, done)

    def fail(self, exit_status: int, message: str) -> None:
        try:
            runs.fail(self.store.con, self.run, exit_status, message)
        except Exception:  # the failure being recorded matters more than the record of it
            log.exception("could not record run %d as failed", self.run)
        log.info("run %d recorded as failed (exit %d)", self.run, exit_status)


def worklist_rows(
    rendered: Iterable[Any],
) -> Iterable[tuple[str, str | None, str | None, str, str]]:
    """(patient, name, identifier, status, candidates.json line) of each candidate and possible."""
    for p in rendered:
        if p.status in (Status.CANDIDATE, Status.POSSIBLE):
            yield p.id, p.name, p.identifier, p.status.value, p.json.decode()
