"""Reviewer decisions (contract §7): one per (trial, patient), holding across runs until replaced.

Every change is a new row (who, when, what it replaced) and nothing is ever updated or deleted,
so a decision's history survives every run, and a patient leaving the source loses nothing.
A decision is refused for a patient no complete run of the trial has seen.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import UsageError
from .db import transaction
from .runs import known_patient, now

DECISIONS = ("to_review", "contacted", "eligible", "ineligible", "declined", "enrolled", "withdrawn")


@dataclass(frozen=True, slots=True)
class Decision:
    trial_id: str
    patient: str
    decision: str
    note: str | None
    by: str | None
    at: str  # ISO 8601 UTC
    before: str | None = None  # the decision this one replaced

    def as_json(self) -> dict[str, str | None]:
        """candidates.json's `review` (and the export's columns)."""
        return {"decision": self.decision, "note": self.note, "by": self.by, "at": self.at}


@dataclass(frozen=True, slots=True)
class Proposed:
    """A decision to record, from `review set` or a row of an imported worklist."""

    trial_id: str
    patient: str
    decision: str
    note: str | None = None
    by: str | None = None
    where: str = ""  # for messages: the file and row it came from


def problems(con: sqlite3.Connection, proposed: Iterable[Proposed]) -> list[str]:
    """Why these decisions cannot be recorded (an unknown decision, trial or patient)."""
    found = []
    trials = {t for (t,) in con.execute("SELECT DISTINCT trial_id FROM runs WHERE state = 'complete'")}
    for p in proposed:
        where = f"{p.where}: " if p.where else ""
        if p.decision not in DECISIONS:
            found.append(f"{where}unknown decision {p.decision!r} (one of {', '.join(DECISIONS)})")
        elif p.trial_id not in trials:
            found.append(f"{where}trial {p.trial_id!r} has no complete run in this store")
        elif not known_patient(con, p.trial_id, p.patient):
            found.append(f"{where}patient {p.patient!r} has never been in a run of {p.trial_id}")
    return found


def record(con: sqlite3.Connection, proposed: list[Proposed], at: str | None = None) -> list[Decision]:
    """Record every decision or none (UsageError naming each problem, exit 2). A decision equal
    to the current one (same decision and note) is not recorded again."""
    wrong = problems(con, proposed)
    if wrong:
        raise UsageError("nothing recorded:\n  " + "\n  ".join(wrong))
    stamp = at or now()
    recorded = []
    current: dict[str, dict[str, Decision]] = {}
    with transaction(con):
        for p in proposed:
            theirs = current.setdefault(p.trial_id, latest(con, p.trial_id))
            was = theirs.get(p.patient)
            if was is not None and (was.decision, was.note) == (p.decision, p.note):
                continue
            decision = Decision(p.trial_id, p.patient, p.decision, p.note, p.by, stamp, was.decision if was else None)
            con.execute(
                "INSERT INTO decisions (trial_id, patient, decision, note, by, at, before) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (p.trial_id, p.patient, p.decision, p.note, p.by, stamp, decision.before),
            )
            theirs[p.patient] = decision
            recorded.append(decision)
    return recorded


def latest(con: sqlite3.Connection, trial_id: str) -> dict[str, Decision]:
    """The current decision of every patient of a trial that has one."""
    rows = con.execute(
        "SELECT patient, decision, note, by, at, before FROM decisions WHERE trial_id = ? ORDER BY seq", (trial_id,)
    )
    return {patient: Decision(trial_id, patient, *rest) for patient, *rest in rows}


def history(con: sqlite3.Connection, trial_id: str, patient: str) -> list[Decision]:
    rows = con.execute(
        "SELECT decision, note, by, at, before FROM decisions WHERE trial_id = ? AND patient = ? ORDER BY seq",
        (trial_id, patient),
    )
    return [Decision(trial_id, patient, *row) for row in rows]
