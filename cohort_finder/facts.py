"""FHIR resource JSON -> flat fact rows. The only module that knows the shape of FHIR JSON.

A key whose value is null counts as absent everywhere: SQL engines hand over rows with every
declared column, null where the line had none.

Extraction is deliberately lenient about what it does not need and strict about what it
does: a field of the wrong type that a rule would read raises FactError, which the pipeline
records (contract §4) instead of guessing.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from .model import Coding, Fact, PatientFact

CLINICAL_TYPES = frozenset({"Condition", "Observation", "MedicationStatement", "MedicationRequest", "Procedure"})
MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest")  # the clinical types that name a medication
_SUPPLY_DAYS = {"d": 1, "day": 1, "days": 1, "wk": 7, "mo": 30, "a": 365}


class FactError(ValueError):
    """A resource that is not valid FHIR enough to use."""


@dataclass(frozen=True, slots=True)
class MedicationDef:
    """A Medication resource: what a MedicationStatement/Request may point at."""

    key: str  # Medication/id
    codings: tuple[Coding, ...]
    text: str | None


def ref_key(reference: str) -> str:
    """`Type/id` for a relative or absolute literal reference; urn: and #refs unchanged."""
    if reference.startswith(("urn:", "#")):
        return reference
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def patient_reference(resource: dict[str, Any]) -> str | None:
    """The resource's patient link (`subject`, else `patient`), as a raw reference."""
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            return str(ref["reference"])
    return None


def _date(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and value else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _obj(resource: dict[str, Any], key: str) -> dict[str, Any]:
    value = resource.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FactError(f"{key} must be an object")
    return value


def codings_of(concept: Any, where: str = "code") -> tuple[tuple[Coding, ...], str | None]:
    if concept is None:
        return (), None
    if not isinstance(concept, dict):
        raise FactError(f"{where} must be a CodeableConcept object")
    raw = concept.get("coding") or []
    if not isinstance(raw, list):
        raise FactError(f"{where}.coding must be a list")
    return _codings(tuple(_coding_key(c) for c in raw)), _str(concept.get("text"))


def _coding_key(c: Any) -> tuple[str, str, str | None] | None:
    if isinstance(c, dict) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
        return (c["system"], c["code"], _str(c.get("display")))
    return None  # no system or no code: never matches, so not kept


@functools.lru_cache(maxsize=65536)
def _codings(keys: tuple[tuple[str, str, str | None] | None, ...]) -> tuple[Coding, ...]:
    """Codings, built once per distinct list: a source repeats the same few thousand codes
    across millions of resources, and equal facts then share their (immutable) codings."""
    return tuple(Coding(system.strip(), code.strip(), display) for system, code, display in filter(None, keys))


def _first_code(concept: Any) -> str | None:
    if isinstance(concept, dict):
        for c in concept.get("coding") or []:
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                return str(c["code"])
    return None


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FactError(f"{where} must be a number, not {type(value).__name__}")
    return float(value)


def patient_fact(resource: dict[str, Any], rid: str) -> PatientFact:
    gender = _str(resource.get("gender"))
    deceased_b = resource.get("deceasedBoolean")
    names = resource.get("name")
    name = None
    if isinstance(names, list) and names and isinstance(names[0], dict):
        first = names[0]
        given = first.get("given")
        parts = [g for g in (given if isinstance(given, list) else []) if isinstance(g, str)] + (
            [first["family"]] if isinstance(first.get("family"), str) else []
        )
        name = " ".join(parts) or _str(first.get("text"))
    return PatientFact(
        id=rid,
        gender=gender,
        birth_date=_str(resource.get("birthDate")),
        deceased=deceased_b is True,
        deceased_date=_date(resource.get("deceasedDateTime")),
        last_updated=_str(_obj(resource, "meta").get("lastUpdated")),
        name=name,
    )


def medication_def(resource: dict[str, Any], key: str) -> MedicationDef:
    codings, text = codings_of(resource.get("code"))
    return MedicationDef(key, codings, text)


def clinical_fact(resource: dict[str, Any], rtype: str, rid: str, patient: str) -> Fact:
    """One row for a Condition, Observation, MedicationStatement/Request or Procedure."""
    common: dict[str, Any] = {
        "resource_type": rtype,
        "resource_id": rid,
        "patient_id": patient,
        "status": _str(resource.get("status")),
        "last_updated": _str(_obj(resource, "meta").get("lastUpdated")),
    }
    if rtype in ("MedicationStatement", "MedicationRequest"):
        return Fact(**common, **_medication_use(resource, rtype))
    codings, text = codings_of(resource.get("code"))
    common.update(codings=codings, text=text)
    if rtype == "Condition":
        onset_period = _obj(resource, "onsetPeriod")
        # abatementBoolean false says "not abated"; any other abatement[x] abates it
        abated = any(k.startswith("abatement") and v is not None and v is not False for k, v in resource.items())
        abatement = _date(resource.get("abatementDateTime")) or _date(_obj(resource, "abatementPeriod").get("start"))
        return Fact(
            **common,
            clinical_status=_first_code(resource.get("clinicalStatus")),
            verification_status=_first_code(resource.get("verificationStatus")),
            onset=_date(resource.get("onsetDateTime")) or _date(onset_period.get("start")),
            recorded=_date(resource.get("recordedDate")),
            abated=abated,
            abatement=abatement,
        )
    if rtype == "Observation":
        return Fact(**common, **_observation(resource))
    performed = _obj(resource, "performedPeriod")
    start = _date(resource.get("performedDateTime")) or _date(performed.get("start"))
    end = _date(resource.get("performedDateTime")) or _date(performed.get("end"))
    return Fact(**common, performed_start=start, performed_end=end)


def _observation(resource: dict[str, Any]) -> dict[str, Any]:
    ts = (
        _str(resource.get("effectiveDateTime"))
        or _str(_obj(resource, "effectivePeriod").get("start"))
        or _str(resource.get("issued"))
    )
    out: dict[str, Any] = {"effective": _date(ts), "effective_ts": ts}
    if resource.get("valueQuantity") is not None:
        qty = _obj(resource, "valueQuantity")
        out.update(
            value_kind="quantity",
            value=_number(qty.get("value"), "valueQuantity.value"),
            comparator=_str(qty.get("comparator")),
            unit_code=_str(qty.get("code")),
            unit_text=_str(qty.get("unit")),
        )
        for rng in resource.get("referenceRange") or []:
            high = rng.get("high") if isinstance(rng, dict) else None
            if isinstance(high, dict) and high.get("value") is not None:
                out.update(
                    ref_high=_number(high.get("value"), "referenceRange.high.value"),
                    ref_high_unit_code=_str(high.get("code")),
                    ref_high_unit_text=_str(high.get("unit")),
                )
                break
    elif resource.get("valueCodeableConcept") is not None:
        codings, _ = codings_of(resource.get("valueCodeableConcept"), "valueCodeableConcept")
        out.update(value_kind="codeable", value_codings=codings)
    elif any(k.startswith("value") and v is not None for k, v in resource.items()):
        out["value_kind"] = "other"
    return out


def _medication_use(resource: dict[str, Any], rtype: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    med_ref = _obj(resource, "medicationReference").get("reference")
    if isinstance(med_ref, str):
        out["medication_ref"] = med_ref if med_ref.startswith("#") else ref_key(med_ref)
    else:
        out["codings"], out["text"] = codings_of(resource.get("medicationCodeableConcept"), "medicationCodeableConcept")
    if rtype == "MedicationStatement":
        period = _obj(resource, "effectivePeriod")
        if period.get("start"):
            out.update(period_start=_date(period.get("start")), period_end=_date(period.get("end")))
        elif resource.get("effectiveDateTime"):
            day = _date(resource.get("effectiveDateTime"))
            out.update(period_start=day, period_end=day)
        return out
    out["intent"] = _str(resource.get("intent"))
    dispense = _obj(resource, "dispenseRequest")
    validity = dispense.get("validityPeriod")
    authored = _date(resource.get("authoredOn"))
    if isinstance(validity, dict) and validity.get("start"):
        out.update(period_start=_date(validity.get("start")), period_end=_date(validity.get("end")))
    elif authored:
        out.update(period_start=authored, period_end=authored)
        supply = dispense.get("expectedSupplyDuration")
        if isinstance(supply, dict) and supply.get("value") is not None:
            unit = supply.get("code") or supply.get("unit")
            per = _SUPPLY_DAYS.get(str(unit))
            if per is None:
                raise FactError(f"expectedSupplyDuration unit {unit!r} is not d, wk, mo or a")
            repeats = dispense.get("numberOfRepeatsAllowed") or 0
            if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
                raise FactError("numberOfRepeatsAllowed must be a whole number")
            value = _number(supply.get("value"), "expectedSupplyDuration.value") or 0.0
            days = math.ceil(value * per * (1 + repeats))
            if days >= 1:
                out.update(supply_days=days, period_end=None)
    return out


def contained_medication(resource: dict[str, Any], ref: str) -> MedicationDef | None:
    """Resolve a `#id` medicationReference against the resource's contained list."""
    for item in resource.get("contained") or []:
        if isinstance(item, dict) and item.get("resourceType") == "Medication" and f"#{item.get('id')}" == ref:
            return medication_def(item, ref)
    return None
