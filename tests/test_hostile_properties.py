"""Property-based: no mutation of a valid patient's data makes a run crash, and each mutation is
named in `errors` or read as the contract and docs/decisions.md say, the same by every engine.

Three clean candidates (fixtures/build_nct07183761.baseline) as Bulk NDJSON, one file per
resource type; one line of one patient (P) is mutated. Whatever the mutation:
- the run raises nothing, and its outputs render;
- the other patients' results are exactly as without the mutation, and no error names them;
- the python and duckdb engines give the same results and errors.
And by the kind of mutation (the kind is chosen first, so each has its own expectation):
- a field the rules read given a value that is not of its FHIR type (a string for a number, an
  impossible date, NaN, an object for a code, ...): an error at the line (`file:line`); if it
  names P, P's results only stay or become `unknown`;
- such a field set to null: exactly as if it were absent (the decision: null is absent);
- a field no rule reads, whatever its value (NaN included), or a byte-order mark or a trailing
  comma: nothing changes and no error;
- the line's text broken (cut short, a byte that is not UTF-8): an error at the line.
Runs derandomized with a fixed number of examples, so CI sees the same cases every time;
COHORT_FINDER_PROPERTY_EXAMPLES=2000 explores more (COHORT_FINDER_PROPERTY_SHRINK=1 to shrink).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cohort_finder.criteria import load_trial
from cohort_finder.engines import get_engine
from cohort_finder.model import CriterionResult, RunResult
from cohort_finder.pipeline import evaluate_source
from cohort_finder.report import render_csv, render_html, render_json
from cohort_finder.sources.files import FileSource

from .paths import CRITERIA, FIXTURES

sys.path.insert(0, str(FIXTURES))
import build_nct07183761 as base

TRIAL = load_trial(CRITERIA / "nct07183761.yaml")
AS_OF = date(2026, 6, 30)
ENGINES = ("python", "duckdb")
EXAMPLES = int(os.environ.get("COHORT_FINDER_PROPERTY_EXAMPLES", "25"))
# No shrinking unless asked for: an example takes a run of two engines, so shrinking one
# failure can take many minutes; the failing example is printed as it was generated.
SHRINK = os.environ.get("COHORT_FINDER_PROPERTY_SHRINK") == "1"
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, *([Phase.shrink] if SHRINK else [])],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _patients() -> dict[str, list[dict[str, Any]]]:
    """Three clean candidates; the third male with a MedicationRequest (a supply) instead of
    a MedicationStatement, so both kinds of record are mutated."""
    found = {pid: [r for r in base.baseline(pid).values() if r is not None] for pid in ("prop-a", "prop-b")}
    third = base.baseline("prop-c", gender="male")
    third["med"] = base.med_request("prop-c-pregabalin", "prop-c", authored="2026-01-01", supply=(30, "d"), repeats=5)
    found["prop-c"] = [r for r in third.values() if r is not None]
    return found


PATIENTS = _patients()
# every line, in file order: (file, patient, resource)
LINES: list[tuple[str, str, dict[str, Any]]] = sorted(
    ((f"{r['resourceType']}.ndjson", pid, r) for pid, rs in PATIENTS.items() for r in rs),
    key=lambda entry: entry[0],
)


def _place(index: int) -> str:
    name = LINES[index][0]
    return f"{name}:{sum(1 for other in LINES[: index + 1] if other[0] == name)}"


def _text(resource: dict[str, Any]) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"), allow_nan=True)


@dataclass(frozen=True)
class Outcome:
    results: dict[str, tuple[CriterionResult, ...]]
    errors: list[tuple[str, str]]


def run(engine: str, lines: dict[int, bytes]) -> Outcome:
    """Every line as given (by index into LINES; a missing index is the clean line)."""
    with tempfile.TemporaryDirectory() as folder:
        files: dict[str, list[bytes]] = {}
        for index, (name, _, resource) in enumerate(LINES):
            files.setdefault(name, []).append(lines.get(index, _text(resource).encode()))
        for name, content in files.items():
            (Path(folder) / name).write_bytes(b"".join(line + b"\n" for line in content))
        result = evaluate_source(TRIAL, FileSource(Path(folder)), AS_OF, "property", get_engine(engine))
    _renders(result)
    return Outcome({p.id: p.criteria for p in result.patients}, [(e.source, e.message) for e in result.errors])


def _renders(result: RunResult) -> None:
    assert render_json(result) and render_csv(result) and render_html(result)


BASELINE = {engine: run(engine, {}) for engine in ENGINES}


def test_the_clean_data_reads_cleanly() -> None:
    for outcome in BASELINE.values():
        assert outcome.errors == []
        assert sorted(outcome.results) == sorted(PATIENTS)
        assert all(
            c.result.value == expected
            for criteria in outcome.results.values()
            for c, expected in zip(criteria, base.expect().values(), strict=True)
            if c.id != "pregnancy_or_lactation"
        )


# -- the mutations -------------------------------------------------------------------------

# Fields the rules read (contract §3), by FHIR type, as present in the clean lines
READ_FIELDS: dict[str, list[tuple[tuple[Any, ...], str]]] = {
    "Patient": [(("gender",), "code"), (("birthDate",), "date")],
    "Condition": [
        (("onsetDateTime",), "dateTime"),
        (("clinicalStatus",), "CodeableConcept"),
        (("clinicalStatus", "coding", 0, "code"), "code"),
        (("verificationStatus", "coding", 0, "code"), "code"),
        (("code",), "CodeableConcept"),
        (("code", "coding"), "list"),
        (("code", "coding", 0), "Coding"),
        (("code", "coding", 0, "code"), "code"),
        (("code", "coding", 0, "system"), "uri"),
        (("subject",), "Reference"),
        (("subject", "reference"), "string"),
        (("resourceType",), "resourceType"),
    ],
    "Observation": [
        (("status",), "code"),
        (("effectiveDateTime",), "dateTime"),
        (("valueQuantity",), "Quantity"),
        (("valueQuantity", "value"), "decimal"),
        (("valueQuantity", "code"), "code"),
        (("valueQuantity", "unit"), "string"),
        (("code", "coding", 0, "code"), "code"),
        (("code", "coding"), "list"),
        (("subject", "reference"), "string"),
    ],
    "MedicationStatement": [
        (("status",), "code"),
        (("effectivePeriod",), "Period"),
        (("effectivePeriod", "start"), "dateTime"),
        (("effectivePeriod", "end"), "dateTime"),
        (("medicationCodeableConcept",), "CodeableConcept"),
        (("medicationCodeableConcept", "coding", 0, "code"), "code"),
    ],
    "MedicationRequest": [
        (("status",), "code"),
        (("intent",), "code"),
        (("authoredOn",), "dateTime"),
        (("dispenseRequest",), "BackboneElement"),
        (("dispenseRequest", "expectedSupplyDuration", "value"), "decimal"),
        (("dispenseRequest", "numberOfRepeatsAllowed"), "unsignedInt"),
    ],
}
# Fields no rule reads (or that only the report shows), present in the clean lines
UNREAD_FIELDS: dict[str, list[tuple[Any, ...]]] = {
    "Patient": [("name",), ("name", 0, "family"), ("name", 0, "given")],
    "Condition": [("category",), ("code", "text"), ("code", "coding", 0, "display")],
    "Observation": [("category",), ("category", 0, "coding", 0, "code"), ("valueQuantity", "system")],
    "MedicationStatement": [],
    "MedicationRequest": [],
}
NEW_FIELDS = ("extension", "note", "identifier", "text", "modifierFields", "_status")

json_scalars = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
)
any_json = st.recursive(
    st.one_of(st.none(), json_scalars),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
non_string = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(json_scalars, max_size=2),
    st.dictionaries(st.text(max_size=4), json_scalars, max_size=2),
)
non_object = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.booleans(),
    st.text(min_size=1, max_size=12),
    st.lists(json_scalars, min_size=1, max_size=2),
)
IMPOSSIBLE_DATES = (
    "2026-13-45",
    "2026-02-30",
    "2025-02-29",
    "2026-00-10",
    "2026-01-32",
    "2026-1-1",
    "26-01-01",
    "2026/01/01",
    "2026-01-01T25:00:00Z",
    "2026-01-01 10:00",
    "2026-01-01T10:00:00+15:00",
    " 2026-01-01",
    "0000-01-01",
    "yesterday",
)
INVALID: dict[str, st.SearchStrategy[Any]] = {
    "code": non_string,
    "uri": non_string,
    "string": non_string,
    "date": st.one_of(st.sampled_from(IMPOSSIBLE_DATES), non_string),
    "dateTime": st.one_of(st.sampled_from(IMPOSSIBLE_DATES), non_string),
    "decimal": st.one_of(
        st.sampled_from(["13", "8.1", "high", "NaN"]),
        st.sampled_from([math.nan, math.inf, -math.inf, 10**400]),
        st.booleans(),
        st.lists(st.integers(), min_size=1, max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2),
    ),
    "unsignedInt": st.one_of(
        st.integers(max_value=-1), st.sampled_from([2.5, "2", True, math.nan]), st.lists(st.integers(), min_size=1)
    ),
    "CodeableConcept": st.one_of(
        non_object,
        st.sampled_from([{"coding": "E11.9"}, {"coding": {"code": "E11.9"}}, {"coding": [5]}, {"coding": ["E11.9"]}]),
    ),
    "Coding": non_object,
    "list": st.one_of(
        st.integers(), st.text(min_size=1, max_size=5), st.dictionaries(st.text(max_size=3), json_scalars, min_size=1)
    ),
    "Quantity": non_object,
    "Reference": non_object,
    "Period": st.one_of(non_object, st.sampled_from([{"start": "2026-13-45"}, {"start": 20260101}])),
    "BackboneElement": non_object,
    "resourceType": st.one_of(non_string, st.sampled_from(["Conditon", "{ondition", "condition", "", "Resource"])),
}


def _set(resource: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = json.loads(json.dumps(resource))
    node = changed
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return changed


def _delete(resource: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    changed = json.loads(json.dumps(resource))
    node = changed
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return changed


def _exists(resource: dict[str, Any], path: tuple[Any, ...]) -> bool:
    node: Any = resource
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
    return True


@st.composite
def a_line(draw: st.DrawFn, kinds: tuple[str, ...] = tuple(READ_FIELDS)) -> int:
    return draw(st.sampled_from([i for i, (_, _, r) in enumerate(LINES) if r["resourceType"] in kinds]))


@st.composite
def invalid_value(draw: st.DrawFn) -> tuple[int, bytes]:
    index = draw(a_line())
    resource = LINES[index][2]
    fields = [(path, kind) for path, kind in READ_FIELDS[resource["resourceType"]] if _exists(resource, path)]
    path, kind = draw(st.sampled_from(fields))
    return index, _text(_set(resource, path, draw(INVALID[kind]))).encode()


@st.composite
def null_field(draw: st.DrawFn) -> tuple[int, bytes, bytes]:
    index = draw(a_line())
    resource = LINES[index][2]
    fields = [path for path, _ in READ_FIELDS[resource["resourceType"]] if _exists(resource, path)]
    path = draw(st.sampled_from(fields))
    if isinstance(path[-1], int):  # an element of a list: null it, or drop it, the same
        path = path[:-1]
    return index, _text(_set(resource, path, None)).encode(), _text(_delete(resource, path)).encode()


@st.composite
def unread_change(draw: st.DrawFn) -> tuple[int, bytes]:
    index = draw(a_line())
    resource = LINES[index][2]
    fields = [path for path in UNREAD_FIELDS[resource["resourceType"]] if _exists(resource, path)]
    choice = draw(st.integers(min_value=0, max_value=3))
    if choice == 0 or not fields:
        changed = _set(resource, (draw(st.sampled_from(NEW_FIELDS)),), draw(any_json))
    else:
        changed = _set(resource, draw(st.sampled_from(fields)), draw(any_json))
    text = _text(changed)
    if choice == 3:
        text = "\ufeff" + text[:-1] + ",}"  # a byte-order mark and a trailing comma
    return index, text.encode()


@st.composite
def broken_text(draw: st.DrawFn) -> tuple[int, bytes]:
    index = draw(a_line(tuple(READ_FIELDS)))
    data = _text(LINES[index][2]).encode()
    if draw(st.booleans()):
        return index, data[: draw(st.integers(min_value=1, max_value=len(data) - 1))]
    at = draw(st.integers(min_value=0, max_value=len(data) - 1))
    # bytes that are JSON nowhere: not UTF-8, or a raw control character
    replacement = draw(st.sampled_from([b"\xff", b"\xc3(", b"\x00", b"\x1f"]))
    return index, data[:at] + replacement + data[at + 1 :]


# -- the checks ----------------------------------------------------------------------------


def _without_display(outcome: Outcome) -> dict[str, Any]:
    return {
        pid: tuple(replace(cr, evidence=tuple(replace(ev, display=None) for ev in cr.evidence)) for cr in results)
        for pid, results in outcome.results.items()
    } | {"errors": outcome.errors}


def _only_unknown(before: tuple[CriterionResult, ...], after: tuple[CriterionResult, ...]) -> bool:
    return all(b.result == a.result or a.result.value == "unknown" for b, a in zip(before, after, strict=True))


def check(index: int, line: bytes, expect: Callable[[str, Outcome, Outcome], None]) -> None:
    """Run both engines on the mutated data: the common checks, then the kind's own."""
    place, pid = _place(index), LINES[index][1]
    outcomes = {engine: run(engine, {index: line}) for engine in ENGINES}
    assert outcomes["duckdb"] == outcomes["python"], (place, line[:300])
    outcome, clean = outcomes["python"], BASELINE["python"]
    for other in PATIENTS:
        if other != pid:
            assert outcome.results[other] == clean.results[other], (other, place, line[:300])
            assert not any(f"Patient/{other}" in message for _, message in outcome.errors)
    expect(place, outcome, clean)


@PROPERTY
@given(invalid_value())
def test_a_read_field_of_the_wrong_type_is_an_error_of_its_line(mutation: tuple[int, bytes]) -> None:
    index, line = mutation
    pid = LINES[index][1]

    def expect(place: str, outcome: Outcome, clean: Outcome) -> None:
        assert [source for source, _ in outcome.errors] == [place], (line[:300], outcome.errors)
        if f"Patient/{pid}" in outcome.errors[0][1] and pid in outcome.results:
            assert _only_unknown(clean.results[pid], outcome.results[pid]), line[:300]

    check(index, line, expect)


@PROPERTY
@given(null_field())
def test_a_read_field_set_to_null_is_read_as_absent(mutation: tuple[int, bytes, bytes]) -> None:
    index, nulled, deleted = mutation
    without = {engine: run(engine, {index: deleted}) for engine in ENGINES}

    def expect(place: str, outcome: Outcome, clean: Outcome) -> None:
        assert outcome == without["python"], nulled[:300]

    check(index, nulled, expect)


@PROPERTY
@given(unread_change())
def test_a_field_no_rule_reads_changes_nothing(mutation: tuple[int, bytes]) -> None:
    index, line = mutation

    def expect(place: str, outcome: Outcome, clean: Outcome) -> None:
        # a coding's display is shown to people with the evidence (a string, or nothing when it
        # is not one) and decides nothing
        assert _without_display(outcome) == _without_display(clean), line[:300]

    check(index, line, expect)


@PROPERTY
@given(broken_text())
def test_a_line_that_is_not_json_is_an_error_of_its_line(mutation: tuple[int, bytes]) -> None:
    index, line = mutation
    pid, is_patient = LINES[index][1], LINES[index][2]["resourceType"] == "Patient"

    def expect(place: str, outcome: Outcome, clean: Outcome) -> None:
        sources = [source for source, _ in outcome.errors]
        if is_patient:  # the patient may be lost with its line: its other lines are then orphans
            assert place in sources or outcome.results.keys() == clean.results.keys(), line[:300]
            return
        assert sources == [place], (line[:300], outcome.errors)
        if f"Patient/{pid}" in outcome.errors[0][1]:
            assert _only_unknown(clean.results[pid], outcome.results[pid]), line[:300]

    check(index, line, expect)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_mutations_reach_both_kinds_of_reader(engine: str) -> None:
    """The DuckDB engine must send a line its typed scan reads differently to the Python
    reader: a string number (converted by a DOUBLE column) and a number id (a VARCHAR one)."""
    index = next(i for i, (_, _, r) in enumerate(LINES) if r["resourceType"] == "Observation")
    for value, says in (("13", "is '13', not a number"), (math.nan, "is NaN, not a finite number")):
        line = _text(_set(LINES[index][2], ("valueQuantity", "value"), value)).encode()
        errors = run(engine, {index: line}).errors
        assert [source for source, _ in errors] == [_place(index)] and says in errors[0][1]
    line = _text(_set(LINES[index][2], ("id",), 5)).encode()
    expected = "Observation is not usable: resource has no id (Patient/prop-a)"
    assert run(engine, {index: line}).errors == [(_place(index), expected)]
