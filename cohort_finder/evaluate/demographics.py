"""Rules on the Patient resource itself: alive, age, sex."""

from __future__ import annotations

import calendar
from datetime import date

from ..criteria import AgeRule, SexRule
from ..model import Evidence, Outcome, Result
from ..primitives import is_date, is_date_time
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


def _years(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def age_range(birth_date: str | None, as_of: date) -> tuple[int, int] | None:
    """(youngest, oldest) possible age in whole years; a partial birthDate widens it."""
    if not birth_date or not is_date(birth_date):
        return None
    try:
        parts = [int(x) for x in birth_date[:10].split("-")]
        if len(parts) == 3:
            age = _years(date(*parts), as_of)
            return age, age
        if len(parts) == 2:
            first, last = date(parts[0], parts[1], 1), date(parts[0], parts[1], calendar.monthrange(*parts)[1])
        elif len(parts) == 1:
            first, last = date(parts[0], 1, 1), date(parts[0], 12, 31)
        else:
            return None
    except ValueError:
        return None
    return _years(last, as_of), _years(first, as_of)


def age(rule: AgeRule, ctx: Context) -> Outcome:
    p = ctx.record.patient
    found = age_range(p.birth_date, ctx.as_of)
    if found is None:
        why = "birthDate missing" if not p.birth_date else f"birthDate {p.birth_date!r} is not a valid date"
        return Outcome(Result.UNKNOWN, (), (why,))
    youngest, oldest = found

    def inside(years: int) -> bool:
        return (rule.min is None or years >= rule.min) and (rule.max is None or years <= rule.max)

    ev = (Evidence(f"Patient/{p.id}", date=p.birth_date, value=youngest if youngest == oldest else None, unit="a"),)
    shown = str(youngest) if youngest == oldest else f"{youngest} or {oldest} (birthDate {p.birth_date})"
    if inside(youngest) and inside(oldest):
        return Outcome(Result.MET, ev, (f"age {shown}",))
    if not inside(youngest) and not inside(oldest) and (youngest == oldest or _same_side(rule, youngest, oldest)):
        return Outcome(Result.NOT_MET, ev, (f"age {shown}",))
    return Outcome(Result.UNKNOWN, ev, (f"age {shown}: the partial birthDate straddles a limit",))


def _same_side(rule: AgeRule, youngest: int, oldest: int) -> bool:
    below = rule.min is not None and oldest < rule.min
    above = rule.max is not None and youngest > rule.max
    return below or above


def sex(rule: SexRule, ctx: Context) -> Outcome:
    gender = ctx.record.patient.gender
    ev = _patient_evidence(ctx)
    if rule.negate:
        inside = gender not in rule.values
        return Outcome(Result.MET if inside else Result.NOT_MET, ev, (f"gender {gender or 'not recorded'}",))
    if gender is None:
        return Outcome(Result.UNKNOWN, (), ("gender not recorded",))
    return Outcome(Result.MET if gender in rule.values else Result.NOT_MET, ev, (f"gender {gender}",))
