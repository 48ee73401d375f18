"""FHIR REST search as a source: run each search, follow `next` links to the end.

A page that still fails after its retries becomes a run error naming its URL, marked as
affecting every patient for that resource type (we cannot know whose rows it held), so their
results that needed it become unknown (contract §4).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ..errors import SourceError
from ..model import ALL_PATIENTS, RunError
from ..search_plan import Search
from .base import Item, unpack
from .http import FetchError, FhirHttp, full_url

log = logging.getLogger(__name__)
STRICT = {"Prefer": "handling=strict"}  # a misspelt search parameter fails loudly, not silently ignored
MAX_PAGES = 1_000_000


class BrokenLinks(ValueError):
    """A page whose `link` is not a list: whether it has a next page cannot be told."""


def next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link")
    if links is not None and not isinstance(links, list):
        raise BrokenLinks("Bundle.link is not a list: whether more pages follow cannot be told")
    for link in links or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


class RestSource:
    def __init__(self, http: FhirHttp, searches: list[Search]) -> None:
        self.http = http
        self.searches = searches
        self.pages = 0
        self.resources = 0

    def describe(self) -> str:
        return self.http.base

    def read(self) -> Iterator[Item | RunError]:
        """Every search's resources and errors. When not one page could be read (the server
        unreachable, every request refused) the source could not be read at all: SourceError,
        so that nothing is written over the previous outputs (contract §4)."""
        first_failure: RunError | None = None
        for search in self.searches:
            for item in self._search(search):
                if first_failure is None and isinstance(item, RunError) and item.patient_id == ALL_PATIENTS:
                    first_failure = item
                yield item
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
        params: dict[str, str] | None = dict(search.params)
        seen: set[str] = set()
        while url is not None:
            try:
                bundle = self.http.get_json(url, params=params, headers=STRICT)
            except FetchError as exc:
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
