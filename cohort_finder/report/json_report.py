"""candidates.json: the machine-readable result (contract §2, candidates.schema.json).

Byte-for-byte determinism matters (same inputs and as-of give the same file apart from
`generated_at`), so every object is built as a dict in a fixed key order and serialised by
orjson, which keeps insertion order. The patient's name is deliberately never emitted: the
machine output is what gets copied around, so it carries only the logical id (PHI
minimisation); the name appears in the investigator's HTML alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from cohort_finder.model import (
    CriterionInfo,
    CriterionResult,
    Evidence,
    PatientResult,
    RunError,
    RunResult,
    Status,
)
from cohort_finder.store.changes import Change
from cohort_finder.store.decisions import Decision

# Evidence fields that only mean something in some cases (a converted unit, a ULN rule, a
# name match); emitted only when set so the common case stays short.
_OPTIONAL_EVIDENCE = ("original_value", "original_unit", "uln", "uln_source", "matched_by", "display")


def summary(statuses: Iterable[Status], errors: int) -> dict[str, int]:
    """The counts both the JSON and the HTML show; one definition so they cannot disagree."""
    listed = list(statuses)
    return {
        "patients": len(listed),
        "candidate": listed.count(Status.CANDIDATE),
        "possible": listed.count(Status.POSSIBLE),
        "excluded": listed.count(Status.EXCLUDED),
        "errors": errors,
    }


def _evidence(ev: Evidence) -> dict[str, Any]:
    # the schema lets date/value/unit be null but not code: a name match has no code to give
    out: dict[str, Any] = {"resource": ev.resource}
    if ev.code is not None:
        out["code"] = ev.code
    out.update(date=ev.date, value=ev.value, unit=ev.unit)
    for name in _OPTIONAL_EVIDENCE:
        value = getattr(ev, name)
        if value is not None:
            out[name] = value
    return out


def _criterion_result(cr: CriterionResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": cr.id,
        "kind": cr.kind,
        "result": cr.result.value,
        "evidence": [_evidence(ev) for ev in cr.evidence],
    }
    if cr.note is not None:
        out["note"] = cr.note
    return out


SharedResults = dict[tuple[str, str, str, str | None], orjson.Fragment]


def patient_json(
    p: PatientResult, shared: SharedResults, change: Change | None = None, review: Decision | None = None
) -> bytes:
    """The patient's line in candidates.json (compact), with `change` and `review` when the
    run store has them (contract §7)."""
    out = _patient(p, shared)
    if change is not None:
        out["change"] = {
            "since_run": change.since_run,
            "status_before": change.status_before,
            "criteria": list(change.criteria),
        }
    if review is not None:
        out["review"] = review.as_json()
    return orjson.dumps(out)


def _patient(p: PatientResult, shared: SharedResults) -> dict[str, Any]:
    # No "name" key, on purpose (see module docstring).
    criteria: list[Any] = []
    for cr in p.criteria:
        if cr.evidence:
            criteria.append(_criterion_result(cr))
            continue
        # Results without evidence repeat across patients ("no current X condition"): each
        # distinct one is serialised once and spliced in.
        key = (cr.id, cr.kind, cr.result.value, cr.note)
        done = shared.get(key)
        if done is None:
            done = shared[key] = orjson.Fragment(orjson.dumps(_criterion_result(cr)))
        criteria.append(done)
    return {"id": p.id, "status": p.status.value, "age": p.age, "gender": p.gender, "criteria": criteria}


def _criterion_info(c: CriterionInfo) -> dict[str, Any]:
    return {"id": c.id, "kind": c.kind, "text": c.text, "computable": c.computable}


def _error(e: RunError) -> dict[str, Any]:
    # patient_id / resource_type are internal bookkeeping; the contract's error object is
    # source + message only.
    return {"source": e.source, "message": e.message}


def _array(key: str, items: Iterable[bytes], last: bool = False) -> Iterator[bytes]:
    """`  "key": [` then one element per line; an empty array stays `[]`."""
    head = f'  "{key}": ['.encode()
    first = True
    for item in items:
        yield (head + b"\n    " if first else b",\n    ") + item
        first = False
    yield (head + b"]" if first else b"\n  ]") + (b"\n" if last else b",\n")


def json_chunks(run: RunResult, counts: dict[str, int], patients: Iterable[bytes]) -> Iterator[bytes]:
    """candidates.json as a stream of chunks: each top-level key on its own line, and each
    criterion, patient (`patients`: their lines from patient_json, sorted by id) and error
    on one line of its own (compact within), so a run-to-run `diff` shows every changed
    patient as one changed line; fixed key order; trailing newline. (Compact lines also make
    a hospital-sized file about 40 % smaller than a fully indented one, and streaming keeps
    it out of memory.)"""
    yield b"{\n"
    for key, value in (
        ("trial", {"id": run.trial_id, "title": run.trial_title}),
        ("as_of", run.as_of),
        ("source", run.source),
        ("generated_at", run.generated_at),
        ("summary", counts),
    ):
        yield f'  "{key}": '.encode() + orjson.dumps(value) + b",\n"
    yield from _array("criteria", (orjson.dumps(_criterion_info(c)) for c in run.criteria))
    yield from _array("patients", patients)
    yield from _array("errors", (orjson.dumps(_error(e)) for e in run.errors), last=True)
    yield b"}\n"


def render_json(run: RunResult) -> bytes:
    """candidates.json bytes for a run holding its patients' results."""
    shared: SharedResults = {}
    counts = summary((p.status for p in run.patients), len(run.errors))
    return b"".join(json_chunks(run, counts, (patient_json(p, shared) for p in run.patients)))
