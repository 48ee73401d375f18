"""What every source yields: FHIR resources with where they came from, or errors.

A source knows where FHIR JSON comes from (files, a REST server, a Bulk export) and nothing
about trials. Bundles are opened here, once, for every source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..model import RunError
from ..references import patient_reference
from ..resource_types import RESOURCE_TYPES


@dataclass(frozen=True, slots=True)
class Item:
    resource: dict[str, Any]
    origin: str  # file:line, file#entry[i], or a URL: for errors
    full_url: str | None = None  # Bundle.entry.fullUrl, for urn:uuid references


class Source(Protocol):
    """Anything that yields resources. `describe()` is what `candidates.json` calls the source."""

    def describe(self) -> str: ...

    def read(self) -> Iterator[Item | RunError]: ...


def not_a_resource(data: Any) -> str | None:
    """Why `data` is not a FHIR resource (no resourceType, or one FHIR does not define), or
    None. The SQL engines send such lines to the Python reader (engines/schema.py `_bad`)."""
    kind = data.get("resourceType") if isinstance(data, dict) else None
    if not isinstance(kind, str):
        return "not a FHIR resource (no resourceType)"
    if kind not in RESOURCE_TYPES:
        shown = kind if len(kind) <= 40 else kind[:37] + "..."
        return f"not a FHIR resource (resourceType {shown!r} is not one FHIR defines)"
    return None


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


def unpack(resource: dict[str, Any], origin: str, full_url: str | None = None) -> Iterator[Item | RunError]:
    """Yield the resource, or the entries of a Bundle (any type), recursively."""
    if resource.get("resourceType") != "Bundle":
        yield Item(resource, origin, full_url)
        return
    entries = resource.get("entry")
    if entries is None:
        return  # an empty Bundle
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
        problem = not_a_resource(inner)
        if problem is not None:
            # the patient it names, if it shows one, has data missing (contract §4)
            named = patient_reference(inner) if isinstance(inner, dict) else None
            yield RunError(where, f"Bundle entry's resource is {problem}", named)
            continue
        url = entry.get("fullUrl")
        yield from unpack(inner, where, url if isinstance(url, str) else None)
