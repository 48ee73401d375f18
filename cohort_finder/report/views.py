"""What people read about a patient, in words: the view both report.html and the review app show.

Built from a patient's line of candidates.json (the contract's shape, which the run store keeps
for every candidate and possible), so the report and the app cannot drift: both render these
views with the same templates (templates/views.html.j2). Nothing here decides anything
clinical; it groups results by their effect on eligibility and words the evidence (the code's
display name, the value with its unit, the date and how long before as-of, "default ULN").
Everything from the record stays a plain string here and is escaped by the templates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from cohort_finder.model import CriterionInfo, Result, rules_out
from cohort_finder.store.changes import LETTER

# The groups of a patient's detail, in the order a reviewer reads them.
GROUPS = (
    ("rules_out", "Rules out"),
    ("unknown", "Unknown"),
    ("manual", "To check by hand"),
    ("supports", "Supports"),
)

# Short names of the code systems evidence cites, for the secondary code line.
_SYSTEMS = {
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://www.ama-assn.org/go/cpt": "CPT",
}
_UNITS = {"a": "years"}
# UCUM's annotations and powers, as a reader writes them: 10*9/L -> x10⁹/L (a multiplication sign), {1.73_m2} -> 1.73 m²
_UNIT_WORDS = (
    ("{1.73_m2}", "1.73 m²"),
    ("10*3", "\u00d710³"),
    ("10*6", "\u00d710⁶"),
    ("10*9", "\u00d710⁹"),
    ("10*12", "\u00d710¹²"),
    ("umol", "µmol"),
    ("ug", "µg"),
    ("uL", "µL"),
)
_CODE = re.compile(r"(https?://[^\s|,;]+|urn:oid:[0-9.]+)\|([^\s,;)]+)")


@dataclass(frozen=True, slots=True)
class EvidenceView:
    what: str  # the display name in words ("Hemoglobin A1c/Hemoglobin.total in Blood")
    value: str | None  # "8.1 %"
    when: str | None  # "2026-09-02 (3 months before as-of)"
    extras: tuple[str, ...]  # "converted from 65 mmol/mol", "ULN 40 U/L (default ULN)"
    code: str | None  # secondary: "LOINC 4548-4"
    resource: str  # "Observation/abc"


@dataclass(frozen=True, slots=True)
class CriterionView:
    id: str
    kind: str
    text: str
    result: str  # met | not_met | unknown | manual
    group: str  # one of GROUPS
    evidence: tuple[EvidenceView, ...]
    note: str | None


@dataclass(frozen=True, slots=True)
class KeyValue:
    label: str
    value: str | None  # None: no reading the rule used
    date: str | None


@dataclass(frozen=True, slots=True)
class PatientView:
    id: str
    status: str
    name: str | None
    identifier: str | None
    age: int | None
    gender: str | None
    change: str | None  # what changed since the last run, in words
    change_kind: str | None  # new | dropped | changed (for filtering)
    decision: str | None
    review: Mapping[str, Any] | None
    keys: tuple[KeyValue, ...]
    groups: tuple[tuple[str, str, tuple[CriterionView, ...]], ...]  # (group, label, criteria)
    deciding: tuple[str, ...]  # criteria that exclude (excluded) or are unknown (possible)
    letters: str  # one result letter per criterion (store encoding), for the overview's filters
    incomplete: bool  # some error names this patient

    @property
    def manual_count(self) -> int:
        return sum(len(rows) for group, _, rows in self.groups if group == "manual")

    @property
    def unknown_count(self) -> int:
        return sum(len(rows) for group, _, rows in self.groups if group == "unknown")


def group_of(kind: str, result: str) -> str:
    """A result's effect on eligibility: rules out, unknown, manual or supports."""
    if result == "manual":
        return "manual"
    if result == "unknown":
        return "unknown"
    return "rules_out" if rules_out(kind, Result(result)) else "supports"


def ago(day: str | None, as_of: date) -> str | None:
    """How long before as-of a date lies, in the unit a reader would use."""
    if not day or len(day) < 10:
        return None
    try:
        days = (as_of - date.fromisoformat(day[:10])).days
    except ValueError:
        return None
    if days < 0:
        return f"{-days} days after as-of"
    if days == 0:
        return "on as-of"
    for limit, size, unit in ((14, 1, "day"), (61, 7, "week"), (730, 30.44, "month")):
        if days < limit:
            n = round(days / size)
            return f"{n} {unit}{'s' if n != 1 else ''} before as-of"
    n = round(days / 365.25)
    return f"{n} year{'s' if n != 1 else ''} before as-of"


def number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        text = f"{value:.6g}"  # enough for a clinician; the JSON keeps every digit
        return repr(value) if "e" in text else text
    return str(value)


def unit_text(unit: str | None) -> str | None:
    """A UCUM unit as a reader writes it (the JSON keeps the UCUM code)."""
    if not unit:
        return unit
    if unit in _UNITS:
        return _UNITS[unit]
    for code, words in _UNIT_WORDS:
        unit = unit.replace(code, words)
    return unit


def quantity(value: Any, unit: str | None) -> str | None:
    if value is None:
        return None
    shown = unit_text(unit)
    return f"{number(value)} {shown}" if shown else number(value)


def note_text(note: str | None) -> str | None:
    """A rule's note with each `system|code` as 'LOINC 4548-4': the URI is secondary detail."""
    if not note:
        return note
    note = _CODE.sub(lambda m: code_text(f"{m.group(1)}|{m.group(2)}") or m.group(0), note)
    for code, words in _UNIT_WORDS[:5]:  # annotations and powers only: "ug" is inside words
        note = note.replace(code, words)
    return note


def code_text(code: str | None) -> str | None:
    """'http://loinc.org|4548-4' -> 'LOINC 4548-4'; an unknown system stays as written."""
    if not code:
        return None
    system, _, value = code.rpartition("|")
    return f"{_SYSTEMS.get(system, system)} {value}" if system else value


def evidence_view(ev: Mapping[str, Any], as_of: date) -> EvidenceView:
    resource = str(ev.get("resource", ""))
    kind = resource.split("/", 1)[0]
    what = ev.get("display") or (code_text(ev.get("code")) if ev.get("code") else None) or kind
    extras = []
    if ev.get("original_value") is not None:
        extras.append(f"converted from {quantity(ev['original_value'], ev.get('original_unit'))}")
    if ev.get("uln") is not None:
        # Contract §3: a ULN taken from the mappings rather than the lab is named as such.
        origin = "default ULN" if ev.get("uln_source") == "default" else "lab's reference range"
        extras.append(f"ULN {quantity(ev['uln'], ev.get('unit'))} ({origin})")
    if ev.get("matched_by") == "name":
        extras.append("matched by name, not code: check it")
    day = ev.get("date")
    when = None
    if day:
        span = ago(day, as_of)
        when = f"{day} ({span})" if span else str(day)
    value = quantity(ev.get("value"), ev.get("unit"))
    if kind == "Patient" and ev.get("unit") == "a" and value is not None:
        value = f"age {value}"
    code = code_text(ev.get("code"))
    return EvidenceView(str(what), value, when, tuple(extras), None if code == what else code, resource)


def change_words(change: Mapping[str, Any] | None, status: str) -> tuple[str | None, str | None]:
    """(what changed since the previous complete run, in words; new | dropped | changed)."""
    if not change:
        return None, None
    run = change.get("since_run")
    before = change.get("status_before")
    crit = change.get("criteria") or []
    because = f": {', '.join(crit)}" if crit else ""
    if before == "absent":
        return f"new since run {run}", "new"
    if before == "excluded" and status != "excluded":
        return f"new since run {run} (was excluded{because})", "new"
    if before != "excluded" and status == "excluded":
        return f"dropped since run {run} (was {before}{because})", "dropped"
    return f"changed since run {run} (was {before}{because})", "changed"


def patient_view(
    line: Mapping[str, Any],
    criteria: Sequence[CriterionInfo],
    as_of: date,
    name: str | None = None,
    identifier: str | None = None,
    incomplete: bool = False,
) -> PatientView:
    """The view of one patient from its candidates.json line."""
    texts = {c.id: c for c in criteria}
    status = str(line["status"])
    rows: dict[str, list[CriterionView]] = {g: [] for g, _ in GROUPS}
    keys: dict[str, KeyValue] = {}
    letters = []
    for cr in line.get("criteria", ()):
        info = texts.get(cr["id"])
        group = group_of(cr["kind"], cr["result"])
        evidence = tuple(evidence_view(ev, as_of) for ev in cr.get("evidence", ()))
        rows[group].append(
            CriterionView(
                cr["id"],
                cr["kind"],
                info.text if info else "",
                cr["result"],
                group,
                evidence,
                note_text(cr.get("note")),
            )
        )
        letters.append(LETTER[Result(cr["result"])])
        if info is not None and info.key and info.key not in keys:
            shown = next((ev for ev in cr.get("evidence", ()) if ev.get("value") is not None), None)
            keys[info.key] = KeyValue(
                info.key,
                quantity(shown["value"], shown.get("unit")) if shown else None,
                shown.get("date") if shown else None,
            )
    wanted = {"excluded": "rules_out", "possible": "unknown"}.get(status)
    deciding = tuple(r.id for r in rows.get(wanted or "", ()))
    labels = [c.key for c in criteria if c.key]
    review = line.get("review")
    change, change_kind = change_words(line.get("change"), status)
    return PatientView(
        id=str(line["id"]),
        status=status,
        name=name,
        identifier=identifier,
        age=line.get("age"),
        gender=line.get("gender"),
        change=change,
        change_kind=change_kind,
        decision=review.get("decision") if review else None,
        review=review,
        keys=tuple(keys.get(label, KeyValue(label, None, None)) for label in labels),
        groups=tuple((g, label, tuple(rows[g])) for g, label in GROUPS if rows[g]),
        deciding=deciding,
        letters="".join(letters),
        incomplete=incomplete,
    )
