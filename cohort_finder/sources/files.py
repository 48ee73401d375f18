"""A folder of FHIR JSON files (Bundles or single resources) and Bulk NDJSON, recursively.

Files are read in sorted path order: the contract's tie-break for duplicate resources
("the one read last wins") depends on it, and it makes runs reproducible.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import SourceError
from ..model import RunError
from . import jsontext
from .base import Item, not_a_resource, unpack

log = logging.getLogger(__name__)

# A broken line may still name its patient and type; then that patient's results which
# needed the line become unknown instead of silently not_met (contract §4).
_PATIENT_REF = re.compile(rb'"(?:subject|patient)"\s*:\s*\{[^{}]*?"reference"\s*:\s*"([^"]+)"')
_RESOURCE_TYPE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')


class FileSource:
    """`ignore`: glob patterns of files not to read (matched against the path relative to the
    folder and against the file name), for what a folder holds beside its FHIR data, such as
    a manifest: any other JSON file that is not FHIR is an error of its place."""

    def __init__(self, root: Path, ignore: Sequence[str] = ()) -> None:
        if not root.exists():
            raise SourceError(f"source not found: {root}")
        self.root = root
        self.ignore = tuple(ignore)

    def describe(self) -> str:
        return str(self.root)

    def files(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        try:
            found = sorted(
                p
                for p in self.root.rglob("*")
                if p.is_file() and p.suffix.lower() in (".json", ".ndjson") and not p.name.startswith(".")
            )
        except OSError as exc:  # the folder cannot be listed: the source cannot be read at all
            raise SourceError(f"cannot read the source folder {self.root}: {exc.strerror or exc}") from exc
        if not self.ignore:
            return found
        kept = [p for p in found if not self._ignored(p)]
        log.info("ignored %d files matching --ignore", len(found) - len(kept))
        return kept

    def _ignored(self, path: Path) -> bool:
        name = self._name(path)
        return any(fnmatch.fnmatchcase(name, glob) or fnmatch.fnmatchcase(path.name, glob) for glob in self.ignore)

    def _name(self, path: Path) -> str:
        return path.name if self.root.is_file() else path.relative_to(self.root).as_posix()

    def read(self) -> Iterator[Item | RunError]:
        for path in self.files():
            name = self._name(path)
            if path.suffix.lower() == ".ndjson":
                yield from read_ndjson(path, name)
            else:
                yield from read_json(path, name)


def read_json(path: Path, name: str) -> Iterator[Item | RunError]:
    try:
        data = jsontext.loads(path.read_bytes())
    except OSError as exc:
        yield RunError(name, f"cannot read file: {exc.strerror}")
        return
    except jsontext.JSONTextError as exc:
        yield RunError(name, f"not valid JSON: {exc}")
        return
    problem = not_a_resource(data)
    if problem is not None:
        yield RunError(name, problem)
        return
    yield from unpack(data, name)


def read_ndjson(path: Path, name: str) -> Iterator[Item | RunError]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        yield RunError(name, f"cannot read file: {exc.strerror}")
        return
    with handle:
        for number, line in enumerate(handle, start=1):
            if not jsontext.strip_bom(line).strip():
                continue
            where = f"{name}:{number}"
            try:
                data = jsontext.loads(line)
            except jsontext.JSONTextError:
                yield broken_line(where, line, f"line {number} is not valid JSON")
                continue
            problem = not_a_resource(data)
            if problem is not None:
                yield broken_line(where, line, f"line {number} is {problem}")
                continue
            yield from unpack(data, where)


def broken_line(where: str, line: bytes, message: str) -> RunError:
    """An error for an unreadable line, naming its patient and type when the text shows them."""
    ref = _PATIENT_REF.search(line)
    kind = _RESOURCE_TYPE.search(line)
    patient = ref.group(1).decode("utf-8", "replace") if ref else None
    rtype = kind.group(1).decode() if kind else None
    return RunError(where, message, patient_id=patient, resource_type=rtype)
