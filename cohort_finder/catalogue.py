"""Collect a source's resources into facts: one per resource, references resolved.

Contract §3: references resolve across the whole source (`Patient/1`, an absolute URL,
a Bundle's `urn:uuid` fullUrl, `#contained`); the same type and id met twice is one resource
(later `meta.lastUpdated` wins, else the one read last). So linking waits until every item
has been read: a Medication may come after the statement that uses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from .facts import (
    CLINICAL_TYPES,
    FactError,
    MedicationDef,
    clinical_fact,
    contained_medication,
    medication_def,
    patient_fact,
)
from .model import Fact, PatientFact, RunError
from .references import held_reference, own_id, patient_id, patient_reference, resolved_key
from .sources.base import Item

_VOID = "entered-in-error"


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def newer_or_same(new: str | None, old: str | None) -> bool:
    """Does a resource read now replace the one read before? Later lastUpdated wins; a tie
    (or a missing or unreadable lastUpdated on either side) goes to the one read last."""
    a, b = _instant(new), _instant(old)
    if a is None or b is None:
        return True
    try:
        return a >= b
    except TypeError:  # one naive, one aware: compare as written
        return (new or "") >= (old or "")


@dataclass(slots=True)
class Catalogue:
    patients: dict[str, PatientFact] = field(default_factory=dict)
    facts: dict[tuple[str, str], tuple[Fact, str]] = field(default_factory=dict)  # -> (fact, origin)
    medications: dict[str, MedicationDef] = field(default_factory=dict)
    full_urls: dict[str, str] = field(default_factory=dict)  # fullUrl -> Type/id
    other_refs: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (type,id) -> (ref, origin)
    errors: list[RunError] = field(default_factory=list)
    resources_read: int = 0
    unkept: set[tuple[str, str]] = field(default_factory=set)  # facts from add_unkept

    def add(self, item: Item | RunError) -> None:
        if isinstance(item, RunError):
            self.errors.append(item)
            return
        self.resources_read += 1
        try:
            self._add(item)
        except FactError as exc:
            rtype = item.resource.get("resourceType")
            rid = item.resource.get("id")
            named = f"{rtype}/{rid}" if isinstance(rid, str) and rid else str(rtype)
            ref = patient_reference(item.resource)
            self.errors.append(RunError(item.origin, f"{named} is not usable: {exc}", ref, str(rtype)))

    def _add(self, item: Item) -> None:
        res: dict[str, Any] = item.resource
        rtype = str(res["resourceType"])
        rid = own_id(res, item.full_url)  # a transaction entry may carry it only in fullUrl
        if rid is None:
            raise FactError("resource has no id")
        key = f"{rtype}/{rid}"
        if item.full_url:
            self.full_urls[item.full_url] = key
        if rtype == "Patient":
            person = patient_fact(res, rid)
            if person.problems:  # every rule may read the Patient: always an error
                self.errors.append(RunError(item.origin, f"{key} {'; '.join(person.problems)}", rid, "Patient"))
            old = self.patients.get(rid)
            if old is None or newer_or_same(person.last_updated, old.last_updated):
                self.patients[rid] = person
            return
        if rtype == "Medication":
            self.medications[key] = medication_def(res, key)
            return
        ref = patient_reference(res)
        if rtype not in CLINICAL_TYPES:
            if ref is not None:
                self.other_refs[(rtype, rid)] = (ref, item.origin)
            return
        if ref is None:
            raise FactError("has no subject reference to a Patient")
        fact = clinical_fact(res, rtype, rid, held_reference(ref))
        if fact.medication_ref and fact.medication_ref.startswith("#"):
            med = contained_medication(res, fact.medication_ref)
            if med is None:
                raise FactError(f"contained medication {fact.medication_ref} not found")
            fact = replace(fact, codings=med.codings, text=med.text, medication_ref=None)
        old_entry = self.facts.get((rtype, rid))
        if old_entry is None or newer_or_same(fact.last_updated, old_entry[0].last_updated):
            self.facts[(rtype, rid)] = (fact, item.origin)

    def add_unkept(self, rtype: str, rid: str, ref: str, origin: str) -> None:
        """A row an engine's reduce did not keep, by its patient reference alone, so that its
        orphan is reported as when every row is read: a clinical row as a fact with nothing
        but its reference (linking checks it like any other), any other as a reference to
        check. A row already held stays; among unkept ones the one read last wins."""
        key = (rtype, rid)
        if key in self.other_refs or (key in self.facts and key not in self.unkept):
            return
        if rtype in CLINICAL_TYPES:
            self.facts[key] = (Fact(rtype, rid, held_reference(ref)), origin)
            self.unkept.add(key)
        else:
            self.other_refs[key] = (ref, origin)

    def resolve_patient(self, ref: str) -> str | None:
        """Patient id for a reference (or an id already resolved), or None when it names
        something else or nothing."""
        if ref in self.patients:
            return ref
        return patient_id(resolved_key(ref, self.full_urls))

    def link(self) -> tuple[dict[str, list[Fact]], list[RunError]]:
        """Facts grouped by patient id, and the errors linking found (orphans, missing
        Medications). Void (`entered-in-error`) resources are dropped here, once."""
        by_patient: dict[str, list[Fact]] = {pid: [] for pid in self.patients}
        errors: list[RunError] = []
        for (rtype, rid), (fact, origin) in self.facts.items():
            pid = self.resolve_patient(fact.patient_id)
            if pid is None or pid not in self.patients:
                named = (
                    fact.patient_id
                    if "/" in fact.patient_id or ":" in fact.patient_id
                    else f"Patient/{fact.patient_id}"
                )
                errors.append(
                    RunError(origin, f"{rtype}/{rid} references {named}, which is not a Patient in the source")
                )
                continue
            if fact.status == _VOID:
                continue
            if fact.medication_ref:
                key = self.full_urls.get(fact.medication_ref, fact.medication_ref)
                med = self.medications.get(key)
                if med is None:
                    errors.append(
                        RunError(
                            origin,
                            f"{rtype}/{rid} references {fact.medication_ref}, which is not in the source",
                            pid,
                            rtype,
                        )
                    )
                    continue
                fact = replace(fact, codings=med.codings, text=med.text, medication_ref=None)
            if fact.patient_id != pid:
                fact = replace(fact, patient_id=pid)
            by_patient[pid].append(fact)
        for (rtype, rid), (ref, origin) in self.other_refs.items():
            if (rtype, rid) in self.facts:
                continue  # reported with the facts above
            key = resolved_key(ref, self.full_urls)
            unresolved = key.startswith("urn:")  # a fullUrl no resource in the source carries
            if unresolved or (key.startswith("Patient/") and key.removeprefix("Patient/") not in self.patients):
                errors.append(RunError(origin, f"{rtype}/{rid} references {ref}, which is not a Patient in the source"))
        return by_patient, errors


def collect(items: Iterable[Item | RunError]) -> Catalogue:
    catalogue = Catalogue()
    for item in items:
        catalogue.add(item)
    return catalogue
