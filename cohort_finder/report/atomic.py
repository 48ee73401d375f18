"""Atomic, owner-only file writes (contract §2 and §5).

The outputs hold PHI, so a file must never exist, even for an instant, with wider permissions
than 0600, and an interrupted run must never leave a half-written file under the final name.
Hence: create a fresh temporary file in the target directory with O_EXCL and mode 0600 (never
create-then-chmod, which leaves a window where the umask decides), write and fsync it, then
os.replace it onto the final name, which is atomic on POSIX within one filesystem.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

_FILE_MODE = 0o600
# O_EXCL refuses to open an existing path, symlinks included, so a planted link cannot
# redirect the write; O_NOFOLLOW and O_CLOEXEC are belt and braces where the OS has them.
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_MAX_NAME_TRIES = 16
_WRITE_SIZE = 1 << 20  # gather chunks into writes of about this many bytes


def _open_temp(path: Path) -> tuple[int, Path]:
    """Create a new, empty, 0600 temp file beside `path` (same directory, so same
    filesystem, so os.replace is atomic). Hidden name so nobody mistakes it for output."""
    for _ in range(_MAX_NAME_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            return os.open(tmp, _OPEN_FLAGS, _FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable. Best effort: some platforms cannot open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def stage(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write `chunks` to a fresh 0600 temporary file beside `path` and fsync it; the caller
    renames it into place with `commit`. Chunks are written as they come (a hospital-sized
    candidates.json is never held whole in memory). On failure the temp file is removed."""
    fd, tmp = _open_temp(path)
    try:
        try:
            # The umask can only have removed bits from 0600 (e.g. a 0o277 umask gives 0400);
            # restore exactly 0600 on the still-private descriptor, which never widens access
            # beyond the owner.
            os.fchmod(fd, _FILE_MODE)
            pending: list[bytes] = []
            size = 0
            for chunk in chunks:
                pending.append(chunk)
                size += len(chunk)
                if size >= _WRITE_SIZE:
                    _write_all(fd, b"".join(pending))
                    pending, size = [], 0
            _write_all(fd, b"".join(pending))
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        # BaseException too: a Ctrl-C mid-write must not leave a stray PHI-bearing temp file.
        discard([tmp])
        raise
    return tmp


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def discard(temps: Iterable[Path]) -> None:
    for tmp in temps:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def commit(staged: list[tuple[Path, Path]]) -> None:
    """Rename each (temp, final) pair into place, then make the renames durable."""
    try:
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        discard(tmp for tmp, _ in staged)
        raise
    for directory in {path.parent for _, path in staged}:
        _fsync_dir(directory)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600.

    On any failure the temp file is removed and an existing file at `path` is left untouched.
    """
    path = Path(path)
    commit([(stage(path, [data]), path)])
