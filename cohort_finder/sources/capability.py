"""What a FHIR server says it offers, from its CapabilityStatement: resource types, their search
parameters, and whether it exports (contract §3: a type it does not offer is absent data)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .http import FetchError, FhirHttp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Capability:
    """What a server's CapabilityStatement says it offers (contract §3: a resource type it does
    not offer is absent data, not an error)."""

    types: frozenset[str] | None  # None: the statement could not be read, or lists no resources
    export: bool
    search_params: Mapping[str, frozenset[str]] = field(default_factory=dict)  # type -> its search parameters

    def offers(self, resource_type: str) -> bool:
        return self.types is None or resource_type in self.types

    def searchable(self, resource_type: str, param: str) -> bool:
        return param in self.search_params.get(resource_type, ())


def read_capability(http: FhirHttp) -> Capability:
    try:
        statement = http.get_json(http.url("metadata"))
    except FetchError as exc:
        log.warning("could not read the CapabilityStatement (%s): using REST search", exc)
        return Capability(None, False)
    params: dict[str, frozenset[str]] = {}
    export = False
    for rest in _objects(statement.get("rest")):
        operations = _objects(rest.get("operation"))
        for resource in _objects(rest.get("resource")):
            operations += _objects(resource.get("operation"))
            if isinstance(resource.get("type"), str):
                names = {p.get("name") for p in _objects(resource.get("searchParam"))}
                params[resource["type"]] = frozenset(n for n in names if isinstance(n, str))
        export = export or any(op.get("name") == "export" for op in operations)
    return Capability(frozenset(params) or None, export, params)


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list a server sent (anything else in it, or instead of it, is not)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
