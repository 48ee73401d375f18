"""The run store (contract §7): every run of every trial, what changed, and reviewer decisions,
in one SQLite file (default OUT_DIR/history.sqlite, mode 0600).

- db.py: the file (schema versions, migrations, the writers' lock);
- runs.py: runs and each complete run's patients, kept as changes;
- changes.py: what changed between two runs (`diff`, and each patient's `change`);
- decisions.py: reviewer decisions and their history;
- recorder.py: what one `run` writes, from start to end.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NamedTuple

from . import db

DEFAULT_NAME = "history.sqlite"


class Store(NamedTuple):
    path: Path
    con: sqlite3.Connection

    @classmethod
    def open(cls, path: Path) -> Store:
        return cls(path, db.connect(path))

    def close(self) -> None:
        self.con.close()
