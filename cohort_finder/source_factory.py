"""Turn `--source` into a source: a folder, or a FHIR server read by REST search or Bulk export."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .criteria import Trial
from .errors import UsageError
from .facts import MEDICATION_TYPES
from .search_plan import Search, plan
from .settings import ServerSettings
from .sources.auth import auth_from_environment
from .sources.base import Source
from .sources.bulk import BulkRequest, BulkSource
from .sources.capability import Capability, read_capability
from .sources.crawl import CrawlSource, patients_from_file, patients_of_group
from .sources.files import FileSource
from .sources.http import FhirHttp
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
    return publish(http, cohort_from_store(store.con, trial.id, trial.title), read_capability(http))
