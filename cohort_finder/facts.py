"""FHIR resource JSON -> flat fact rows. The only module that knows the shape of FHIR JSON.

A key whose value is null counts as absent everywhere: SQL engines hand over rows with every
declared column, null where the line had none.

Extraction is lenient about what it does not need and strict about what it does, at two levels:
- what a resource is (its id, its patient, its codes) must be readable, or it raises FactError
  and the resource is an error of its place whatever the trial (contract §4);
- what its values are (dates, numbers, statuses, units) is checked as FHIR defines them, and
  what is wrong is kept in the row's `problems`: the pipeline makes that an error, and the
  rules that would have read the resource `unknown`, where some rule of the trial needs it.
  So every engine reports the same problems, whichever unused rows it never reads.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from .model import Coding, Fact, PatientFact
from .primitives import is_date, is_date_time
from .references import ref_key

CLINICAL_TYPES = frozenset(
    {"Condition", "Observation", "MedicationStatement", "MedicationRequest", "MedicationDispense", "Procedure"}
)
# the clinical types that name a medication (contract §3, revised 2026-11-29: EHRs such as Epic
# and Oracle Health serve no MedicationStatement; orders and dispenses are what they hold)
MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationDispense")
_DAYS_PER = {"d": 1, "day": 1, "days": 1, "wk": 7, "mo": 30, "a": 365}  # a duration's unit in days
CODE_SPACE = " "  # trimmed from a coding's system and code (fixed-width exports pad codes), by Python and SQL alike


class FactError(ValueError):
    """A resource that is not valid FHIR enough to use."""


@dataclass(frozen=True, slots=True)
class MedicationDef:
    """A Medication resource: what a MedicationStatement/Request may point at."""

    key: str  # Medication/id
    codings: tuple[Coding, ...]
    text: str | None


def _quoted(value: Any) -> str:
    """A value from the record as a problem names it: short, and in JSON's spelling."""
    text = repr(value) if isinstance(value, str) else _json_name(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() < 128 else "a very large integer"
    return "an object" if isinstance(value, dict) else "a list"


class _Values:
    """Reads one resource's value fields (dates, numbers, statuses, units), noting what is
    wrong with them instead of raising: such a resource is unusable only where a rule needs
    it (pipeline), so every engine reports the same, whichever rows it keeps."""

    __slots__ = ("problems",)

    def __init__(self) -> None:
        self.problems: list[str] = []

    def wrong(self, where: str, value: Any, expected: str) -> None:
        self.problems.append(f"is not usable ({where} is {_quoted(value)}, not {expected})")

    def obj(self, resource: dict[str, Any], key: str) -> dict[str, Any]:
        value = resource.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.wrong(key, value, "an object")
            return {}
        return value

    def text(self, value: Any, where: str) -> str | None:
        if value is None or isinstance(value, str):
            return value or None
        self.wrong(where, value, "a string")
        return None

    def day(self, value: Any, where: str) -> str | None:
        """The written date of a FHIR date or dateTime (its first 10 characters)."""
        text = self.text(value, where)
        if text is None:
            return None
        if not is_date_time(text):
            self.problems.append(f"has an invalid date ({where} {_quoted(text)})")
            return None
        return text[:10]

    def number(self, value: Any, where: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.wrong(where, value, "a number")
            return None
        try:
            number = float(value)  # an integer too large for a float raises
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.wrong(where, value, "a finite number")
            return None
        return number

    def first_code(self, concept: Any, where: str) -> str | None:
        """The first coding's code of a CodeableConcept (clinicalStatus and the like)."""
        if concept is None:
            return None
        if not isinstance(concept, dict):
            self.wrong(where, concept, "a CodeableConcept")
            return None
        codings = concept.get("coding")
        if not isinstance(codings, list | None):
            self.wrong(f"{where}.coding", codings, "a list")
            return None
        for i, c in enumerate(codings or []):
            code = c.get("code") if isinstance(c, dict) else c
            if isinstance(code, str):
                return code
            if code is not None:
                self.wrong(f"{where}.coding[{i}].code", code, "a string")
                return None
        return None


def _last_updated(resource: dict[str, Any]) -> str | None:
    """meta.lastUpdated, for duplicates only: unreadable is as absent (the one read last wins)."""
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


def patient_fact(resource: dict[str, Any], rid: str) -> PatientFact:
    values = _Values()
    gender = values.text(resource.get("gender"), "gender")
    birth = values.text(resource.get("birthDate"), "birthDate")
    if birth is not None and not is_date(birth):
        values.problems.append(f"has an invalid date (birthDate {_quoted(birth)})")
    deceased_b = resource.get("deceasedBoolean")
    if deceased_b is not None and not isinstance(deceased_b, bool):
        values.wrong("deceasedBoolean", deceased_b, "true or false")
    deceased_at = values.text(resource.get("deceasedDateTime"), "deceasedDateTime")
    if deceased_at is not None and not is_date_time(deceased_at):
        values.problems.append(f"has an invalid date (deceasedDateTime {_quoted(deceased_at)})")
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
        birth_date=birth,
        deceased=deceased_b is True,
        deceased_date=deceased_at,
        last_updated=_last_updated(resource),
        name=name,
        identifier=_medical_record_number(resource.get("identifier")),
        # deceased but unreadable when: deceasedBoolean not a boolean
        deceased_unreadable=deceased_b is not None and not isinstance(deceased_b, bool),
        problems=tuple(values.problems),
    )


def _medical_record_number(identifiers: Any) -> str | None:
    """The identifier typed MR (v2-0203), else the first with a value: what people look a
    patient up by. Shown to people only, so anything unreadable is simply not shown."""
    found = (
        [i for i in identifiers if isinstance(i, dict) and _str(i.get("value"))]
        if isinstance(identifiers, list)
        else []
    )
    for item in found:
        kind = item.get("type")
        codings = kind.get("coding") if isinstance(kind, dict) else None
        if isinstance(codings, list) and any(isinstance(c, dict) and c.get("code") == "MR" for c in codings):
            return str(item["value"])
    return str(found[0]["value"]) if found else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def codings_of(concept: Any, where: str = "code") -> tuple[tuple[Coding, ...], str | None]:
    """A CodeableConcept's codings and text. A concept or coding list of the wrong shape is a
    FactError: what the resource is cannot be told, so neither can whether a rule needs it."""
    if concept is None:
        return (), None
    if not isinstance(concept, dict):
        raise FactError(f"{where} must be a CodeableConcept object")
    raw = concept.get("coding")
    if raw is None:
        raw = []
    elif not isinstance(raw, list):
        raise FactError(f"{where}.coding must be a list")
    return _codings(tuple(_coding_key(c, where, i) for i, c in enumerate(raw))), _str(concept.get("text"))


def _coding_key(c: Any, where: str, index: int) -> tuple[str, str, str | None] | None:
    """(system, code, display), or None for a coding that can never match (no system or no
    code). A coding, system or code of the wrong JSON type raises: what it names is unknown."""
    if c is None:
        return None
    if not isinstance(c, dict):
        raise FactError(f"{where}.coding[{index}] must be an object")
    system, code = c.get("system"), c.get("code")
    for name, value in (("system", system), ("code", code)):
        if value is not None and not isinstance(value, str):
            raise FactError(f"{where}.coding[{index}].{name} must be a string")
    if isinstance(system, str) and isinstance(code, str):
        return (system, code, _str(c.get("display")))
    return None


@functools.lru_cache(maxsize=65536)
def _codings(keys: tuple[tuple[str, str, str | None] | None, ...]) -> tuple[Coding, ...]:
    """Codings, built once per distinct list: a source repeats the same few thousand codes
    across millions of resources, and equal facts then share their (immutable) codings.
    Codes are trimmed of the white space that SQL engines trim too (CODE_SPACE)."""
    return tuple(
        Coding(system.strip(CODE_SPACE), code.strip(CODE_SPACE), display)
        for system, code, display in filter(None, keys)
    )


def medication_def(resource: dict[str, Any], key: str) -> MedicationDef:
    codings, text = codings_of(resource.get("code"))
    return MedicationDef(key, codings, text)


def clinical_fact(resource: dict[str, Any], rtype: str, rid: str, patient: str) -> Fact:
    """One row for a Condition, Observation, MedicationStatement/Request or Procedure. What
    is wrong with its values is in `problems` (pipeline decides whether a rule needed them)."""
    values = _Values()
    common: dict[str, Any] = {
        "resource_type": rtype,
        "resource_id": rid,
        "patient_id": patient,
        "status": values.text(resource.get("status"), "status"),
        "last_updated": _last_updated(resource),
    }
    if rtype in MEDICATION_TYPES:
        fields = _medication_use(resource, rtype, values)
    else:
        codings, text = codings_of(resource.get("code"))
        common.update(codings=codings, text=text)
        if rtype == "Condition":
            fields = _condition(resource, values)
        elif rtype == "Observation":
            fields = _observation(resource, values)
        else:
            performed = values.obj(resource, "performedPeriod")
            at = values.day(resource.get("performedDateTime"), "performedDateTime")
            start = at or values.day(performed.get("start"), "performedPeriod.start")
            end = at or values.day(performed.get("end"), "performedPeriod.end")
            fields = {"performed_start": start, "performed_end": end}
    return Fact(**common, **fields, problems=tuple(values.problems))


def _condition(resource: dict[str, Any], values: _Values) -> dict[str, Any]:
    onset_period = values.obj(resource, "onsetPeriod")
    # abatementBoolean false says "not abated"; any other abatement[x] abates it
    abated = any(k.startswith("abatement") and v is not None and v is not False for k, v in resource.items())
    abatement = values.day(resource.get("abatementDateTime"), "abatementDateTime") or values.day(
        values.obj(resource, "abatementPeriod").get("start"), "abatementPeriod.start"
    )
    return {
        "clinical_status": values.first_code(resource.get("clinicalStatus"), "clinicalStatus"),
        "verification_status": values.first_code(resource.get("verificationStatus"), "verificationStatus"),
        "onset": values.day(resource.get("onsetDateTime"), "onsetDateTime")
        or values.day(onset_period.get("start"), "onsetPeriod.start"),
        "recorded": values.day(resource.get("recordedDate"), "recordedDate"),
        "abated": abated,
        "abatement": abatement,
    }


def _observation(resource: dict[str, Any], values: _Values) -> dict[str, Any]:
    ts = values.text(resource.get("effectiveDateTime"), "effectiveDateTime")
    where = "effectiveDateTime"
    if ts is None:
        ts, where = (
            values.text(values.obj(resource, "effectivePeriod").get("start"), "effectivePeriod.start"),
            ("effectivePeriod.start"),
        )
    if ts is None:
        ts, where = values.text(resource.get("issued"), "issued"), "issued"
    out: dict[str, Any] = {"effective": values.day(ts, where), "effective_ts": ts}
    if resource.get("valueQuantity") is not None:
        qty = values.obj(resource, "valueQuantity")
        out.update(
            value_kind="quantity",
            value=values.number(qty.get("value"), "valueQuantity.value"),
            comparator=values.text(qty.get("comparator"), "valueQuantity.comparator"),
            unit_code=values.text(qty.get("code"), "valueQuantity.code"),
            unit_text=values.text(qty.get("unit"), "valueQuantity.unit"),
        )
        ranges = resource.get("referenceRange")
        if not isinstance(ranges, list | None):
            values.wrong("referenceRange", ranges, "a list")
            ranges = None
        for rng in ranges or []:
            high = rng.get("high") if isinstance(rng, dict) else None
            if isinstance(high, dict) and high.get("value") is not None:
                out.update(
                    ref_high=values.number(high.get("value"), "referenceRange.high.value"),
                    ref_high_unit_code=values.text(high.get("code"), "referenceRange.high.code"),
                    ref_high_unit_text=values.text(high.get("unit"), "referenceRange.high.unit"),
                )
                break
    elif resource.get("valueCodeableConcept") is not None:
        codings, _ = codings_of(resource.get("valueCodeableConcept"), "valueCodeableConcept")
        out.update(value_kind="codeable", value_codings=codings)
    elif any(k.startswith("value") and v is not None for k, v in resource.items()):
        out["value_kind"] = "other"
    return out


def _medication_use(resource: dict[str, Any], rtype: str, values: _Values) -> dict[str, Any]:
    out: dict[str, Any] = {}
    med_ref = resource.get("medicationReference")
    ref = med_ref.get("reference") if isinstance(med_ref, dict) else None
    if isinstance(ref, str):
        out["medication_ref"] = ref if ref.startswith("#") else ref_key(ref)
    else:
        out["codings"], out["text"] = codings_of(resource.get("medicationCodeableConcept"), "medicationCodeableConcept")
    if rtype == "MedicationStatement":
        period = values.obj(resource, "effectivePeriod")
        if period.get("start") not in (None, ""):
            out.update(
                period_start=values.day(period.get("start"), "effectivePeriod.start"),
                period_end=values.day(period.get("end"), "effectivePeriod.end"),
            )
        elif resource.get("effectiveDateTime") not in (None, ""):
            day = values.day(resource.get("effectiveDateTime"), "effectiveDateTime")
            out.update(period_start=day, period_end=day)
        return out
    if rtype == "MedicationDispense":
        return out | _dispensed(resource, values)
    out["intent"] = values.text(resource.get("intent"), "intent")
    dispense = values.obj(resource, "dispenseRequest")
    validity = dispense.get("validityPeriod")
    authored = values.day(resource.get("authoredOn"), "authoredOn")
    bounds = _bounds_period(resource, values)
    if isinstance(validity, dict) and validity.get("start") not in (None, ""):
        out.update(
            period_start=values.day(validity.get("start"), "dispenseRequest.validityPeriod.start"),
            period_end=values.day(validity.get("end"), "dispenseRequest.validityPeriod.end"),
        )
    elif bounds is not None:
        out.update(
            period_start=values.day(bounds.get("start"), "dosageInstruction.timing.repeat.boundsPeriod.start"),
            period_end=values.day(bounds.get("end"), "dosageInstruction.timing.repeat.boundsPeriod.end"),
        )
    elif authored:
        out["authored"] = authored
        out.update(_supply(dispense, values))
    return out


def _bounds_period(resource: dict[str, Any], values: _Values) -> dict[str, Any] | None:
    """The first dosageInstruction[].timing.repeat.boundsPeriod that has a start."""
    instructions = resource.get("dosageInstruction")
    if instructions is None:
        return None
    if not isinstance(instructions, list):
        values.wrong("dosageInstruction", instructions, "a list")
        return None
    for instruction in instructions:
        timing = instruction.get("timing") if isinstance(instruction, dict) else None
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
        if isinstance(bounds, dict) and bounds.get("start") not in (None, ""):
            return bounds
    return None


def _dispensed(resource: dict[str, Any], values: _Values) -> dict[str, Any]:
    """A MedicationDispense: whenHandedOver (else whenPrepared) and daysSupply."""
    handed = values.day(resource.get("whenHandedOver"), "whenHandedOver")
    if handed is None:
        handed = values.day(resource.get("whenPrepared"), "whenPrepared")
    if handed is None:
        return {}
    supply = resource.get("daysSupply")
    days = None if supply is None else _quantity_days(supply, "daysSupply", values)
    return {"handed_over": handed, "days_supply": days}


def _quantity_days(quantity: Any, where: str, values: _Values) -> float | None:
    """A duration (a Quantity in d, wk, mo or a) in days; None, noted, when it is not one."""
    if not isinstance(quantity, dict):
        values.wrong(where, quantity, "an object")
        return None
    if quantity.get("value") is None:
        return None
    unit = quantity.get("code") or quantity.get("unit")
    per = _DAYS_PER.get(unit) if isinstance(unit, str) else None
    if per is None:
        values.problems.append(f"is not usable ({where} unit {_quoted(unit)} is not d, wk, mo or a)")
        return None
    value = values.number(quantity.get("value"), f"{where}.value")
    return None if value is None else value * per


def _supply(dispense: dict[str, Any], values: _Values) -> dict[str, Any]:
    """expectedSupplyDuration (in days) and numberOfRepeatsAllowed, as the order gives them."""
    supply = dispense.get("expectedSupplyDuration")
    if not isinstance(supply, dict) or supply.get("value") is None:
        return {}
    days = _quantity_days(supply, "expectedSupplyDuration", values)
    if days is None:
        return {}
    repeats = dispense.get("numberOfRepeatsAllowed")
    if repeats is not None and (isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0):
        values.wrong("dispenseRequest.numberOfRepeatsAllowed", repeats, "a whole number")
        return {}
    return {"supply_duration": days, "repeats": repeats}


def contained_medication(resource: dict[str, Any], ref: str) -> MedicationDef | None:
    """Resolve a `#id` medicationReference against the resource's contained list."""
    contained = resource.get("contained")
    for item in contained if isinstance(contained, list) else []:
        if isinstance(item, dict) and item.get("resourceType") == "Medication" and f"#{item.get('id')}" == ref:
            return medication_def(item, ref)
    return None
