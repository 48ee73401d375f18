"""The rows that flow between the stages: facts in, results out.

`facts` is the only module that reads FHIR JSON; everything downstream (reduce, evaluate,
report) reads these flat rows. Keeping them flat and typed is what lets an engine (DuckDB,
Spark) produce the same rows at scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str | None = None

    @property
    def token(self) -> str:
        """`system|code`, the form evidence uses."""
        return f"{self.system}|{self.code}"


@dataclass(frozen=True, slots=True)
class PatientFact:
    id: str
    gender: str | None
    birth_date: str | None  # as written: YYYY, YYYY-MM or YYYY-MM-DD (or not a date: see problems)
    deceased: bool  # deceasedBoolean true
    deceased_date: str | None  # deceasedDateTime as written (or not a dateTime: see problems)
    last_updated: str | None = None
    name: str | None = None  # for the investigator's report only; never logged
    identifier: str | None = None  # the MRN (else the first identifier): for people, never logged
    deceased_unreadable: bool = False  # deceasedBoolean present but not true or false
    problems: tuple[str, ...] = ()  # what is wrong with its values, worded after "Patient/id"


@dataclass(slots=True)
class Fact:
    """One clinical resource (Condition, Observation, MedicationStatement, MedicationRequest,
    Procedure) as a flat row. Dates are the first 10 characters of the value (contract §3: no
    time-zone conversion); `*_ts` keeps the whole value for tie-breaks.

    Read-only by convention (linking makes changed copies with dataclasses.replace), but not
    frozen: a frozen dataclass sets each of these 30 fields through object.__setattr__, which
    made building the rows of a hospital-sized source five times slower (measured)."""

    resource_type: str
    resource_id: str
    patient_id: str
    codings: tuple[Coding, ...] = ()
    text: str | None = None  # CodeableConcept.text (medication: concept or Medication text)
    status: str | None = None
    last_updated: str | None = None
    # Condition
    clinical_status: str | None = None
    verification_status: str | None = None
    onset: str | None = None
    recorded: str | None = None
    abated: bool = False  # any abatement[x] present
    abatement: str | None = None  # its date, when it has one
    # Observation
    effective: str | None = None  # effectiveDateTime, else effectivePeriod.start, else issued
    effective_ts: str | None = None
    value: float | None = None
    comparator: str | None = None
    unit_code: str | None = None
    unit_text: str | None = None
    value_kind: str | None = None  # "quantity", "codeable", "other" or None (no value)
    value_codings: tuple[Coding, ...] = ()
    ref_high: float | None = None
    ref_high_unit_code: str | None = None
    ref_high_unit_text: str | None = None
    # Procedure
    performed_start: str | None = None
    performed_end: str | None = None
    # MedicationStatement / MedicationRequest / MedicationDispense: what the record says; the
    # days it covers are the medication rule's to work out (rules/medication_days.py)
    intent: str | None = None
    period_start: str | None = None  # a stated period: effective[x], validityPeriod, boundsPeriod
    period_end: str | None = None  # None with period_start set: open end
    authored: str | None = None  # MedicationRequest.authoredOn, used where no period is stated
    supply_duration: float | None = None  # expectedSupplyDuration, in days
    repeats: int | None = None  # numberOfRepeatsAllowed
    handed_over: str | None = None  # MedicationDispense: whenHandedOver, else whenPrepared
    days_supply: float | None = None  # MedicationDispense.daysSupply, in days
    medication_ref: str | None = None  # unresolved Medication reference (resolved in linking)
    # what is wrong with its values, each worded to follow "Type/id" ("has an invalid date
    # (...)"): a rule that would read it cannot use it (evaluate/batch.py link)
    problems: tuple[str, ...] = ()


ALL_PATIENTS = "*"  # RunError.patient_id of a failure whose patients cannot be told (a failed page)


@dataclass(frozen=True, slots=True)
class RunError:
    """One thing that could not be read. `patient_id` names the patient whose data it held,
    when it could be told; `resource_type` says which of their data it was."""

    source: str
    message: str
    patient_id: str | None = None
    resource_type: str | None = None


class Result(StrEnum):
    MET = "met"
    NOT_MET = "not_met"
    UNKNOWN = "unknown"
    MANUAL = "manual"


def ruling_out(kind: str) -> Result:
    """The result with which a criterion of this kind excludes a patient (contract §2)."""
    return Result.NOT_MET if kind == "inclusion" else Result.MET


def rules_out(kind: str, result: Result) -> bool:
    return result is ruling_out(kind)


class Status(StrEnum):
    CANDIDATE = "candidate"
    POSSIBLE = "possible"
    EXCLUDED = "excluded"


@dataclass(frozen=True, slots=True)
class Evidence:
    resource: str  # Type/id
    code: str | None = None  # system|code
    date: str | None = None
    value: float | str | None = None
    unit: str | None = None
    original_value: float | None = None
    original_unit: str | None = None
    uln: float | None = None
    uln_source: str | None = None  # "referenceRange" or "default"
    matched_by: str | None = None  # "code", "product", "name"
    display: str | None = None  # the matched coding's display, as the record gives it


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one rule (or a combination of rules) says about one patient."""

    result: Result
    evidence: tuple[Evidence, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CriterionResult:
    id: str
    kind: str  # inclusion / exclusion
    result: Result
    evidence: tuple[Evidence, ...] = ()
    note: str | None = None


@dataclass(frozen=True, slots=True)
class PatientResult:
    id: str
    status: Status
    age: int | None
    gender: str | None
    criteria: tuple[CriterionResult, ...]
    name: str | None = None  # for the investigator's HTML only; never logged
    identifier: str | None = None  # the MRN, for the report and worklist only; never logged


@dataclass(slots=True)
class PatientRecord:
    """One patient's reduced rows, what evaluation sees."""

    patient: PatientFact
    facts: list[Fact] = field(default_factory=list)
    # resource types of this patient that could not be read (contract §4); "*" = any type
    incomplete: set[str] = field(default_factory=set)
    # resources some rule would read whose values are unusable: (the rules' bits, why)
    unusable: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CriterionInfo:
    id: str
    kind: str
    text: str
    computable: bool
    # The label of the trial's key value this criterion's evidence shows (its lab analyte, when
    # the criteria file's `key_values` names it): the overview's columns such as latest HbA1c.
    key: str | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    """Everything the reports render; they never recompute clinical logic."""

    trial_id: str
    trial_title: str
    as_of: str  # YYYY-MM-DD
    source: str
    generated_at: str  # ISO 8601 UTC, e.g. 2026-11-25T02:00:03Z
    criteria: tuple[CriterionInfo, ...]
    patients: tuple[PatientResult, ...]  # sorted by id
    errors: tuple[RunError, ...]
    source_lacks: tuple[str, ...] = ()  # resource types the server does not offer (contract §3)
