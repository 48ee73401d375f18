"""candidates.csv: one row a patient (contract §2), for spreadsheets.

Written with the csv module rather than pandas: the table is a plain list of rows, and the
csv module gives exact control over quoting and line endings without a heavy import or
type-stub dependency.

Ids and genders come from the source record, so a hostile or careless value such as
`=HYPERLINK(...)` would run as a formula when a coordinator opens the file in a spreadsheet
(CSV/formula injection). Such cells get a leading apostrophe, which spreadsheets show as text.
"""

from __future__ import annotations

import csv
import io

from cohort_finder.model import RunResult

_FIXED_COLUMNS = ("id", "status", "age", "gender")
# Characters a spreadsheet treats as the start of a formula (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def guard_cell(value: str) -> str:
    """Neutralise a cell a spreadsheet would read as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _cell(value: object) -> str:
    if value is None:
        return ""  # unknown age / gender: an empty cell, not the text "None"
    return guard_cell(str(value))


def render_csv(run: RunResult) -> bytes:
    """candidates.csv bytes: UTF-8, header row, "\\n" line endings."""
    criterion_ids = [c.id for c in run.criteria]  # criteria-file order, `alive` first
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([_cell(h) for h in (*_FIXED_COLUMNS, *criterion_ids)])
    for p in run.patients:
        # Look results up by id rather than zipping by position, so a patient whose criteria
        # list were ever shorter or reordered cannot shift values into the wrong column.
        results = {cr.id: cr.result.value for cr in p.criteria}
        row = [p.id, p.status.value, p.age, p.gender]
        row += [results.get(cid) for cid in criterion_ids]
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue().encode("utf-8")
