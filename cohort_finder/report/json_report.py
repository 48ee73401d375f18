"""candidates.json: the machine-readable result (contract §2, candidates.schema.json).

Byte-for-byte determinism matters (same inputs and as-of give the same file apart from
`generated_at`), so every object is built as a dict in a fixed key order and serialised by
orjson, which keeps insertion order. The patient's name is deliberately never emitted: the
machine output is what gets copied around, so it carries only the logical id (PHI
minimisation); the name appears in the investigator's HTML alone.
"""

from __future__ import annotations

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

_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE

# Evidence fields that only mean something in some cases (a converted unit, a ULN rule, a
# name match); emitted only when set so the common case stays short.
_OPTIONAL_EVIDENCE = ("original_value", "original_unit", "uln", "uln_source", "matched_by")


def summary(run: RunResult) -> dict[str, int]:
    """The counts both the JSON and the HTML show; one definition so they cannot disagree."""
    return {
        "patients": len(run.patients),
        "candidate": run.count(Status.CANDIDATE),
        "possible": run.count(Status.POSSIBLE),
        "excluded": run.count(Status.EXCLUDED),
        "errors": len(run.errors),
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


def _patient(p: PatientResult) -> dict[str, Any]:
    # No "name" key, on purpose (see module docstring).
    return {
        "id": p.id,
        "status": p.status.value,
        "age": p.age,
        "gender": p.gender,
        "criteria": [_criterion_result(cr) for cr in p.criteria],
    }


def _criterion_info(c: CriterionInfo) -> dict[str, Any]:
    return {"id": c.id, "kind": c.kind, "text": c.text, "computable": c.computable}


def _error(e: RunError) -> dict[str, Any]:
    # patient_id / resource_type are internal bookkeeping; the contract's error object is
    # source + message only.
    return {"source": e.source, "message": e.message}


def to_document(run: RunResult) -> dict[str, Any]:
    """The candidates.json document as plain Python data (useful to tests and other writers)."""
    return {
        "trial": {"id": run.trial_id, "title": run.trial_title},
        "as_of": run.as_of,
        "source": run.source,
        "generated_at": run.generated_at,
        "summary": summary(run),
        "criteria": [_criterion_info(c) for c in run.criteria],
        # Order as given: the pipeline already sorted patients by id (contract §2).
        "patients": [_patient(p) for p in run.patients],
        "errors": [_error(e) for e in run.errors],
    }


def render_json(run: RunResult) -> bytes:
    """candidates.json bytes: 2-space indent, fixed key order, trailing newline."""
    return orjson.dumps(to_document(run), option=_OPTIONS)
