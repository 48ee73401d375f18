"""Where a row an SQL engine read came from, and how an error about it names `file:line`.

An SQL engine does not know line numbers; a row's origin is `file NUL Type/id`, and only when
an error is about that row is the file read to find its line (errors are rare, rows are not).
Shared by every engine that scans files.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..model import RunError

MARK = "\x00"


def row_origin(name: str, rtype: object, rid: object) -> str:
    return f"{name}{MARK}{rtype}/{rid}"


def relative_name(root: Path, path: Path) -> str:
    """A file's name as errors give it: relative to the source folder."""
    return path.name if root.is_file() else path.relative_to(root).as_posix()


def place(root: Path, error: RunError) -> RunError:
    """`file:line` for an error about a scanned row (found by reading that one file)."""
    if MARK not in error.source:
        return error
    name, key = error.source.split(MARK, 1)
    line = locate(root if root.is_file() else root / name, key)
    source = f"{name}:{line}" if line else name
    return RunError(source, error.message, error.patient_id, error.resource_type)


def locate(path: Path, key: str) -> int | None:
    """The line of `path` holding the resource `Type/id`."""
    rtype, rid = key.split("/", 1)
    pattern = re.compile(rb'"id"\s*:\s*"' + re.escape(rid.encode()) + rb'"')
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if pattern.search(line) and f'"{rtype}"'.encode() in line:
                return number
    return None
