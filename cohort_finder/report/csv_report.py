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
from collections.abc import Sequence

from cohort_finder.model import CriterionInfo, PatientResult, RunResult

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


class CsvRows:
    """candidates.csv a row at a time: UTF-8, "\\n" line endings, the header first."""

    def __init__(self, criteria: Sequence[CriterionInfo]) -> None:
        self.criterion_ids = [c.id for c in criteria]  # criteria-file order, `alive` first
        self._buf = io.StringIO(newline="")
        self._writer = csv.writer(self._buf, lineterminator="\n")

    def _take(self, row: list[object]) -> bytes:
        self._writer.writerow([_cell(v) for v in row])
        text = self._buf.getvalue()
        self._buf.seek(0)
        self._buf.truncate()
        return text.encode("utf-8")

    def header(self) -> bytes:
        return self._take([*_FIXED_COLUMNS, *self.criterion_ids])

    def row(self, p: PatientResult) -> bytes:
        # Look results up by id rather than zipping by position, so a patient whose criteria
        # list were ever shorter or reordered cannot shift values into the wrong column.
        results = {cr.id: cr.result.value for cr in p.criteria}
        return self._take([p.id, p.status.value, p.age, p.gender, *(results.get(c) for c in self.criterion_ids)])


def render_csv(run: RunResult) -> bytes:
    """candidates.csv bytes: UTF-8, header row, "\\n" line endings."""
    rows = CsvRows(run.criteria)
    return rows.header() + b"".join(rows.row(p) for p in run.patients)
