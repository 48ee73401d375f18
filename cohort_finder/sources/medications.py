"""Medications that medication records point at but a read did not bring: a patient-level
export leaves them out (they are in no patient's compartment), and a server that lists no
`_include` for MedicationRequest answers without them. They are read by id, 100 to a search,
asking for no more than 100 a page (servers refuse a `_count` over their cap: ehr-profiles.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import FetchError
from ..facts import MEDICATION_TYPES
from ..model import RunError
from ..references import target_id
from .base import BrokenLinks, Item, next_link, unpack
from .http import FhirHttp, full_url

IDS_PER_SEARCH = 100


class Referenced:
    """The Medications that the records seen so far reference, and those seen themselves."""

    def __init__(self) -> None:
        self.wanted: set[str] = set()
        self.have: set[str] = set()

    def see(self, resource: dict[str, Any]) -> None:
        kind = resource.get("resourceType")
        if kind in MEDICATION_TYPES:
            ref = resource.get("medicationReference")
            medication = target_id(ref.get("reference") if isinstance(ref, dict) else None, "Medication")
            if medication is not None:
                self.wanted.add(medication)
        elif kind == "Medication" and isinstance(resource.get("id"), str):
            self.have.add(resource["id"])

    def missing(self) -> set[str]:
        return self.wanted - self.have


def fetch_medications(http: FhirHttp, ids: Iterable[str]) -> Iterator[Item | RunError]:
    """The Medications of these ids, read in searches by `_id`; a page that fails is an error
    whose patients cannot be told (the rules that needed the medication become unknown only
    through the records that reference it: contract §4)."""
    missing = sorted(set(ids))
    for start in range(0, len(missing), IDS_PER_SEARCH):
        url: str | None = http.url("Medication")
        params: dict[str, str] | None = {"_id": ",".join(missing[start : start + IDS_PER_SEARCH]), "_count": "100"}
        while url is not None:
            try:
                bundle = http.get_json(url, params=params)
                link = next_link(bundle)
            except (FetchError, BrokenLinks) as exc:
                where = exc.url if isinstance(exc, FetchError) else full_url(url, params)
                yield RunError(where, f"referenced Medications could not be fetched: {exc}")
                break
            yield from unpack(bundle, full_url(url, params))
            url, params = (http.url(link) if link else None), None
