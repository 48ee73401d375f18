"""The coordinator's worklist: export it (CSV or .xlsx) from the run store, read it back.

One row per candidate and possible patient of the trial's latest complete run: who (name,
identifier), status, what is new since the run before, the key values (lab results with their
dates), what is still unknown, the checklist to check by hand, the last decision, and two empty
columns, `decision` and `note`, for the coordinator to fill in. `review import` reads the same
file back, row by row: a row with a decision is a decision to record. The file holds PHI: it is
written owner-only (0600), like every output.

Cells from the record that a spreadsheet would run as a formula get a leading apostrophe
(csv_report.guard_cell); reading back takes it off again.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..store.decisions import DECISIONS, Decision, Proposed
from .atomic import write_atomic
from .csv_report import guard_cell

COLUMNS = (
    "trial",
    "patient",
    "name",
    "identifier",
    "status",
    "since_last_run",
    "key_values",
    "unknown",
    "to_check_by_hand",
    "last_decision",
    "last_decision_by",
    "last_decision_at",
    "last_note",
    "decision",  # the coordinator's: one of DECISIONS, or empty
    "note",
)
_INPUT = ("decision", "note")


@dataclass(frozen=True, slots=True)
class WorklistRow:
    trial: str
    patient: str
    name: str | None
    identifier: str | None
    status: str
    detail: dict[str, Any]  # the patient's candidates.json object
    texts: dict[str, str]  # criterion id -> protocol text
    decision: Decision | None

    def cells(self) -> list[str]:
        criteria = self.detail.get("criteria", [])
        change = self.detail.get("change")
        since = ""
        if change:
            since = "new" if change["status_before"] in ("absent", "excluded") else f"was {change['status_before']}"
            if change.get("criteria"):
                since += ": " + ", ".join(change["criteria"])
        last = self.decision
        return [
            self.trial,
            self.patient,
            self.name or "",
            self.identifier or "",
            self.status,
            since,
            "; ".join(_key_values(criteria)),
            "; ".join(c["id"] for c in criteria if c["result"] == "unknown"),
            "; ".join(f"{c['id']}: {self.texts.get(c['id'], '')}" for c in criteria if c["result"] == "manual"),
            last.decision if last else "",
            (last.by or "") if last else "",
            last.at if last else "",
            (last.note or "") if last else "",
            "",
            "",
        ]


def _key_values(criteria: Iterable[dict[str, Any]]) -> Iterable[str]:
    """The measured values behind the results (labs): `hba1c_over_12 8.1 % on 2026-05-01`."""
    for c in criteria:
        for ev in c.get("evidence", []):
            if isinstance(ev.get("value"), int | float) or (isinstance(ev.get("value"), str) and ev.get("unit")):
                unit = f" {ev['unit']}" if ev.get("unit") else ""
                when = f" on {ev['date']}" if ev.get("date") else ""
                yield f"{c['id']} {ev['value']}{unit}{when}"


def rows_from_store(
    worklist: Iterable[tuple[str, str, str | None, str | None, str, str]],
    texts: dict[str, str],
    decisions: dict[str, Decision],
) -> list[WorklistRow]:
    """Worklist rows from the store's `worklist` table (trial, patient, name, identifier,
    status, detail JSON), candidates first, then by id."""
    rows = [
        WorklistRow(trial, patient, name, identifier, status, json.loads(detail), texts, decisions.get(patient))
        for trial, patient, name, identifier, status, detail in worklist
    ]
    return sorted(rows, key=lambda r: (r.status != "candidate", r.patient))


def export(rows: Sequence[WorklistRow], path: Path) -> None:
    if path.suffix.lower() == ".xlsx":
        write_atomic(path, _xlsx(rows))
    elif path.suffix.lower() == ".csv":
        write_atomic(path, _csv(rows))
    else:
        raise UsageError(f"{path}: the worklist is written as .csv or .xlsx")


def _csv(rows: Sequence[WorklistRow]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([guard_cell(cell) for cell in row.cells()])
    return out.getvalue().encode("utf-8")


def _xlsx(rows: Sequence[WorklistRow]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "worklist"
    sheet.append(list(COLUMNS))
    for row in rows:
        sheet.append([guard_cell(cell) for cell in row.cells()])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    fill = PatternFill("solid", fgColor="FFF2CC")  # the columns to fill in
    for name in _INPUT:
        column = get_column_letter(COLUMNS.index(name) + 1)
        for cell in sheet[column]:
            cell.fill = fill
    choice = DataValidation(type="list", formula1=f'"{",".join(DECISIONS)}"', allow_blank=True)
    choice.error, choice.errorTitle = f"One of: {', '.join(DECISIONS)}", "Unknown decision"
    sheet.add_data_validation(choice)
    decision_column = get_column_letter(COLUMNS.index("decision") + 1)
    choice.add(f"{decision_column}2:{decision_column}{max(2, len(rows) + 1)}")
    widths = {"name": 22, "key_values": 48, "unknown": 36, "to_check_by_hand": 60, "note": 30, "last_note": 30}
    for index, name in enumerate(COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = widths.get(name, 16)
    sheet.freeze_panes = "C2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def read(path: Path, by: str | None) -> list[Proposed]:
    """The decisions a filled-in worklist holds (rows with a decision), each naming its row.
    A file without the worklist's columns is refused (UsageError)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            table = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}: not a UTF-8 CSV file ({exc})") from exc
    elif suffix == ".xlsx":
        table = _xlsx_table(path)
    else:
        raise UsageError(f"{path}: a worklist is a .csv or .xlsx file")
    if not table:
        raise UsageError(f"{path}: empty file")
    header = [str(h).strip() for h in table[0]]
    missing = [name for name in ("trial", "patient", "decision") if name not in header]
    if missing:
        raise UsageError(f"{path}: not a worklist: no {', '.join(missing)} column")
    at = {name: header.index(name) for name in header}
    found = []
    for number, raw in enumerate(table[1:], start=2):
        cells = [_unguard(str(c).strip()) if c is not None else "" for c in raw]

        def cell(name: str, cells: list[str] = cells) -> str:
            index = at.get(name)
            return cells[index] if index is not None and index < len(cells) else ""

        if not cell("decision"):
            continue
        found.append(
            Proposed(
                cell("trial"), cell("patient"), cell("decision"), cell("note") or None, by, f"{path.name}:row {number}"
            )
        )
    return found


def _xlsx_table(path: Path) -> list[list[Any]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=False)  # a typed "=x" is its text, never evaluated
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise UsageError(f"{path}: not an .xlsx workbook ({type(exc).__name__})") from exc
    try:
        sheet = book["worklist"] if "worklist" in book.sheetnames else book.worksheets[0]
        return [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        book.close()


def _unguard(text: str) -> str:
    """Take off the apostrophe guard_cell put before a would-be formula."""
    return text[1:] if text.startswith("'") and guard_cell(text[1:]) != text[1:] else text
