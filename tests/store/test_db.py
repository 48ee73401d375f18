"""The store's file: owner-only, versioned, migrated, refused when it is not a store, and one
writer at a time."""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat
from pathlib import Path

import pytest

from cohort_finder.errors import StoreError
from cohort_finder.store import Store, db


def test_a_new_store_is_owner_only_and_marked_as_a_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "sub" / "history.sqlite")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.con.execute("PRAGMA application_id").fetchone()[0] == db.APPLICATION_ID
    assert store.con.execute("PRAGMA user_version").fetchone()[0] == db.latest_version()
    store.close()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"name,status\np1,candidate\n", "not a cohort-finder store"),
        (None, "an SQLite file but not a cohort-finder store"),
    ],
)
def test_a_file_that_is_not_a_store_is_refused_and_left_as_it_was(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    path = tmp_path / "history.sqlite"
    if content is None:
        other = sqlite3.connect(path)
        other.execute("CREATE TABLE patients (id TEXT)")
        other.commit()
        other.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=says):
        Store.open(path)
    assert path.read_bytes() == before


def test_a_store_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    Store.open(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {db.latest_version() + 1}")
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=rf"newer cohort-finder \(store schema {db.latest_version() + 1}"):
        Store.open(path)
    assert path.read_bytes() == before


def test_a_later_release_opens_todays_file_and_keeps_its_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "history.sqlite"
    store = Store.open(path)
    store.con.execute("INSERT INTO decisions (trial_id, patient, decision, at) VALUES ('T', 'p1', 'contacted', 'x')")
    store.close()

    def v2(con: sqlite3.Connection) -> None:
        con.execute("ALTER TABLE decisions ADD COLUMN channel TEXT")

    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, v2])
    upgraded = Store.open(path)
    assert upgraded.con.execute("PRAGMA user_version").fetchone()[0] == 2
    assert upgraded.con.execute("SELECT patient, decision, channel FROM decisions").fetchall() == [
        ("p1", "contacted", None)
    ]
    upgraded.close()


def _hold(path: str, ready: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event) -> None:
    with db.writer_lock(Path(path)):
        ready.set()
        release.wait(10)


def test_a_second_writer_is_refused_or_waits(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(StoreError, match=r"in use by cohort-finder pid \d+"), db.writer_lock(path):
            pass
        release.set()
        with db.writer_lock(path, wait=10):  # waits for the first to finish
            pass
    finally:
        release.set()
        holder.join(10)
