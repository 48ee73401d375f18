"""FHIR's date primitives: which written dates are dates at all.

The rules compare calendar dates as written (contract §3), so a value must at least be a real
date: `2026-13-45` or `2026-02-30` is not, and a resource carrying one has no usable date (the
rule says so instead of "none found"). Checked as FHIR R4 defines `date` and `dateTime`
(http://hl7.org/fhir/R4/datatypes.html), with one leniency: a time without a time zone is
accepted, since only the written date is read and EHR exports often leave the zone out.
"""

from __future__ import annotations

import calendar
import functools
import re

_DATE = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
)
_TIME = re.compile(
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?"
)


@functools.lru_cache(maxsize=65536)
def is_date(text: str) -> bool:
    """FHIR `date`: YYYY, YYYY-MM or YYYY-MM-DD, a real one (no 30 February). Cached: a source
    repeats the same days over and over."""
    if _DATE.fullmatch(text) is None:
        return False
    return len(text) < 10 or int(text[8:10]) <= calendar.monthrange(int(text[:4]), int(text[5:7]))[1]


def is_date_time(text: str) -> bool:
    """FHIR `dateTime` (or `instant`): a full date with a time, or a date."""
    if len(text) <= 10:
        return is_date(text)
    return is_date(text[:10]) and _TIME.fullmatch(text, 10) is not None
