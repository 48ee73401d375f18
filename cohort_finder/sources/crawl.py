"""A per-patient crawl: the trial's searches run once per patient of a list, for servers that
refuse searches across all patients (Epic, Oracle Health: docs/ehr-profiles.md).

The list comes from a file (one id a line) or a Group's members. Each patient's searches are
the population plan's, restricted with `patient=` (the Patient itself by `_id`), so codes and
dates still narrow them. Patients are crawled `concurrency` at a time under a rate limit, and
each finished patient is written to a state file at once: an interrupted crawl resumes without
asking again for the patients it finished. A page that fails is an error of that patient only.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from ..errors import FetchError, SourceError, UsageError
from ..model import ALL_PATIENTS, RunError
from ..references import target_id
from ..search_plan import Search
from .base import Item
from .bulk import BulkRequest, BulkSource
from .capability import Capability
from .http import FhirHttp
from .medications import Referenced, fetch_medications
from .rest import COUNT_FALLBACK, RestSource

log = logging.getLogger(__name__)


def patients_from_file(path: Path) -> list[str]:
    """One id a line (`Patient/` prefix allowed); blank lines and `#` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the patients file {path}: {exc}") from None
    ids = [line.split("#", 1)[0].strip().removeprefix("Patient/") for line in lines]
    ids = list(dict.fromkeys(i for i in ids if i))
    if not ids:
        raise UsageError(f"{path} lists no patient ids")
    return ids


def patients_of_group(http: FhirHttp, group: str, cache_root: Path | None = None) -> list[str]:
    """The Patient members of Group/`group`. A read that lists none (EHRs may leave a large
    Group's `member` out) is followed, given a cache folder, by `Group/ID/$export?_type=Patient`,
    as smart-fetch does."""
    try:
        body = http.get_json(http.url(f"Group/{group}"))
    except FetchError as exc:
        raise SourceError(f"could not read Group/{group}: {exc}") from None
    ids = _members(body)
    if not ids and cache_root is not None:
        log.info("Group/%s lists no members: exporting its Patients to learn them", group)
        ids = _exported_patients(http, group, cache_root)
    if not ids:
        raise SourceError(f"Group/{group} lists no Patient members: give --patients-file FILE instead")
    return ids


def _exported_patients(http: FhirHttp, group: str, cache_root: Path) -> list[str]:
    export = BulkSource(
        http, BulkRequest(f"Group/{group}", ("Patient",)), cache_root / "members", reuse=False, fetch_medications=False
    )
    try:
        read = list(export.read())
    except FetchError as exc:
        raise SourceError(f"Group/{group} lists no members and its Patient export failed: {exc}") from None
    ids = [i.resource["id"] for i in read if isinstance(i, Item) and isinstance(i.resource.get("id"), str)]
    return list(dict.fromkeys(ids))


def _members(body: Any) -> list[str]:
    members = body.get("member") if isinstance(body, dict) else None
    ids = []
    for member in members if isinstance(members, list) else []:
        entity = member.get("entity") if isinstance(member, dict) else None
        ref = entity.get("reference") if isinstance(entity, dict) else None
        pid = target_id(ref, "Patient")
        if pid is not None:
            ids.append(pid)
    return list(dict.fromkeys(ids))


class _Throttle:
    """At most `rate` request starts a second, across threads (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


class _ThrottledHttp:
    """The FhirHttp a crawl's searches use: every page waits its turn under the rate limit."""

    def __init__(self, http: FhirHttp, throttle: _Throttle) -> None:
        self._http = http
        self._throttle = throttle

    def url(self, path: str) -> str:
        return self._http.url(path)

    def get_json(self, url: str, params: Any = None, headers: Any = None) -> dict[str, Any]:
        self._throttle.wait()
        return self._http.get_json(url, params=params, headers=headers)

    @property
    def requests(self) -> int:
        return self._http.requests


def per_patient(searches: list[Search], pid: str, capability: Capability | None = None) -> list[Search]:
    """The plan's searches for one patient: the Patient by `_id`, the others with `patient=`
    (`subject=Patient/ID` on a type whose statement lists only that). Pages of at most 200: one
    patient's search rarely fills that, and servers that cap `_count` refuse more (Oracle
    Health), which would cost a refused request per search."""
    out = []
    for s in searches:
        if s.resource_type == "Patient":
            out.append(Search("Patient", (("_id", pid),)))
            continue
        param = capability.patient_param(s.resource_type) if capability else "patient"
        value = f"Patient/{pid}" if param == "subject" else pid
        params = tuple((k, str(min(int(v), COUNT_FALLBACK)) if k == "_count" else v) for k, v in s.params)
        out.append(Search(s.resource_type, ((param, value), *params)))
    return out


class CrawlSource:
    lacks: tuple[str, ...] = ()  # resource types the server does not offer (contract §3)

    def __init__(
        self,
        http: FhirHttp,
        searches: list[Search],
        patients: list[str],
        state_root: Path,
        *,
        concurrency: int = 4,
        rate: float = 10.0,
        capability: Capability | None = None,
        medications_by_id: bool = False,
    ) -> None:
        self.http = http
        self.searches = searches
        self.patients = patients
        self.capability = capability
        self.medications_by_id = medications_by_id  # the server lists no _include: read them after
        self.concurrency = max(1, concurrency)
        self.throttle = _Throttle(rate)
        key = hashlib.sha256(orjson.dumps([http.base, [[s.resource_type, s.params] for s in searches], patients]))
        self.state = state_root / "crawl" / key.hexdigest()[:20]
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self.http.base

    def _crawl_one(self, pid: str) -> dict[str, Any]:
        rest = RestSource(_ThrottledHttp(self.http, self.throttle), per_patient(self.searches, pid, self.capability))  # type: ignore[arg-type]
        items, errors = [], []
        for search in rest.searches:
            for got in rest._search(search):
                if isinstance(got, Item):
                    items.append([got.origin, got.full_url, got.resource])
                else:
                    # a failed page of this patient's search is this patient's loss only
                    who = pid if got.patient_id in (None, ALL_PATIENTS) else got.patient_id
                    errors.append([got.source, got.message, who, got.resource_type])
        return {"patient": pid, "items": items, "errors": errors, "pages": rest.pages, "lacks": list(rest.lacks)}

    def _done(self) -> dict[str, dict[str, Any]]:
        path = self.state / "done.ndjson"
        if not path.exists():
            return {}
        done = {}
        for line in path.read_bytes().splitlines():
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut by the interruption: that patient is crawled again
            done[record["patient"]] = record
        return done

    def read(self) -> Iterator[Item | RunError]:
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        done = self._done()
        todo = [p for p in self.patients if p not in done]
        if done:
            log.info("crawl: resuming, %d of %d patients already done", len(done), len(self.patients))
        log.info("crawl: %d patients, %d at a time", len(todo), self.concurrency)
        started, finished = time.monotonic(), 0
        with open(self.state / "done.ndjson", "ab") as out, ThreadPoolExecutor(self.concurrency) as pool:
            for record in pool.map(self._crawl_one, todo):
                with self._lock:
                    out.write(orjson.dumps(record) + b"\n")
                    out.flush()
                done[record["patient"]] = record
                finished += 1
                if finished % 100 == 0 or finished == len(todo):
                    rate = finished / max(time.monotonic() - started, 1e-9)
                    log.info("crawl: %d/%d patients (%.1f/s)", finished, len(todo), rate)
        log.info(
            "crawl: %d patients done, %d requests in this run, %d pages in all",
            len(done),
            self.http.requests,
            sum(int(r.get("pages") or 0) for r in done.values()),
        )
        if not any(r.get("pages") for r in done.values()) and any(r["errors"] for r in done.values()):
            first = next(r["errors"][0] for r in done.values() if r["errors"])
            raise SourceError(f"could not read {self.http.base} at all: every search failed ({first[0]}: {first[1]})")
        self.lacks = tuple(sorted({*self.lacks, *(t for r in done.values() for t in r.get("lacks", ()))}))
        referenced = Referenced()
        for pid in self.patients:
            record = done[pid]
            for origin, full_url, resource in record["items"]:
                if self.medications_by_id:
                    referenced.see(resource)
                yield Item(resource, origin, full_url)
            for source, message, who, rtype in record["errors"]:
                yield RunError(source, message, who, rtype)
        if referenced.missing():
            yield from fetch_medications(self.http, referenced.missing())
        # a finished crawl starts afresh next time: the data may have changed since
        (self.state / "done.ndjson").unlink()
