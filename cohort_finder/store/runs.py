"""Runs in the store: recorded when they start, completed or failed when they end, and each
complete run's patients, kept compactly (contract §7).

A complete run writes a patient's row only where its status or a result differs from the
previous complete run of the same trial (status `absent` for a patient that left the source),
and every patient's row at a base run: the first of a trial, one whose criteria differ from the
run before, and every SNAPSHOT_EVERY-th. A run's state is then the latest row of each patient
from its base run on, so reading it never walks more than that many runs. At 200,000 patients
a base run takes about 13 MB and a night's changes a few hundred kB (docs/performance.md).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..criteria import Trial
from ..model import CriterionInfo
from .changes import PatientState, RunState
from .db import transaction

SNAPSHOT_EVERY = 30
_COLUMNS = (
    "run, trial_id, trial_title, criteria_hash, mappings_hash, criteria, as_of, source, engine, started_at, "
    "finished_at, state, exit_status, message, patients, candidate, possible, excluded, errors, new, dropped, "
    "changed, base_run, notes"
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprints(trial: Trial) -> tuple[str, str]:
    """sha256 of the criteria file, and of every file in the value-set folder it used."""
    criteria = hashlib.sha256(trial.path.read_bytes()).hexdigest()
    mappings = hashlib.sha256()
    folder = trial.terminology.folder
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        mappings.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return criteria, mappings.hexdigest()


@dataclass(frozen=True, slots=True)
class RunInfo:
    run: int
    trial_id: str
    trial_title: str
    criteria_hash: str
    mappings_hash: str
    criteria: tuple[tuple[str, str, str], ...]  # (id, kind, protocol text) in the criteria file's order
    as_of: str
    source: str
    engine: str
    started_at: str
    finished_at: str | None
    state: str  # running | complete | failed
    exit_status: int | None
    message: str | None
    counts: dict[str, int | None]  # patients, candidate, possible, excluded, errors
    changes: dict[str, int | None]  # new, dropped, changed
    base_run: int | None
    notes: dict[str, Any]
    keys: tuple[tuple[str, str], ...] = ()  # (criterion id, key value label): CriterionInfo.key
    manual: frozenset[str] = frozenset()  # criteria with no computable rule

    @property
    def infos(self) -> tuple[CriterionInfo, ...]:
        """The criteria as the reports take them."""
        keys = dict(self.keys)
        return tuple(CriterionInfo(c, k, t, c not in self.manual, keys.get(c)) for c, k, t in self.criteria)

    @property
    def criteria_ids(self) -> tuple[str, ...]:
        return tuple(cid for cid, _, _ in self.criteria)

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "trial": self.trial_id,
            "state": self.state,
            "exit_status": self.exit_status,
            "as_of": self.as_of,
            "source": self.source,
            "engine": self.engine,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "criteria_sha256": self.criteria_hash,
            "mappings_sha256": self.mappings_hash,
            **self.counts,
            **self.changes,
            "message": self.message,
            **({"source_notes": self.notes} if self.notes else {}),
        }


def _info(row: sqlite3.Row | tuple[Any, ...]) -> RunInfo:
    values = dict(zip(_COLUMNS.replace(" ", "").split(","), row, strict=True))
    counts = {k: values[k] for k in ("patients", "candidate", "possible", "excluded", "errors")}
    criteria = json.loads(values["criteria"])
    changes = {k: values[k] for k in ("new", "dropped", "changed")}
    return RunInfo(
        run=values["run"],
        trial_id=values["trial_id"],
        trial_title=values["trial_title"],
        criteria_hash=values["criteria_hash"],
        mappings_hash=values["mappings_hash"],
        # [id, kind, text]; since the overview's key values, [id, kind, text, key or null, computable]
        criteria=tuple((c[0], c[1], c[2]) for c in criteria),
        keys=tuple((c[0], c[3]) for c in criteria if len(c) > 3 and c[3]),
        manual=frozenset(c[0] for c in criteria if len(c) > 4 and not c[4]),
        as_of=values["as_of"],
        source=values["source"],
        engine=values["engine"],
        started_at=values["started_at"],
        finished_at=values["finished_at"],
        state=values["state"],
        exit_status=values["exit_status"],
        message=values["message"],
        counts=counts,
        changes=changes,
        base_run=values["base_run"],
        notes=json.loads(values["notes"]) if values["notes"] else {},
    )


def begin(con: sqlite3.Connection, trial: Trial, as_of: str, source: str, engine: str, hashes: tuple[str, str]) -> int:
    criteria = json.dumps([[c.id, c.kind, c.text, c.key, c.computable] for c in trial.infos])
    with transaction(con):
        cursor = con.execute(
            "INSERT INTO runs (trial_id, trial_title, criteria_hash, mappings_hash, criteria, as_of, source, engine, "
            "started_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')",
            (trial.id, trial.title, *hashes, criteria, as_of, source, engine, now()),
        )
    return int(cursor.lastrowid or 0)


def fail(con: sqlite3.Connection, run: int, exit_status: int, message: str) -> None:
    with transaction(con):
        con.execute(
            "UPDATE runs SET state = 'failed', finished_at = ?, exit_status = ?, message = ? WHERE run = ?",
            (now(), exit_status, message[:2000], run),
        )


def get(con: sqlite3.Connection, run: int) -> RunInfo | None:
    row = con.execute(f"SELECT {_COLUMNS} FROM runs WHERE run = ?", (run,)).fetchone()
    return _info(row) if row else None


def history(con: sqlite3.Connection, trial_id: str | None = None) -> list[RunInfo]:
    if trial_id is None:
        rows = con.execute(f"SELECT {_COLUMNS} FROM runs ORDER BY run").fetchall()
    else:
        rows = con.execute(f"SELECT {_COLUMNS} FROM runs WHERE trial_id = ? ORDER BY run", (trial_id,)).fetchall()
    return [_info(r) for r in rows]


def last_complete(
    con: sqlite3.Connection, trial_id: str, before: int | None = None, source: str | None = None
) -> RunInfo | None:
    """The latest complete run of a trial (before run `before`; from `source` only, if given)."""
    query = f"SELECT {_COLUMNS} FROM runs WHERE trial_id = ? AND state = 'complete'"
    args: list[Any] = [trial_id]
    if before is not None:
        query += " AND run < ?"
        args.append(before)
    if source is not None:
        query += " AND source = ?"
        args.append(source)
    row = con.execute(query + " ORDER BY run DESC LIMIT 1", args).fetchone()
    return _info(row) if row else None


def state(con: sqlite3.Connection, info: RunInfo) -> RunState:
    """Every patient of a complete run: the latest row of each from its base run on."""
    assert info.state == "complete" and info.base_run is not None, info
    patients: dict[str, PatientState] = {}
    rows = con.execute(
        "SELECT patient, status, results FROM results WHERE trial_id = ? AND run BETWEEN ? AND ? ORDER BY run",
        (info.trial_id, info.base_run, info.run),
    )
    for patient, status, results in rows:
        patients[patient] = PatientState.unpacked(status, results)
    current = {pid: s for pid, s in patients.items() if s.status != "absent"}
    return RunState(info.run, info.as_of, info.criteria_ids, current)


def patient_state(con: sqlite3.Connection, info: RunInfo, patient: str) -> PatientState | None:
    """One patient of a complete run (state() for one, without reading everyone's rows)."""
    assert info.state == "complete" and info.base_run is not None, info
    row = con.execute(
        "SELECT status, results FROM results WHERE trial_id = ? AND patient = ? AND run BETWEEN ? AND ? "
        "ORDER BY run DESC LIMIT 1",
        (info.trial_id, patient, info.base_run, info.run),
    ).fetchone()
    state = PatientState.unpacked(*row) if row else None
    return state if state is not None and state.status != "absent" else None


@dataclass(frozen=True, slots=True)
class Completed:
    """What a finished run hands the store."""

    patients: Mapping[str, PatientState]
    counts: Mapping[str, int]
    errors: Sequence[tuple[str, str]]  # (source, message)
    changes: Mapping[str, int]  # new, dropped, changed
    exit_status: int
    notes: Mapping[str, Any]
    worklist: Iterable[tuple[str, str | None, str | None, str, str]]  # (patient, name, identifier, status, detail)


def complete(
    con: sqlite3.Connection,
    run: int,
    trial_id: str,
    previous: RunState | None,
    base_of_previous: int | None,
    done: Completed,
) -> None:
    """Record a finished run in one transaction: its patients (as changes against `previous`,
    or whole at a base run), errors, counts, and the worklist of its open patients."""
    info = get(con, run)
    assert info is not None
    chain = 0
    if previous is not None and base_of_previous is not None:
        chain = con.execute(
            "SELECT count(*) FROM runs WHERE trial_id = ? AND state = 'complete' AND run >= ?",
            (trial_id, base_of_previous),
        ).fetchone()[0]
    if (
        previous is None
        or base_of_previous is None
        or previous.criteria != info.criteria_ids
        or chain >= SNAPSHOT_EVERY
    ):
        rows = [(trial_id, pid, run, *s.packed()) for pid, s in done.patients.items()]
        base = run
    else:
        rows = [
            (trial_id, pid, run, *s.packed()) for pid, s in done.patients.items() if previous.patients.get(pid) != s
        ]
        rows += [(trial_id, pid, run, "a", "") for pid in previous.patients if pid not in done.patients]
        base = base_of_previous
    c, ch = done.counts, done.changes
    with transaction(con):
        con.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?)", rows)
        con.executemany(
            "INSERT INTO run_errors VALUES (?, ?, ?, ?)", ((run, i, s, m) for i, (s, m) in enumerate(done.errors))
        )
        con.execute("DELETE FROM worklist WHERE trial_id = ?", (trial_id,))
        con.executemany(
            "INSERT INTO worklist VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((trial_id, p, run, *rest) for p, *rest in done.worklist),
        )
        con.execute(
            "UPDATE runs SET state = 'complete', finished_at = ?, exit_status = ?, patients = ?, candidate = ?, "
            "possible = ?, excluded = ?, errors = ?, new = ?, dropped = ?, changed = ?, base_run = ?, notes = ? "
            "WHERE run = ?",
            (now(), done.exit_status, c["patients"], c["candidate"], c["possible"], c["excluded"], c["errors"],
             ch["new"], ch["dropped"], ch["changed"], base, json.dumps(dict(done.notes)) if done.notes else None, run),
        )  # fmt: skip


def errors_of(con: sqlite3.Connection, run: int) -> list[tuple[str, str]]:
    return [(s, m) for s, m in con.execute("SELECT source, message FROM run_errors WHERE run = ? ORDER BY seq", (run,))]


def known_patient(con: sqlite3.Connection, trial_id: str, patient: str) -> bool:
    """Has any complete run of the trial seen this patient?"""
    return (
        con.execute(
            "SELECT 1 FROM results WHERE trial_id = ? AND patient = ? AND status != 'a' LIMIT 1", (trial_id, patient)
        ).fetchone()
        is not None
    )
