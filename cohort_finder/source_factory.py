"""Turn `--source` into a source: a folder, or a FHIR server read by REST search or Bulk export."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from .criteria import Trial
from .errors import UsageError
from .facts import MEDICATION_TYPES
from .search_plan import Search, plan
from .settings import ServerSettings
from .sources.auth import auth_from_environment
from .sources.base import Source
from .sources.bulk import BulkRequest, BulkSource
from .sources.crawl import CrawlSource, patients_from_file, patients_of_group
from .sources.files import FileSource
from .sources.http import FetchError, FhirHttp
from .sources.rest import NEEDS_A_LIST, RestSource
from .store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerOptions:
    settings: ServerSettings
    bulk: bool | None = None  # None: Bulk when the server's CapabilityStatement offers $export
    group: str | None = None  # Group/[id]/$export instead of Patient/$export
    since: str | None = None
    cache: Path = Path.home() / ".cache" / "cohort-finder" / "bulk"
    refresh: bool = False  # export everything now, whatever the cache holds
    full_refresh_days: float = 7.0  # a nightly export asks for changes only, and for everything this often
    patients_file: Path | None = None  # REST: the patients to search one by one if population searches are refused
    crawl: bool = False  # REST: search patient by patient from the start
    concurrency: int = 4  # a crawl's patients at a time
    rate: float = 10.0  # a crawl's requests per second (0: no limit)


def is_server(source: str) -> bool:
    return source.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class Capability:
    """What a server's CapabilityStatement says it offers (contract §3: a resource type it does
    not offer is absent data, not an error)."""

    types: frozenset[str] | None  # None: the statement could not be read, or lists no resources
    export: bool

    def offers(self, resource_type: str) -> bool:
        return self.types is None or resource_type in self.types


def read_capability(http: FhirHttp) -> Capability:
    try:
        statement = http.get_json(http.url("metadata"))
    except FetchError as exc:
        log.warning("could not read the CapabilityStatement (%s): using REST search", exc)
        return Capability(None, False)
    types: set[str] = set()
    export = False
    for rest in _objects(statement.get("rest")):
        operations = _objects(rest.get("operation"))
        for resource in _objects(rest.get("resource")):
            operations += _objects(resource.get("operation"))
            if isinstance(resource.get("type"), str):
                types.add(resource["type"])
        export = export or any(op.get("name") == "export" for op in operations)
    return Capability(frozenset(types) or None, export)


def offers_export(http: FhirHttp) -> bool:
    return read_capability(http).export


def _offered(searches: list[Search], capability: Capability) -> list[Search]:
    """The searches of the types the server offers; the others are named in the log."""
    absent = sorted({s.resource_type for s in searches if not capability.offers(s.resource_type)})
    if absent:
        log.info("the server offers no %s: read as absent data (contract §3)", ", ".join(absent))
    return [s for s in searches if capability.offers(s.resource_type)]


def _rest(http: FhirHttp, searches: list[Search], options: ServerOptions) -> Source:
    """Population searches, or, for a server that refuses them, a crawl of the patient list
    (--patients-file, or --group's members)."""
    listed = options.patients_file is not None or options.group is not None

    def crawl() -> CrawlSource:
        if options.patients_file is not None:
            ids = patients_from_file(options.patients_file)
        else:
            assert options.group is not None
            ids = patients_of_group(http, options.group)
        return CrawlSource(http, searches, ids, options.cache, concurrency=options.concurrency, rate=options.rate)

    if options.crawl:
        if not listed:
            raise UsageError("--crawl needs the patients: " + NEEDS_A_LIST)
        return crawl()
    return RestSource(http, searches, crawl if listed else None)


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list a server sent (anything else in it, or instead of it, is not)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def open_source(
    source: str, trial: Trial, as_of: date, options: ServerOptions | None, ignore: Sequence[str] = ()
) -> Source:
    if not is_server(source):
        return FileSource(Path(source), ignore)
    if options is None:
        raise UsageError("a server source needs server settings")
    http = FhirHttp(source, settings=options.settings.http)
    searches = plan(trial, as_of, options.settings.page_size)
    types = {"Patient", *(s.resource_type for s in searches)}
    if any(s.resource_type in MEDICATION_TYPES for s in searches):
        types.add("Medication")
    http.auth = auth_from_environment(http.session, http.base, options.settings.environ, types)
    if options.bulk is None:
        # (with --rest or --bulk the statement is not read yet: issue 11 plans every request
        # from it)
        capability = read_capability(http)
        searches, bulk = _offered(searches, capability), capability.export
    else:
        bulk = options.bulk
    if not bulk:
        return _rest(http, searches, options)
    widen = getattr(http.auth, "widen", None)
    if widen is not None:
        widen()  # an export's status and file URLs belong to no one resource type
    level = f"Group/{options.group}" if options.group else "Patient"
    request = BulkRequest.from_searches(searches, level, options.since)
    return BulkSource(
        http, request, options.cache, reuse=not options.refresh, full_refresh_days=options.full_refresh_days
    )


PUBLISHED_TYPES = ("ResearchStudy", "Group", "ResearchSubject")


def publish_cohort(source: str, options: ServerOptions, store: Store, trial: Trial) -> int:
    """Contract §8: write the trial's latest complete run back to the server it read."""
    from .report.fhir_out import cohort_from_store, publish

    http = FhirHttp(source, settings=options.settings.http)
    environ = dict(options.settings.environ)
    # writing needs write access to the three types (v1 scopes: every SMART server takes them)
    environ.setdefault("COHORT_FINDER_SMART_SCOPE", " ".join(f"system/{t}.write" for t in PUBLISHED_TYPES))
    http.auth = auth_from_environment(http.session, http.base, environ, PUBLISHED_TYPES)
    return publish(http, cohort_from_store(store.con, trial.id, trial.title))
