"""The built-in `alive` criterion: not deceased on or before as-of (no rule in the file)."""

from __future__ import annotations

from ..model import Evidence, Outcome, Result
from ..primitives import is_date_time
from .context import Context


def _patient_evidence(ctx: Context) -> tuple[Evidence, ...]:
    return (Evidence(f"Patient/{ctx.record.patient.id}"),)


def alive(ctx: Context) -> Outcome:
    p = ctx.record.patient
    if p.deceased:
        return Outcome(Result.NOT_MET, _patient_evidence(ctx), ("deceasedBoolean is true",))
    if p.deceased_unreadable:
        return Outcome(Result.UNKNOWN, _patient_evidence(ctx), ("deceasedBoolean is neither true nor false",))
    if p.deceased_date and not is_date_time(p.deceased_date):
        why = f"deceasedDateTime {p.deceased_date!r} is not a valid date: the patient may have died before as-of"
        return Outcome(Result.UNKNOWN, _patient_evidence(ctx), (why,))
    day = p.deceased_date[:10] if p.deceased_date else None
    if day and day <= ctx.as_of_text:
        ev = (Evidence(f"Patient/{p.id}", date=day),)
        return Outcome(Result.NOT_MET, ev, (f"deceased on {day}",))
    return Outcome(Result.MET, (), ())
