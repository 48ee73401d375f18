"""FHIR Bulk Data `$export` as a source: kick off, poll, download NDJSON into a cache folder,
then read it like any folder of NDJSON files.

The cache keeps each export under a key of (server, level, types, filters, since): a re-run
reuses a finished export, and a run that was interrupted resumes: polling the same job if it
had started one, downloading only what is missing (HTTP Range for a half-written file).
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import requests

from ..errors import FetchError, SourceError
from ..facts import MEDICATION_TYPES
from ..model import ALL_PATIENTS, RunError
from ..search_plan import Search
from . import bulk_cache, jsontext, medications
from .base import Item
from .files import FileSource
from .http import FhirHttp, json_body, operation_outcome_text
from .rest import refused_status

log = logging.getLogger(__name__)
NDJSON = "application/fhir+ndjson"


@dataclass(frozen=True, slots=True)
class BulkRequest:
    level: str = "Patient"  # "Patient", "Group/<id>" or "" for the whole system
    types: tuple[str, ...] = ()
    type_filters: tuple[str, ...] = ()
    since: str | None = None

    @classmethod
    def from_searches(
        cls,
        searches: list[Search],
        level: str = "Patient",
        since: str | None = None,
        use_type_filters: bool = True,
        medication: bool = True,
    ) -> BulkRequest:
        """The REST plan's restriction as `_type` and `_typeFilter`. The Bulk spec ORs several
        filters for one type, but servers differ (sekmet ANDs them), so a type whose plan needs
        more than one filter is exported whole and reduced here: never a silent loss.
        `medication`: the server offers Medication (Oracle Health refuses it in `_type`)."""
        with_medication = medication and any(s.resource_type in MEDICATION_TYPES for s in searches)
        types = sorted({s.resource_type for s in searches} | ({"Medication"} if with_medication else set()))
        by_type: dict[str, list[str]] = {}
        for search in searches:
            params = [(k, v) for k, v in search.params if k not in ("_count", "_include")]
            # values are escaped: _typeFilter is itself a comma-separated list of queries
            query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params)
            by_type.setdefault(search.resource_type, []).append(query)
        filters = [
            f"{rtype}?{queries[0]}"
            for rtype, queries in sorted(by_type.items())
            if use_type_filters and len(queries) == 1 and queries[0]
        ]
        return cls(level, tuple(types), tuple(filters), since)

    def key(self, base: str) -> str:
        text = orjson.dumps([base, self.level, self.types, self.type_filters, self.since])
        return hashlib.sha256(text).hexdigest()[:16]


class _FiltersRefused(Exception):
    """A kick-off with `_typeFilter` refused as a bad request."""


def _filters_memo(cache_root: Path, base: str) -> Path:
    return cache_root / f"no-typefilter-{hashlib.sha256(base.encode()).hexdigest()[:16]}"


def filters_refused(cache_root: Path, base: str) -> bool:
    """Has this server refused `_typeFilter` before? (Then it is not sent again.)"""
    return _filters_memo(cache_root, base).exists()


def remember_filters_refused(cache_root: Path, base: str) -> None:
    cache_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    _filters_memo(cache_root, base).touch()


def _state(path: Path) -> dict[str, Any]:
    """The export job as an earlier run left it; a file cut short by a crash starts over."""
    if not path.exists():
        return {}
    try:
        state = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        state = None
    if not isinstance(state, dict):
        log.warning("the bulk cache's job file %s is unreadable: starting a new export", path)
        return {}
    return state


def _output(entry: Any) -> tuple[str | None, str | None]:
    """A manifest `output` (or `error`) entry's type and url, None where it has none."""
    if not isinstance(entry, dict):
        return None, None
    rtype, url = entry.get("type"), entry.get("url")
    return (rtype if isinstance(rtype, str) else None), (url if isinstance(url, str) and url else None)


def _safe_name(rtype: str | None) -> str:
    """A file name from the type a server gave (never a path)."""
    return rtype if rtype and re.fullmatch(r"[A-Za-z]{1,64}", rtype) else "Resource"


def _retry_after(value: str | None, fallback: float) -> float:
    if not value:
        return fallback
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return fallback


class BulkSource:
    """A Bulk export, kept in a cache folder that later runs bring up to date (bulk_cache.py).

    The first run exports everything. A later run asks only for what changed since the last
    complete export (`_since` its transaction time) and merges it in, except every
    `full_refresh_days`, or with `reuse=False` (`--refresh`), when it exports everything again.
    An export with an explicit `since` in its request is a one-off: kept under its own key, and
    reused as it is. An interrupted run resumes its export (polling the same job, downloading
    what is missing). `notes` says what was done, for the run store."""

    lacks: tuple[str, ...] = ()  # resource types the server does not offer (contract §3)

    def __init__(
        self,
        http: FhirHttp,
        request: BulkRequest,
        cache_root: Path,
        *,
        reuse: bool = True,
        full_refresh_days: float = 7.0,
        max_wait: float = 6 * 3600,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        fetch_medications: bool = True,
    ) -> None:
        self.http = http
        self.request = request
        self.folder = cache_root / request.key(http.base)
        self.cache_root = cache_root
        self.fetch_medications = fetch_medications  # False: the server offers no Medication
        self.reuse = reuse
        self.full_refresh_days = full_refresh_days
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock
        self.errors: list[RunError] = []
        self.notes: dict[str, Any] = {}

    def describe(self) -> str:
        return f"{self.http.base} ($export)"

    def read(self) -> Iterator[Item | RunError]:
        files = self.fetch()
        yield from self.errors
        yield from FileSource(files).read()

    # -- the export job ---------------------------------------------------------------
    def fetch(self) -> Path:
        """The folder of NDJSON files of the export, brought up to date first. A server that
        refuses `_typeFilter` (Oracle Health: 422 on what it does not support) is asked again
        without it, and remembered: the export is then wider, and the rules reduce it."""
        try:
            return self._fetch()
        except _FiltersRefused as exc:
            log.warning("the server refuses _typeFilter (%s): exporting the types unfiltered", exc)
            remember_filters_refused(self.cache_root, self.http.base)
            self.request = replace(self.request, type_filters=())
            self.folder = self.cache_root / self.request.key(self.http.base)
            return self._fetch()

    def _fetch(self) -> Path:
        files, incoming, job_path = self.folder / "files", self.folder / "incoming", self.folder / "job.json"
        cached = bulk_cache.read_state(self.folder)
        if self.request.since is not None and cached is not None and self.reuse:
            log.info("reusing the finished bulk export since %s in %s", self.request.since, self.folder)
            self.notes = {"bulk": "reused", "since": self.request.since}
            return files
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        job = _state(job_path)
        if job:
            job.setdefault("kind", "full")  # a job an older release started was a full export
            job.setdefault("since", None)
        else:
            full = (
                not self.reuse
                or self.request.since is not None
                or bulk_cache.full_due(cached, self.full_refresh_days, self.clock())
            )
            job = {
                "kind": "full" if full else "since",
                "since": None if full or cached is None else cached.transaction_time,
            }
            if incoming.exists():
                shutil.rmtree(incoming)  # a half-downloaded export that was given up
        incoming.mkdir(exist_ok=True, mode=0o700)
        if "manifest" not in job:
            if "status_url" not in job:
                job["status_url"] = self._kick_off(job["since"] or self.request.since)
                job_path.write_bytes(orjson.dumps(job))
            job["manifest"] = self._poll(job["status_url"])
            job_path.write_bytes(orjson.dumps(job))
        manifest = job["manifest"]
        self._download(manifest, incoming)
        deleted = self._deleted(manifest)
        if any(e.patient_id == ALL_PATIENTS for e in self.errors):
            # not complete: the next run downloads what is missing instead of reusing a gap
            log.warning("bulk export incomplete: %d files could not be read", len(self.errors))
            self.notes = {"bulk": job["kind"], "since": job["since"], "complete": False}
            if job["kind"] == "since" and files.is_dir():
                return files  # yesterday's data, with every patient's affected data unknown
            return incoming
        received = sum(bulk_cache.count_lines(p) for p in incoming.glob("*.ndjson"))
        transaction_time = str(manifest.get("transactionTime") or "")
        if job["kind"] == "full":
            bulk_cache.replace(files, incoming)
            bulk_cache.write_state(self.folder, bulk_cache.CacheState(transaction_time, self.clock()))
            log.info("bulk export (full): %d resources in the cache", received)
            self.notes = {"bulk": "full", "resources": received}
        else:
            assert cached is not None
            stamp = re.sub(r"[^0-9]", "", transaction_time)[:14] or str(int(self.clock()))
            merged, removed = bulk_cache.merge(files, incoming, deleted, stamp)
            bulk_cache.write_state(self.folder, bulk_cache.CacheState(transaction_time, cached.full_at))
            log.info(
                "bulk export (changes since %s): %d resources changed, %d deleted, merged into the cache",
                job["since"],
                merged,
                removed,
            )
            self.notes = {"bulk": "since", "since": job["since"], "resources": merged, "deleted": removed}
        self._fetch_missing_medications(files)
        job_path.unlink()
        try:  # the server may free the files now; a failure here loses nothing
            self.http.request("DELETE", job["status_url"], expect=(200, 202, 204, 404))
        except FetchError as exc:
            log.info("could not delete the finished export job: %s", exc)
        log.info("bulk export: %d requests in this run", self.http.requests)
        return files

    def _deleted(self, manifest: dict[str, Any]) -> set[tuple[str, str]]:
        """The resources a Bulk 2.0 manifest lists as deleted since `_since`."""
        token = manifest.get("requiresAccessToken") is True
        found: set[tuple[str, str]] = set()
        listed = manifest.get("deleted")
        for entry in listed if isinstance(listed, list) else []:
            _, url = _output(entry)
            if url is None:
                continue
            try:
                body = self.http.request("GET", url, headers={"Accept": NDJSON}, auth=token).content
            except FetchError as exc:
                self.errors.append(RunError(url, f"deleted-resources file could not be read: {exc}", ALL_PATIENTS))
                continue
            found |= bulk_cache.deleted_keys(iter(body.splitlines()))
        return found

    def _kick_off(self, since: str | None) -> str:
        path = f"{self.request.level}/$export" if self.request.level else "$export"
        params: list[tuple[str, str]] = [("_type", ",".join(self.request.types))] if self.request.types else []
        params += [("_typeFilter", f) for f in self.request.type_filters]
        if since:
            params.append(("_since", since))
        url = self.http.url(path)
        waited = 0.0
        while True:
            try:
                response = self.http.request(
                    "GET",
                    url,
                    params=params,
                    headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
                    expect=(202, 429),
                )
            except FetchError as exc:
                if self.request.type_filters and refused_status(str(exc)):
                    raise _FiltersRefused(str(exc)) from exc
                raise
            if response.status_code == 202:
                break
            # 429 after the HTTP layer's own retries: Oracle Health answers so while another
            # export of this client runs, which may take hours. Wait for it, up to max_wait.
            asked = _retry_after(response.headers.get("Retry-After"), 60.0)
            pause = max(1.0, min(asked, self.http.settings.max_retry_after))
            if waited + pause > self.max_wait:
                raise FetchError(url, f"bulk export kick-off still refused after {waited:.0f} s: HTTP 429")
            log.info("bulk export kick-off answered 429 (another export running?): trying again in %.0f s", pause)
            self.sleep(pause)
            waited += pause
        status = response.headers.get("Content-Location")
        if not status:
            raise FetchError(url, "bulk export kick-off answered 202 without Content-Location")
        log.info(
            "bulk export started (%d types, %d filters%s)",
            len(self.request.types),
            len(self.request.type_filters),
            f", changes since {since}" if since else ", everything",
        )
        return self.http.url(status)

    def _poll(self, status_url: str) -> dict[str, Any]:
        waited, delay, broken = 0.0, 1.0, 0
        while True:
            response = self.http.request("GET", status_url, expect=(200, 202))
            if response.status_code == 200:
                try:
                    manifest = json_body(response)
                except FetchError as exc:
                    broken += 1  # cut short in transit: ask again, a few times
                    if broken > self.http.settings.retries:
                        raise FetchError(status_url, f"bulk export manifest: {exc}") from exc
                    self.http.pause(broken)
                    continue
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output", []), list):
                    raise FetchError(status_url, "bulk export manifest is not an object with an `output` list")
                log.info("bulk export ready: %d files", len(manifest.get("output") or []))
                return manifest
            pause = min(_retry_after(response.headers.get("Retry-After"), delay), self.http.settings.max_retry_after)
            log.info(
                "bulk export in progress (%s); next check in %.0f s",
                response.headers.get("X-Progress", "no progress given"),
                pause,
            )
            if waited + pause > self.max_wait:
                raise FetchError(status_url, f"bulk export not finished after {waited:.0f} s")
            self.sleep(pause)
            waited += pause
            delay = min(delay * 2, 60.0)

    # -- downloads ----------------------------------------------------------------------
    def _download(self, manifest: dict[str, Any], files: Path) -> None:
        token = manifest.get("requiresAccessToken") is True
        outputs = manifest.get("output") or []
        failed_before = len(self.errors)
        for index, output in enumerate(outputs):
            rtype, url = _output(output)
            if url is None:
                where = f"{self.http.base} $export manifest output[{index}]"
                self.errors.append(RunError(where, "manifest entry without a file url", ALL_PATIENTS, rtype))
                continue
            target = files / f"{_safe_name(rtype)}.{index:04d}.ndjson"
            if target.exists():
                continue  # finished in an earlier, interrupted run
            try:
                self._download_one(url, target, token)
            except FetchError as exc:
                self.errors.append(RunError(url, f"bulk file download failed: {exc}", ALL_PATIENTS, rtype))
        if outputs and len(self.errors) - failed_before == len(outputs):
            first = self.errors[failed_before]
            raise SourceError(f"could not read the bulk export at all: every file failed ({first.message})")
        errors = manifest.get("error")
        for output in errors if isinstance(errors, list) else []:
            _, url = _output(output)
            if url is None:
                self.errors.append(RunError(f"{self.http.base} $export manifest", "an error file without a url"))
                continue
            try:
                body = self.http.request("GET", url, headers={"Accept": NDJSON}, auth=token).content
            except FetchError as exc:
                self.errors.append(RunError(url, f"bulk error file could not be read: {exc}"))
                continue
            for line in body.splitlines():
                if line.strip():
                    try:
                        text = operation_outcome_text(jsontext.loads(line)) or line.decode("utf-8", "replace")[:300]
                    except jsontext.JSONTextError:
                        text = line.decode("utf-8", "replace")[:300]
                    # the server could not export something, and does not say whose: every
                    # patient's results that need data become unknown (contract §4)
                    self.errors.append(RunError(url, f"server reported: {text}", ALL_PATIENTS))

    def _download_one(self, url: str, target: Path, token: bool) -> None:
        """Download to `.part`, continuing a half-written file with a Range request (also
        after a connection that breaks off mid-file, a few times)."""
        part = target.with_suffix(".part")
        for attempt in range(self.http.settings.retries + 1):
            have = part.stat().st_size if part.exists() else 0
            headers = {"Accept": NDJSON} | ({"Range": f"bytes={have}-"} if have else {})
            # the token goes only where the manifest says it is needed (requiresAccessToken)
            response = self.http.request("GET", url, headers=headers, stream=True, expect=(200, 206), auth=token)
            mode = "ab" if response.status_code == 206 else "wb"
            try:
                with part.open(mode) as handle:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        handle.write(chunk)
            except requests.RequestException as exc:
                log.warning("download of %s broke off (%s); continuing", url, type(exc).__name__)
                if attempt == self.http.settings.retries:
                    raise FetchError(url, f"download broke off: {type(exc).__name__}") from exc
                continue
            part.replace(target)
            return

    def _fetch_missing_medications(self, files: Path) -> None:
        """Patient-level exports leave out Medications (not in the patient compartment): fetch
        the ones the statements and requests point at, by id."""
        if not self.fetch_medications:
            return  # the server offers no Medication: records keep their codes only
        referenced = medications.Referenced()
        for path in files.glob("*.ndjson"):
            if not path.name.startswith((*MEDICATION_TYPES, "Medication.")):
                continue
            for line in path.read_bytes().splitlines():
                try:
                    resource = jsontext.loads(line)
                except jsontext.JSONTextError:
                    continue  # the file reader reports the bad line itself
                if isinstance(resource, dict):
                    referenced.see(resource)
        if not referenced.missing():
            return
        lines = []
        for item in medications.fetch_medications(self.http, referenced.missing()):
            if isinstance(item, RunError):
                self.errors.append(item)
            else:
                lines.append(jsontext.dumps(item.resource))
        (files / "Medication.referenced.ndjson").write_text("".join(f"{line}\n" for line in lines))
