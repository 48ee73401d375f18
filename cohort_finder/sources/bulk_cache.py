"""The Bulk export cache of a nightly job: what the server exported, kept up to date by asking
only for what changed.

A cache folder holds `files/` (the NDJSON a run reads) and `state.json` (the transaction time
of the last complete export, and when the last full one was). A later run exports with
`_since` that transaction time into `incoming/`, then merges it into `files/`: for the same
resource type and id, the newer `meta.lastUpdated` wins (the incoming copy on a tie, or when
either has none), and resources the server lists as deleted (a Bulk 2.0 manifest's `deleted`
Bundles) are removed. Every `full_refresh_days` a full export replaces `files/` instead, since
some EHRs keep last-modified times badly and not every server reports deletions.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..catalogue import newer_or_same
from . import jsontext

log = logging.getLogger(__name__)
# the head of a Bulk line: {"resourceType": "T", "id": "x" (read without parsing the line)
_HEAD = re.compile(rb'^\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"\s*,\s*"id"\s*:\s*"([^"\\]+)"')
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class CacheState:
    transaction_time: str  # of the last complete export: the next `_since`
    full_at: float  # when the last full export completed (Unix time)


def read_state(folder: Path) -> CacheState | None:
    try:
        data = orjson.loads((folder / "state.json").read_bytes())
        return CacheState(str(data["transactionTime"]), float(data["full_at"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # no complete export yet (or a state cut short): the next export is full


def write_state(folder: Path, state: CacheState) -> None:
    tmp = folder / ".state.json.tmp"
    tmp.write_bytes(orjson.dumps({"transactionTime": state.transaction_time, "full_at": state.full_at}))
    os.replace(tmp, folder / "state.json")


def full_due(state: CacheState | None, full_refresh_days: float, now: float | None = None) -> bool:
    if state is None:
        return True
    return (now if now is not None else time.time()) - state.full_at >= full_refresh_days * _DAY


def _key_and_time(line: bytes) -> tuple[tuple[str, str] | None, str | None]:
    """(type, id) and meta.lastUpdated of a line (None where it has none, or is not JSON:
    such a line stays, and the reader reports it)."""
    try:
        resource = jsontext.loads(line)
    except jsontext.JSONTextError:
        return None, None
    if not isinstance(resource, dict):
        return None, None
    rtype, rid = resource.get("resourceType"), resource.get("id")
    meta = resource.get("meta")
    updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
    key = (rtype, rid) if isinstance(rtype, str) and isinstance(rid, str) else None
    return key, updated if isinstance(updated, str) else None


def count_lines(path: Path) -> int:
    return sum(1 for _ in _lines(path))


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield line if line.endswith(b"\n") else line + b"\n"


def replace(files: Path, incoming: Path) -> None:
    """A full export: `incoming` becomes `files`."""
    old = files.with_name(files.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if files.exists():
        files.rename(old)
    incoming.rename(files)
    if old.exists():
        shutil.rmtree(old)


def merge(files: Path, incoming: Path, deleted: set[tuple[str, str]], stamp: str) -> tuple[int, int]:
    """Merge an export of changes into `files`; return (resources merged, resources removed)."""
    arriving: dict[tuple[str, str], str | None] = {}
    for path in sorted(incoming.glob("*.ndjson")):
        for line in _lines(path):
            key, updated = _key_and_time(line)
            if key is not None:
                arriving[key] = updated
    touched = {rtype for rtype, _ in arriving} | {rtype for rtype, _ in deleted}
    stale: set[tuple[str, str]] = set()  # arriving copies older than the ones kept
    removed = 0
    for path in sorted(files.glob("*.ndjson")):
        if path.name.split(".", 1)[0] not in touched:
            continue
        kept, changed = [], False
        for line in _lines(path):
            head = _HEAD.match(line)
            key = (head.group(1).decode(), head.group(2).decode()) if head else _key_and_time(line)[0]
            if key is not None and key in deleted:
                changed, removed = True, removed + 1
                continue
            if key is not None and key in arriving:
                if newer_or_same(arriving[key], _key_and_time(line)[1]):
                    changed = True  # the incoming copy replaces this one
                    continue
                stale.add(key)
            kept.append(line)
        if changed:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(b"".join(kept))
            os.replace(tmp, path)
    merged = 0
    for index, path in enumerate(sorted(incoming.glob("*.ndjson"))):
        lines = [line for line in _lines(path) if _key_and_time(line)[0] not in stale | deleted]
        merged += len(lines)
        if lines:
            target = files / f"{path.name.split('.', 1)[0]}.since-{stamp}.{index:04d}.ndjson"
            target.write_bytes(b"".join(lines))
    shutil.rmtree(incoming)
    return merged, removed


def deleted_keys(bundles: Iterator[bytes]) -> set[tuple[str, str]]:
    """(type, id) of every resource a manifest's `deleted` files name: Bundles whose entries'
    `request` is a DELETE of `Type/id`."""
    found: set[tuple[str, str]] = set()
    for line in bundles:
        try:
            bundle: Any = jsontext.loads(line)
        except jsontext.JSONTextError:
            log.warning("a line of a deleted-resources file is not JSON: ignored")
            continue
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            request = entry.get("request") if isinstance(entry, dict) else None
            url = request.get("url") if isinstance(request, dict) else None
            if isinstance(url, str) and isinstance(request, dict) and request.get("method") == "DELETE":
                parts = url.split("?", 1)[0].rstrip("/").split("/")
                if len(parts) >= 2:
                    found.add((parts[-2], parts[-1]))
    return found
