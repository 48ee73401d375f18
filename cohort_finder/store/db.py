"""The run store's file: an SQLite database, owner-only, versioned, one writer at a time.

- Mode 0600 from the first byte (it holds PHI: per-patient results, reviewer decisions): the
  file is created empty with O_EXCL before SQLite opens it.
- `PRAGMA application_id` marks the file as a cohort-finder store and `PRAGMA user_version`
  is its schema version. Opening applies the migrations a file lacks (so a later release
  opens today's file) and refuses a file from a newer release, or one that is not a store.
- Writers hold an exclusive lock on `<store>.lock` (fcntl) for as long as they write: a run
  holds it from start to end, so two runs on one store never interleave (contract §7).
  Readers (history, diff) need no lock: SQLite's own locking keeps them consistent.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import StoreError

APPLICATION_ID = 0x43664631  # "CfF1": a cohort-finder store
_MODE = 0o600


def _statements(con: sqlite3.Connection, script: str) -> None:
    """Each statement of a script, inside the caller's transaction (executescript would
    commit it first)."""
    for statement in script.split(";\n"):
        if statement.strip():
            con.execute(statement)


def _v1(con: sqlite3.Connection) -> None:
    _statements(
        con,
        """
        CREATE TABLE runs (
            run INTEGER PRIMARY KEY,          -- 1, 2, ... in the order runs start
            trial_id TEXT NOT NULL,
            trial_title TEXT NOT NULL,
            criteria_hash TEXT NOT NULL,      -- sha256 of the criteria file
            mappings_hash TEXT NOT NULL,      -- sha256 of the value-set files it used
            criteria TEXT NOT NULL,           -- JSON [[id, kind, text], ...] in the file's order
            as_of TEXT NOT NULL,
            source TEXT NOT NULL,
            engine TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            state TEXT NOT NULL,              -- running | complete | failed
            exit_status INTEGER,
            message TEXT,                     -- why a run failed
            patients INTEGER, candidate INTEGER, possible INTEGER, excluded INTEGER, errors INTEGER,
            new INTEGER, dropped INTEGER, changed INTEGER,   -- against the previous complete run
            base_run INTEGER,                 -- the run whose full state this run's changes build on
            notes TEXT                        -- JSON: what the source did (a Bulk export: full or since)
        );
        CREATE INDEX runs_by_trial ON runs (trial_id, state, run);
        CREATE TABLE run_errors (
            run INTEGER NOT NULL, seq INTEGER NOT NULL, source TEXT NOT NULL, message TEXT NOT NULL,
            PRIMARY KEY (run, seq)
        ) WITHOUT ROWID;
        -- A patient's status and results (one letter per criterion, runs.criteria's order) for a
        -- run, written only where they differ from the previous complete run of the trial, or
        -- for every patient at a base run; status `absent` when the patient left the source.
        CREATE TABLE results (
            trial_id TEXT NOT NULL, patient TEXT NOT NULL, run INTEGER NOT NULL,
            status TEXT NOT NULL, results TEXT NOT NULL,
            PRIMARY KEY (trial_id, patient, run)
        ) WITHOUT ROWID;
        CREATE INDEX results_by_run ON results (run);
        -- Every reviewer decision ever made, never updated or deleted: the latest is current.
        CREATE TABLE decisions (
            seq INTEGER PRIMARY KEY,
            trial_id TEXT NOT NULL, patient TEXT NOT NULL,
            decision TEXT NOT NULL, note TEXT, by TEXT, at TEXT NOT NULL,
            before TEXT                       -- the decision it replaced, if any
        );
        CREATE INDEX decisions_by_patient ON decisions (trial_id, patient, seq);
        -- What the latest complete run shows of each candidate and possible patient (name,
        -- identifier, evidence): the coordinator's worklist is exported from it.
        CREATE TABLE worklist (
            trial_id TEXT NOT NULL, patient TEXT NOT NULL, run INTEGER NOT NULL,
            name TEXT, identifier TEXT, status TEXT NOT NULL, detail TEXT NOT NULL,  -- detail: JSON
            PRIMARY KEY (trial_id, patient)
        ) WITHOUT ROWID;
        """,
    )


# The schema, one function per version: MIGRATIONS[n] takes a version-n file to n + 1. A later
# release appends; it never edits what is here.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1]


def latest_version() -> int:
    return len(MIGRATIONS)


def _create_owner_only(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), _MODE)
    except FileExistsError:
        return
    os.close(fd)


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating it owner-only, or migrating it) the store at `path`."""
    _create_owner_only(path)
    try:
        con = sqlite3.connect(path, timeout=30, isolation_level=None)  # transactions are explicit
        con.execute("PRAGMA foreign_keys = ON")
        application, version = con.execute("PRAGMA application_id").fetchone()[0], _version(con)
        tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a cohort-finder store ({exc})") from None
    if application != APPLICATION_ID and (tables or version):
        con.close()
        raise StoreError(f"{path} is an SQLite file but not a cohort-finder store")
    if version > latest_version():
        con.close()
        raise StoreError(
            f"{path} was written by a newer cohort-finder (store schema {version}, this one knows "
            f"{latest_version()}): upgrade cohort-finder to use it"
        )
    if version < latest_version():
        _migrate(con, version, path)
    return con


def _version(con: sqlite3.Connection) -> int:
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def _migrate(con: sqlite3.Connection, version: int, path: Path) -> None:
    try:
        con.execute("BEGIN IMMEDIATE")
        if _version(con) == version:  # nobody migrated it while we waited for the lock
            for step in MIGRATIONS[version:]:
                step(con)
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute(f"PRAGMA user_version = {latest_version()}")
        con.execute("COMMIT")
    except sqlite3.Error as exc:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise StoreError(f"{path}: could not bring the store to schema {latest_version()} ({exc})") from exc


@contextlib.contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@contextlib.contextmanager
def writer_lock(path: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold `<store>.lock` exclusively; wait up to `wait` seconds for another writer to finish,
    then refuse with a message naming it (StoreError, exit 2)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: SQLite's own locking still keeps each transaction whole
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    _create_owner_only(lock_path)
    fd = os.open(lock_path, os.O_RDWR)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                    raise StoreError(
                        f"{path} is in use by {holder}: a second run on one store never interleaves "
                        "(wait for it, or use --lock-wait SECONDS)"
                    ) from None
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"cohort-finder pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
