"""Which FHIR searches fetch what a trial needs: restricted server-side by its codes and
windows, never one request per patient.

The plan is made here, from the trial, so that the REST and Bulk sources stay ignorant of
trials: they run a list of (type, parameters) searches.

Where a restriction cannot be written as a FHIR search, the type is fetched whole rather than
risk missing a row (correct first):
- ICD-10-CM prefixes and ranges (`E11`, `C00-C96`) are not token searches, so Conditions are
  fetched whole when a value set uses them (Conditions are few next to Observations);
- medications also match by ingredient name, which no standard search expresses, so
  MedicationStatement/MedicationRequest are fetched whole, with their Medications included.
Observations are restricted by code (and coded value, for classes such as NYHA) and by date:
`date=ge` covers effective[x], and `date:missing=true` fetches those dated only by `issued`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import quote

from .criteria import Trial
from .facts import MEDICATION_TYPES
from .reduce import trial_leaves
from .terminology import CodeSet

MAX_QUERY_VALUE = 1500  # characters of one `code=` value: keeps URLs well under common 8 KiB limits


@dataclass(frozen=True, slots=True)
class Search:
    resource_type: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _Needs:
    codes: set[tuple[str, str]]
    whole: bool = False  # some value set cannot be searched by token: fetch everything
    window: int | None = 0  # longest look-back in days; None: some rule has no window

    def add(self, codes: CodeSet, window: int | None = None) -> None:
        self.codes |= codes.exact
        self.whole |= bool(codes.icd10_prefixes or codes.icd10_ranges)
        if self.window is not None:
            self.window = None if window is None else max(self.window, window)


def _chunks(tokens: Iterable[str]) -> list[str]:
    """Comma-joined token lists, each short enough for a URL."""
    out: list[str] = []
    current: list[str] = []
    length = 0
    for token in sorted(tokens):
        size = len(quote(token, safe="")) + 3
        if current and length + size > MAX_QUERY_VALUE:
            out.append(",".join(current))
            current, length = [], 0
        current.append(token)
        length += size
    if current:
        out.append(",".join(current))
    return out


def _by_code(rtype: str, param: str, wanted: _Needs, extra: tuple[tuple[str, str], ...] = ()) -> list[Search]:
    if wanted.whole:
        return [Search(rtype, extra)]
    return [Search(rtype, ((param, chunk), *extra)) for chunk in _chunks(f"{s}|{c}" for s, c in wanted.codes)]


def plan(trial: Trial, as_of: date, page_size: int = 1000) -> list[Search]:
    observation_code = _Needs(set())
    observation_value = _Needs(set())
    condition = _Needs(set())
    procedure = _Needs(set())
    medications = False
    by_target = {
        ("Observation", "code"): observation_code,
        ("Observation", "value"): observation_value,
        ("Condition", "code"): condition,
        ("Procedure", "code"): procedure,
    }
    for leaf in trial_leaves(trial):
        for need in leaf.needs():
            if need.field == "medication":  # by ingredient name too: fetched whole (see above)
                medications = True
                continue
            target = by_target[(need.resource_type, need.field)]
            # Conditions and Procedures are not restricted by date here (a Condition's onset
            # does not say whether it is current; a Procedure's period may start before the window)
            target.add(need.codes, need.window if need.resource_type == "Observation" else None)
    count = (("_count", str(page_size)),)
    searches = [Search("Patient", count)]
    for wanted, param in ((observation_code, "code"), (observation_value, "value-concept")):
        if not wanted.codes and not wanted.whole:
            continue
        if wanted.window is None:
            searches += _by_code("Observation", param, wanted, count)
        else:
            # two days' slack: a server compares instants, the rules compare the date as written
            # (2025-06-30T01:00+05:00 is 2025-06-29 in UTC); the rules filter precisely later
            start = (as_of - timedelta(days=wanted.window + 2)).isoformat()
            searches += _by_code("Observation", param, wanted, (("date", f"ge{start}"), *count))
            searches += _by_code("Observation", param, wanted, (("date:missing", "true"), *count))
    if condition.codes or condition.whole:
        searches += _by_code("Condition", "code", condition, count)
    if procedure.codes or procedure.whole:
        searches += _by_code("Procedure", "code", procedure, count)
    if medications:
        for rtype in MEDICATION_TYPES:
            searches.append(Search(rtype, (("_include", f"{rtype}:medication"), *count)))
    return searches
