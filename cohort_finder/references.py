"""FHIR references, parsed in one place: what a reference points at (`Type/id`), whose patient
a resource names, and a resource's own identity where a Bundle gives it only as a fullUrl.

Every source, the catalogue and every engine read references through these functions, so that
an absolute URL, a `_history` version, a `urn:uuid:` or a contained `#ref` means the same
thing everywhere (the SQL engines' column expressions mirror `patient_reference`:
engines/schema.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

URN_UUID = "urn:uuid:"
PATIENT = "Patient/"


def ref_key(reference: str) -> str:
    """`Type/id` for a relative or absolute literal reference (a `_history/N` version dropped);
    `urn:` and `#ref` references unchanged."""
    if reference.startswith(("urn:", "#")):
        return reference
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def target_id(reference: Any, resource_type: str) -> str | None:
    """The id a literal reference points at when it points at this type, else None."""
    if not isinstance(reference, str):
        return None
    key = ref_key(reference)
    prefix = f"{resource_type}/"
    return key.removeprefix(prefix) if key.startswith(prefix) else None


def patient_reference(resource: dict[str, Any]) -> str | None:
    """The resource's patient link (`subject`, else `patient`), as a raw reference."""
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            return str(ref["reference"])
    return None


def own_id(resource: dict[str, Any], full_url: str | None) -> str | None:
    """A resource's id, or, for a transaction entry that carries its identity only in its
    fullUrl, the uuid of `urn:uuid:<uuid>`."""
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        return rid
    if full_url and full_url.startswith(URN_UUID):
        return full_url.removeprefix(URN_UUID)
    return None


def held_reference(ref: str) -> str:
    """A clinical row's patient link as the catalogue holds it: `Patient/x` as `x`, so that
    linking need not rebuild the row; anything else (urn:uuid, another type) as written, to
    be resolved, or reported, when linking."""
    key = ref if ref.startswith("urn:") else ref_key(ref)
    return key.removeprefix(PATIENT)


def resolved_key(ref: str, full_urls: Mapping[str, str]) -> str:
    """`Type/id` of a reference, a `urn:` one through the Bundles' fullUrls (as written when
    no Bundle gave it)."""
    return full_urls.get(ref, ref) if ref.startswith("urn:") else ref_key(ref)


def patient_id(key: str) -> str | None:
    """`x` for `Patient/x`; None for a key of another type."""
    return key.removeprefix(PATIENT) if key.startswith(PATIENT) else None
