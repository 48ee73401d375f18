"""What a rule sees of one patient: the patient's reduced rows, the reference date, and the
outcomes its batch's queries gave."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ..model import Outcome, PatientRecord


@dataclass(slots=True)
class Context:
    record: PatientRecord
    as_of: date
    as_of_text: str = ""
    # bits of the rules some fact of this patient can matter to (plan.Plan); -1: all of them
    relevant: int = -1
    # the outcomes of the rules decided by query, by id(rule), then patient id (plan.Plan.answers)
    answers: dict[int, dict[str, Outcome]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.as_of_text = self.as_of.isoformat()
