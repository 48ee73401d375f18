"""What a FHIR server says it offers, from its CapabilityStatement, and the trial's searches
fitted to it: a client must never send what the server does not list, because an EHR that
reads `Prefer: handling=strict` refuses the whole request (docs/ehr-profiles.md).

- A resource type the server does not list is absent data (contract §3): its searches are
  dropped and the run names the type.
- A search parameter the server does not list for a type is left out of that type's searches.
  The search is then wider (Conditions of the patient, not only the trial's codes), never
  narrower: the rules filter precisely afterwards, so nothing is lost but bandwidth.
- `_include` is sent only where the type's `searchInclude` lists it; the referenced
  Medications are then read by id afterwards (sources/medications.py).
- Bulk export levels come from the operations: `export` at the system, Patient or Group level,
  or by the Bulk Data IG's names `patient-export` and `group-export` (Epic's statement).

A statement that cannot be read constrains nothing: the client sends its full plan, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import FetchError
from ..facts import MEDICATION_TYPES
from ..search_plan import Search
from .http import FhirHttp

log = logging.getLogger(__name__)

# Parameters every search takes (FHIR R4 "Search result parameters"): never listed per type.
RESULT_PARAMS = frozenset({"_count", "_sort", "_total", "_summary", "_elements"})
SYSTEM, PATIENT, GROUP = "system", "patient", "group"


@dataclass(frozen=True, slots=True)
class Capability:
    """What a server's CapabilityStatement says it offers. `known` is False when it could not
    be read: then everything is assumed offered."""

    types: frozenset[str] | None  # None: the statement could not be read, or lists no resources
    exports: frozenset[str] = frozenset()  # SYSTEM, PATIENT, GROUP
    search_params: Mapping[str, frozenset[str]] = field(default_factory=dict)  # type -> its search parameters
    includes: Mapping[str, frozenset[str]] = field(default_factory=dict)  # type -> its searchInclude values

    @property
    def known(self) -> bool:
        return self.types is not None

    @property
    def export(self) -> bool:
        return bool(self.exports)

    def offers_export(self, level: str) -> bool:
        return level in self.exports

    def offers(self, resource_type: str) -> bool:
        return self.types is None or resource_type in self.types

    def searchable(self, resource_type: str, param: str) -> bool:
        """Listed: only what the statement names (for write-back's conditional updates)."""
        return param in self.search_params.get(resource_type, ())

    def allows(self, resource_type: str, param: str, value: str = "") -> bool:
        """May a search of this type send this parameter? Yes where the statement does not say
        (unread, or the type lists no parameters at all)."""
        name = param.split(":", 1)[0]
        if name in RESULT_PARAMS:
            return True
        if name == "_include":
            listed = self.includes.get(resource_type)
            if listed is None:  # no searchInclude: unsaid only if the type lists nothing at all
                return resource_type not in self.search_params
            return value in listed or "*" in listed
        listed = self.search_params.get(resource_type)
        return listed is None or name in listed

    def patient_param(self, resource_type: str) -> str:
        """The parameter that restricts a type's search to one patient (`patient`, else `subject`)."""
        if resource_type == "Patient":
            return "_id"
        if not self.allows(resource_type, "patient") and self.allows(resource_type, "subject"):
            return "subject"
        return "patient"


def read_capability(http: FhirHttp) -> Capability:
    try:
        statement = http.get_json(http.url("metadata"))
    except FetchError as exc:
        log.warning("could not read the CapabilityStatement (%s): sending the full search plan", exc)
        return Capability(None)
    return capability_of(statement)


def capability_of(statement: dict[str, Any]) -> Capability:
    """A CapabilityStatement read: any shape a server sends, without a crash."""
    params: dict[str, frozenset[str]] = {}
    includes: dict[str, frozenset[str]] = {}
    types: set[str] = set()
    exports: set[str] = set()
    for rest in _objects(statement.get("rest")):
        if rest.get("mode", "server") != "server":
            continue
        exports |= _export_levels(_objects(rest.get("operation")), None)
        for resource in _objects(rest.get("resource")):
            rtype = resource.get("type")
            if not isinstance(rtype, str):
                continue
            types.add(rtype)
            exports |= _export_levels(_objects(resource.get("operation")), rtype)
            if isinstance(resource.get("searchParam"), list):
                params[rtype] = _strings(p.get("name") for p in _objects(resource["searchParam"]))
            if isinstance(resource.get("searchInclude"), list):
                includes[rtype] = _strings(resource["searchInclude"])
    return Capability(frozenset(types) or None, frozenset(exports), params, includes)


def _export_levels(operations: list[dict[str, Any]], rtype: str | None) -> set[str]:
    """The export levels these operations offer, at the system (rtype None) or a type's level."""
    levels = set()
    for op in operations:
        names = {str(op.get("name") or "").lower(), str(op.get("definition") or "").rsplit("/", 1)[-1].lower()}
        names.discard("")
        if names & {"patient-export"}:
            levels.add(PATIENT)
        if names & {"group-export"}:
            levels.add(GROUP)
        if "export" in names:
            levels.add({None: SYSTEM, "Patient": PATIENT, "Group": GROUP}.get(rtype, SYSTEM))
    return levels


@dataclass(frozen=True, slots=True)
class Fitted:
    """The searches the server accepts, the types it lacks, and whether `_include` of the
    medication types was left out (so their Medications are read by id afterwards)."""

    searches: list[Search]
    lacks: tuple[str, ...]
    without_include: bool


def fit(searches: list[Search], capability: Capability) -> Fitted:
    """The plan cut down to what the server lists (see the module's docstring)."""
    wanted = {s.resource_type for s in searches}
    if wanted & set(MEDICATION_TYPES):
        wanted.add("Medication")  # what medication records reference: read by include or by id
    lacks = tuple(sorted(t for t in wanted if not capability.offers(t)))
    if lacks:
        log.info("the server offers no %s: read as absent data (contract §3)", ", ".join(lacks))
    fitted: list[Search] = []
    dropped: dict[tuple[str, str], None] = {}
    without_include = False
    for search in searches:
        if not capability.offers(search.resource_type):
            continue
        kept = []
        for name, value in search.params:
            if capability.allows(search.resource_type, name, value):
                kept.append((name, value))
                continue
            dropped[(search.resource_type, name)] = None
            without_include |= name == "_include"
        narrowed = Search(search.resource_type, tuple(kept))
        if narrowed not in fitted:  # two code chunks with `code` left out are one search
            fitted.append(narrowed)
    for rtype, name in dropped:
        log.info("the server lists no %s search on %s: searching %s without it", name, rtype, rtype)
    return Fitted(fitted, lacks, without_include and capability.offers("Medication"))


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list a server sent (anything else in it, or instead of it, is not)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _strings(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(v for v in values if isinstance(v, str))
