"""What every source yields: FHIR resources with where they came from, or errors.

A source knows where FHIR JSON comes from (files, a REST server, a Bulk export) and nothing
about trials. Bundles are opened here, once, for every source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..model import RunError


@dataclass(frozen=True, slots=True)
class Item:
    resource: dict[str, Any]
    origin: str  # file:line, file#entry[i], or a URL: for errors
    full_url: str | None = None  # Bundle.entry.fullUrl, for urn:uuid references


class Source(Protocol):
    """Anything that yields resources. `describe()` is what `candidates.json` calls the source."""

    def describe(self) -> str: ...

    def read(self) -> Iterator[Item | RunError]: ...


def unpack(resource: dict[str, Any], origin: str, full_url: str | None = None) -> Iterator[Item | RunError]:
    """Yield the resource, or the entries of a Bundle (any type), recursively."""
    if resource.get("resourceType") != "Bundle":
        yield Item(resource, origin, full_url)
        return
    entries = resource.get("entry") or []
    if not isinstance(entries, list):
        yield RunError(origin, "Bundle.entry is not a list")
        return
    for index, entry in enumerate(entries):
        where = f"{origin}#entry[{index}]"
        if not isinstance(entry, dict):
            yield RunError(where, "Bundle entry is not an object")
            continue
        inner = entry.get("resource")
        if inner is None:
            # a transaction's DELETE or a search's outcome-only entry: nothing to read
            continue
        if not isinstance(inner, dict) or not isinstance(inner.get("resourceType"), str):
            yield RunError(where, "Bundle entry's resource has no resourceType")
            continue
        url = entry.get("fullUrl")
        yield from unpack(inner, where, url if isinstance(url, str) else None)
