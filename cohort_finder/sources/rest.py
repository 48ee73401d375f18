"""FHIR REST search as a source: run each search, follow `next` links to the end.

A page that still fails after its retries becomes a run error naming its URL, marked as
affecting every patient for that resource type (we cannot know whose rows it held), so their
results that needed it become unknown (contract §4).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

from ..errors import FetchError, SourceError
from ..model import ALL_PATIENTS, RunError
from ..search_plan import Search
from .base import BrokenLinks, Item, Source, next_link, unpack
from .http import FhirHttp, full_url
from .medications import Referenced, fetch_medications

log = logging.getLogger(__name__)
STRICT = {"Prefer": "handling=strict"}  # a misspelt search parameter fails loudly, not silently ignored
MAX_PAGES = 1_000_000


# A search the server answers with one of these refuses it (Epic: an Observation search needs
# `patient`; Oracle Health: 422), which a retry cannot change: such a server needs the crawl.
_REFUSED = re.compile(r"\bHTTP (400|403|405|422)\b")
NEEDS_A_LIST = "give --group ID (its members) or --patients-file FILE (one id a line) to search patient by patient"


_NOT_FOUND = re.compile(r"\bHTTP 404\b")


def refused_status(message: str) -> bool:
    """Does a failure's message show a refusal (400, 403, 405, 422) rather than a fault?"""
    return _REFUSED.search(message) is not None


def refused(error: RunError) -> bool:
    return error.patient_id == ALL_PATIENTS and refused_status(error.message)


COUNT_FALLBACK = 200  # the page size servers that cap _count accept (Oracle Health, HAPI's default)


def _smaller_count(params: dict[str, str] | None, exc: FetchError) -> str | None:
    """The _count to ask again with, when a first page was refused and asked for more than 200."""
    if not params or not refused_status(str(exc)):
        return None
    try:
        asked = int(params.get("_count", "0"))
    except ValueError:
        return None
    return str(COUNT_FALLBACK) if asked > COUNT_FALLBACK else None


class RestSource:
    """Population searches. `crawl`: what to read instead when the server refuses them (a
    per-patient crawl of a given list); without one, a refusal stops the run with a message
    that says to give a list."""

    lacks: tuple[str, ...] = ()  # resource types the server does not offer (contract §3)

    def __init__(
        self,
        http: FhirHttp,
        searches: list[Search],
        crawl: Callable[[], Source] | None = None,
        *,
        medications_by_id: bool = False,
    ) -> None:
        self.http = http
        self.searches = searches
        self.crawl = crawl
        self.medications_by_id = medications_by_id  # the server lists no _include: read them after
        self.pages = 0
        self.resources = 0
        self.count_cap: str | None = None  # a _count the server accepted after refusing a larger one

    def describe(self) -> str:
        return self.http.base

    def read(self) -> Iterator[Item | RunError]:
        """Every search's resources and errors. When not one page could be read (the server
        unreachable, every request refused) the source could not be read at all: SourceError,
        so that nothing is written over the previous outputs (contract §4)."""
        if self.crawl is None:
            yield from self._population()
            return
        # with a patient list to fall back on, nothing is passed on before it is clear that
        # the server answers population searches
        read = list(self._population())
        refusal = next((e for e in read if isinstance(e, RunError) and refused(e)), None)
        if refusal is None:
            yield from read
            return
        log.warning(
            "the server refuses searches across all patients (%s): searching patient by patient", refusal.message
        )
        crawl = self.crawl()
        yield from crawl.read()
        self.lacks = tuple(sorted({*self.lacks, *getattr(crawl, "lacks", ())}))

    def _population(self) -> Iterator[Item | RunError]:
        first_failure: RunError | None = None
        refusal: RunError | None = None
        referenced = Referenced()
        for search in self.searches:
            for item in self._search(search):
                if isinstance(item, RunError) and item.patient_id == ALL_PATIENTS:
                    first_failure = first_failure or item
                    refusal = refusal or (item if refused(item) else None)
                elif isinstance(item, Item) and self.medications_by_id:
                    referenced.see(item.resource)
                yield item
        if refusal is None and referenced.missing():
            yield from fetch_medications(self.http, referenced.missing())
        if refusal is not None and self.crawl is not None:
            return  # read() searches patient by patient instead
        if refusal is not None:
            raise SourceError(
                f"{self.http.base} refuses searches across all patients ({refusal.source}: {refusal.message}): "
                + NEEDS_A_LIST
            )
        if self.pages == 0 and first_failure is not None:
            raise SourceError(
                f"could not read {self.http.base} at all: every search failed ({first_failure.source}: "
                f"{first_failure.message})"
            )
        log.info(
            "REST: %d searches, %d pages, %d requests, %d resources",
            len(self.searches),
            self.pages,
            self.http.requests,
            self.resources,
        )

    def _search(self, search: Search) -> Iterator[Item | RunError]:
        url: str | None = self.http.url(search.resource_type)
        first = dict(search.params)
        if self.count_cap is not None and "_count" in first:
            first["_count"] = self.count_cap  # learnt from an earlier refusal: not asked again
        params: dict[str, str] | None = first
        seen: set[str] = set()
        while url is not None:
            try:
                bundle = self.http.get_json(url, params=params, headers=STRICT)
            except FetchError as exc:
                if params is not None and _NOT_FOUND.search(str(exc)):
                    # the type's search endpoint does not exist: the server does not offer the
                    # type, whatever its statement said (contract §3: absent data, not an error)
                    log.info("%s searches answer 404: read as absent data (contract §3)", search.resource_type)
                    self.lacks = tuple(sorted({*self.lacks, search.resource_type}))
                    return
                smaller = _smaller_count(params, exc)
                if smaller is not None and params is not None:
                    # a server that refuses a large _count (Oracle Health: at most 200 for
                    # Observation) states its limit only by refusing: ask again with less
                    log.info(
                        "%s refused _count=%s: asking with _count=%s", search.resource_type, params["_count"], smaller
                    )
                    params = {**(params or {}), "_count": smaller}
                    self.count_cap = smaller
                    continue
                yield RunError(exc.url, f"search page failed: {exc}", ALL_PATIENTS, search.resource_type)
                return
            page = full_url(url, params)
            if bundle.get("resourceType") != "Bundle":
                yield RunError(
                    page,
                    f"search answered {bundle.get('resourceType')}, not a Bundle",
                    ALL_PATIENTS,
                    search.resource_type,
                )
                return
            self.pages += 1
            for item in unpack(bundle, page):
                if isinstance(item, Item):
                    self.resources += 1
                elif item.patient_id is None:
                    # whose resource the page lost cannot be told: every patient's of this search
                    item = RunError(item.source, item.message, ALL_PATIENTS, search.resource_type)
                yield item
            seen.add(page)
            try:
                link = next_link(bundle)
            except BrokenLinks as exc:
                yield RunError(page, str(exc), ALL_PATIENTS, search.resource_type)
                return
            url, params = (self.http.url(link) if link else None), None  # a relative link resolves against the base
            if url is not None and (url in seen or len(seen) >= MAX_PAGES):
                yield RunError(
                    url,
                    "next link leads back to a page already read: stopped paging",
                    ALL_PATIENTS,
                    search.resource_type,
                )
                return
