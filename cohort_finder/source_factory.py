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
from .search_plan import plan
from .settings import ServerSettings
from .sources.auth import auth_from_environment
from .sources.base import Source
from .sources.bulk import BulkRequest, BulkSource, filters_refused
from .sources.capability import GROUP, PATIENT, SYSTEM, Capability, Fitted, fit, read_capability
from .sources.crawl import CrawlSource, patients_from_file, patients_of_group
from .sources.files import FileSource
from .sources.http import FhirHttp
from .sources.rest import NEEDS_A_LIST, RestSource
from .store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerOptions:
    settings: ServerSettings
    bulk: bool | None = None  # None: Bulk when the server's CapabilityStatement offers an export that fits
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


def _rest(http: FhirHttp, fitted: Fitted, capability: Capability, options: ServerOptions) -> Source:
    """Population searches, or, for a server that refuses them, a crawl of the patient list
    (--patients-file, or --group's members)."""
    listed = options.patients_file is not None or options.group is not None

    def crawl() -> CrawlSource:
        if options.patients_file is not None:
            ids = patients_from_file(options.patients_file)
        else:
            assert options.group is not None
            ids = patients_of_group(http, options.group, options.cache if capability.offers_export(GROUP) else None)
        source = CrawlSource(
            http,
            fitted.searches,
            ids,
            options.cache,
            concurrency=options.concurrency,
            rate=options.rate,
            capability=capability,
            medications_by_id=fitted.without_include,
        )
        source.lacks = fitted.lacks
        return source

    if options.crawl:
        if not listed:
            raise UsageError("--crawl needs the patients: " + NEEDS_A_LIST)
        return crawl()
    rest = RestSource(http, fitted.searches, crawl if listed else None, medications_by_id=fitted.without_include)
    rest.lacks = fitted.lacks
    return rest


def _export_level(capability: Capability, group: str | None) -> str | None:
    """Where to export from: Group/ID with --group, else Patient, else the whole system; None
    when the server offers no export that fits (a Group-only server without --group)."""
    if group is not None:
        return f"Group/{group}" if capability.offers_export(GROUP) else None
    if capability.offers_export(PATIENT):
        return "Patient"
    return "" if capability.offers_export(SYSTEM) else None


def _bulk(http: FhirHttp, fitted: Fitted, capability: Capability, level: str, options: ServerOptions) -> Source:
    widen = getattr(http.auth, "widen", None)
    if widen is not None:
        widen()  # an export's status and file URLs belong to no one resource type
    filters = not filters_refused(options.cache, http.base)
    request = BulkRequest.from_searches(
        fitted.searches, level, options.since, use_type_filters=filters, medication=capability.offers("Medication")
    )
    source = BulkSource(
        http,
        request,
        options.cache,
        reuse=not options.refresh,
        full_refresh_days=options.full_refresh_days,
        fetch_medications=capability.offers("Medication"),
    )
    source.lacks = fitted.lacks
    return source


def open_source(
    source: str, trial: Trial, as_of: date, options: ServerOptions | None, ignore: Sequence[str] = ()
) -> Source:
    """The source a run reads. For a server, the plan is fitted to its CapabilityStatement
    (sources/capability.py): types it lacks are absent data, parameters it does not list are
    not sent, and Bulk export is used where it offers an export that fits (`--bulk` requires
    one, `--rest` never uses one)."""
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
    capability = read_capability(http)
    fitted = fit(searches, capability)
    level = _export_level(capability, options.group) if capability.known else None
    if options.bulk is True:
        if level is None and capability.known:
            raise UsageError(_no_export(capability, options.group))
        level = level if level is not None else (f"Group/{options.group}" if options.group else "Patient")
        return _bulk(http, fitted, capability, level, options)
    if options.bulk is None and level is not None and not options.crawl and options.patients_file is None:
        return _bulk(http, fitted, capability, level, options)
    return _rest(http, fitted, capability, options)


def _no_export(capability: Capability, group: str | None) -> str:
    if not capability.export:
        return "the server's CapabilityStatement offers no Bulk $export: use --rest"
    if group is None and capability.exports == {GROUP}:
        return "the server exports only by Group: give --group ID (the Group the site built for this client)"
    return f"the server offers no Group-level $export for --group {group}: use --rest with --group"


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
