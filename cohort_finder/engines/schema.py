"""The one logical definition of the reduce step, shared by every SQL engine.

- COLUMNS: the FHIR fields `facts.py` reads, with their types. Engines read NDJSON with exactly
  these columns (no schema inference: faster, and a line whose field has the wrong type fails
  the read instead of being silently nulled; that file is then read by the Python reader,
  which names the bad line).
- reduce_sql(): the query that keeps Patients, Medications and the clinical rows whose codes
  (or, for medications, ingredient names) the trial uses, written once in DuckDB's dialect;
  Spark runs the same text transpiled by sqlglot. It is a coarse filter (ICD-10 by
  three-character category, names by regular expression): the Python rules match precisely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..criteria import Trial
from ..facts import CLINICAL_TYPES, CODE_SPACE
from ..reduce import trial_codes
from ..resource_types import RESOURCE_TYPES
from ..terminology import ICD10_SYSTEMS

_CODING = "STRUCT(system VARCHAR, code VARCHAR, display VARCHAR)"
_CONCEPT = f"STRUCT(coding {_CODING}[], text VARCHAR)"
_QUANTITY = "STRUCT(value DOUBLE, comparator VARCHAR, unit VARCHAR, code VARCHAR)"
_REF = "STRUCT(reference VARCHAR)"
_PERIOD = 'STRUCT("start" VARCHAR, "end" VARCHAR)'
_DURATION = "STRUCT(value DOUBLE, unit VARCHAR, code VARCHAR)"

COLUMNS: dict[str, str] = {
    "resourceType": "VARCHAR",
    "id": "VARCHAR",
    "meta": "STRUCT(lastUpdated VARCHAR)",
    "status": "VARCHAR",
    "intent": "VARCHAR",
    "subject": _REF,
    "patient": _REF,
    "code": _CONCEPT,
    "clinicalStatus": _CONCEPT,
    "verificationStatus": _CONCEPT,
    "onsetDateTime": "VARCHAR",
    "onsetPeriod": _PERIOD,
    "onsetString": "VARCHAR",
    "recordedDate": "VARCHAR",
    "abatementDateTime": "VARCHAR",
    "abatementPeriod": _PERIOD,
    "abatementString": "VARCHAR",
    "abatementBoolean": "BOOLEAN",
    "abatementAge": "JSON",
    "abatementRange": "JSON",
    "effectiveDateTime": "VARCHAR",
    "effectivePeriod": _PERIOD,
    "issued": "VARCHAR",
    "valueQuantity": _QUANTITY,
    "valueCodeableConcept": _CONCEPT,
    "valueString": "VARCHAR",
    "referenceRange": f"STRUCT(high {_QUANTITY})[]",
    "performedDateTime": "VARCHAR",
    "performedPeriod": _PERIOD,
    "medicationCodeableConcept": _CONCEPT,
    "medicationReference": _REF,
    "authoredOn": "VARCHAR",
    "dispenseRequest": (
        f"STRUCT(validityPeriod {_PERIOD}, expectedSupplyDuration {_DURATION}, numberOfRepeatsAllowed INTEGER)"
    ),
    "dosageInstruction": f'STRUCT(timing STRUCT("repeat" STRUCT(boundsPeriod {_PERIOD})))[]',
    "whenHandedOver": "VARCHAR",
    "whenPrepared": "VARCHAR",
    "daysSupply": _DURATION,
    "contained": "JSON",
    "gender": "VARCHAR",
    "birthDate": "VARCHAR",
    "deceasedBoolean": "BOOLEAN",
    "deceasedDateTime": "VARCHAR",
    "name": "STRUCT(given VARCHAR[], family VARCHAR, text VARCHAR)[]",
    "identifier": f"STRUCT(type STRUCT(coding {_CODING}[]), value VARCHAR)[]",
}

CLINICAL = tuple(sorted(CLINICAL_TYPES))  # the types facts.py turns into rows, in a stable order

# What DuckDB is told to read: COLUMNS with every leaf as JSON, containers (STRUCT, lists) as
# declared. A container of the wrong shape still fails the scan (the file then goes to the
# Python reader, which names the line); a leaf reaches Python as the file wrote it (`"13"`
# stays a string, `1960` a number, NaN stays NaN), where typed leaves would be converted on the
# way (DuckDB reads "13" into a DOUBLE as 13.0 and 1960 into a VARCHAR as "1960"). So facts.py
# sees a kept row exactly as the Python engine sees the line, and judges it the same way.
DUCKDB_COLUMNS: dict[str, str] = {
    name: re.sub(r"\b(VARCHAR|DOUBLE|BOOLEAN|INTEGER)\b", "JSON", kind) for name, kind in COLUMNS.items()
}


def _first_text_reference(prefix: str = "") -> str:
    """The patient reference as facts.patient_reference reads it: the first of subject and
    patient whose `reference` is a string (DUCKDB_COLUMNS, JSON leaves)."""
    return (
        f"CASE WHEN json_type({prefix}subject.reference) = 'VARCHAR' THEN {prefix}subject.reference->>'$' "
        f"WHEN json_type({prefix}patient.reference) = 'VARCHAR' THEN {prefix}patient.reference->>'$' END"
    )


def _non_text_coding(codings: str) -> str:
    """Some coding's system or code is there but not a string (facts.codings_of raises)."""
    other = "coalesce(json_type({0}), 'NULL') NOT IN ('VARCHAR', 'NULL')"
    test = f"{other.format('c.system')} OR {other.format('c.code')}"
    return f"coalesce(list_bool_or(list_transform({codings}, lambda c: {test})), false)"


def duckdb_views(scan: str, raw_scan: str) -> list[str]:
    """DuckDB's two views over the same files: `resources` (`scan`: read_ndjson with COLUMNS,
    typed, fast; the first pass and the orphan check) and `resources_raw` (`raw_scan`: with
    DUCKDB_COLUMNS; the second pass, which hands kept rows to Python). Both have
    - `_ref`: the patient reference;
    - `_bad` (raw only): a row whose identity a typed column would misread, or that the Python
      reader refuses: a resourceType FHIR does not define, an id that is not a string (or is
      empty), a clinical row without a string patient reference, a coding whose system or
      code is not a string. The Python reader makes such a row an error of its line, so its
      file goes to that reader (the second pass keeps such rows, so that the engine sees them)."""
    return [
        f"CREATE OR REPLACE TEMP VIEW resources AS SELECT *, coalesce(subject.reference, patient.reference) AS _ref "
        f"FROM {scan}",
        f"""CREATE OR REPLACE TEMP VIEW resources_raw AS
SELECT * REPLACE (r.resourceType->>'$' AS resourceType, r.id->>'$' AS id),
  {_first_text_reference("r.")} AS _ref,
  (json_type(r.resourceType) IS DISTINCT FROM 'VARCHAR'
   OR r.resourceType->>'$' NOT IN ({", ".join(_sql_text(t) for t in sorted(RESOURCE_TYPES))})
   OR json_type(r.id) IS DISTINCT FROM 'VARCHAR' OR r.id->>'$' = ''
   OR (r.resourceType->>'$' IN ({_clinical()}) AND {_first_text_reference("r.")} IS NULL)
   OR {_non_text_coding(_codings("r"))}) AS _bad
FROM {raw_scan} AS r""",
    ]


# The COLUMNS facts.py reads for each type: a kept row goes to Python with these only. (Every
# declared column, null or not, made a hospital-sized run spend seconds building dicts of
# nulls.) tests/engines/test_schema.py checks that facts.py gives the same row from a resource
# with every column filled as from its projection here.
_COMMON = ("resourceType", "id", "meta", "status", "subject", "patient")
_MEDICATION_USE = (*_COMMON, "medicationCodeableConcept", "medicationReference", "contained")
TYPE_COLUMNS: dict[str, tuple[str, ...]] = {
    "Condition": (
        *_COMMON,
        "code",
        "clinicalStatus",
        "verificationStatus",
        "onsetDateTime",
        "onsetPeriod",
        "onsetString",
        "recordedDate",
        "abatementDateTime",
        "abatementPeriod",
        "abatementString",
        "abatementBoolean",
        "abatementAge",
        "abatementRange",
    ),
    "Observation": (
        *_COMMON,
        "code",
        "effectiveDateTime",
        "effectivePeriod",
        "issued",
        "valueQuantity",
        "valueCodeableConcept",
        "valueString",
        "referenceRange",
    ),
    "Procedure": (*_COMMON, "code", "performedDateTime", "performedPeriod"),
    "MedicationStatement": (*_MEDICATION_USE, "effectivePeriod", "effectiveDateTime"),
    "MedicationRequest": (*_MEDICATION_USE, "intent", "authoredOn", "dispenseRequest", "dosageInstruction"),
    "MedicationDispense": (*_MEDICATION_USE, "whenHandedOver", "whenPrepared", "daysSupply"),
    "Patient": (
        *("resourceType", "id", "meta", "gender", "birthDate", "deceasedBoolean", "deceasedDateTime", "name"),
        "identifier",
    ),
    "Medication": ("resourceType", "id", "meta", "code"),
}


@dataclass(frozen=True, slots=True)
class ReduceTables:
    """The trial's codes as rows, for equi-joins every engine can do."""

    codes: list[tuple[str, str]]  # (system, code), exact
    icd_categories: list[str]  # three-character ICD-10 categories covering prefixes and ranges
    name_pattern: str | None  # medication ingredient names, lower case, \b-bounded alternation


def _categories(lo: str, hi: str) -> list[str]:
    """Every category from lo to hi compared as text, e.g. O00-O9A: O00..O99, O9A."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for letter in alphabet[10:]:
        for second in alphabet[:10]:
            for third in alphabet:
                category = f"{letter}{second}{third}"
                if lo <= category <= hi:
                    out.append(category)
    return out


def reduce_tables(trial: Trial) -> ReduceTables:
    codes = trial_codes(trial)
    icd = {p[:3] for p in codes.codes.icd10_prefixes}
    for lo, hi in codes.codes.icd10_ranges:
        icd.update(_categories(lo, hi))
    exact = set(codes.codes.exact)
    names: set[str] = set()
    for meds in codes.medications:
        for ingredient in meds.ingredients:
            exact |= ingredient.codes
            names.update(n.lower() for n in ingredient.names)
        exact |= set(meds.products)
    pattern = r"\b(" + "|".join(re.escape(n) for n in sorted(names)) + r")\b" if names else None
    return ReduceTables(sorted(exact), sorted(icd), pattern)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- the reduce query, built from shared pieces ------------------------------------------------
# One logical definition: keep a row when it is a Patient or a Medication, points at a
# Medication (its codes live there), names an ingredient, or carries a coding in the trial's
# codes or ICD-10 categories. Two shapes of the same predicate: DuckDB decorrelates a subquery
# over the row's own codings (one scan); Spark cannot, so it explodes codings and joins.


def _codings(r: str) -> str:
    return (
        f"list_concat(coalesce({r}.code.coding, []), coalesce({r}.valueCodeableConcept.coding, []), "
        f"coalesce({r}.medicationCodeableConcept.coding, []))"
    )


def _always_kept(tables: ReduceTables) -> str:
    name_match = "FALSE"
    if tables.name_pattern:
        # the concept as text holds its `text` and every coding's display (and harmless URLs)
        name_match = (
            f"regexp_matches(lower(CAST(r.medicationCodeableConcept AS VARCHAR)), {_sql_text(tables.name_pattern)})"
        )
    return (
        # a line without resourceType, a Bundle on a line, or a row whose identity cannot be
        # read (`_bad`), is kept so that the engine sees it and hands that file to the Python
        # reader (which names the line, or opens the Bundle)
        "r._bad OR r.resourceType IS NULL OR r.resourceType IN ('Patient', 'Medication', 'Bundle') "
        "OR r.medicationReference.reference IS NOT NULL "
        f"OR r.contained IS NOT NULL OR ({name_match})"
    )


def _icd_systems() -> str:
    return ", ".join(_sql_text(s) for s in sorted(ICD10_SYSTEMS))


def _icd_category(code: str) -> str:
    """A code's three-character ICD-10 category (dots and case ignored, as terminology.py)."""
    return f"substr(upper(replace({code}, '.', '')), 1, 3)"


def _trimmed(expression: str) -> str:
    """A code trimmed as facts.py trims codes (CODE_SPACE)."""
    return f"trim({expression}, {_sql_text(CODE_SPACE)})"


def _coding_matches(c: str) -> str:
    return (
        f"EXISTS (SELECT 1 FROM trial_codes AS tc WHERE tc.system = {c}.system AND tc.code = {c}.code) "
        f"OR ({c}.system IN ({_icd_systems()}) AND EXISTS (SELECT 1 FROM trial_icd AS ti "
        f"WHERE ti.category = {_icd_category(f'{c}.code')}))"
    )


def _clinical() -> str:
    return ", ".join(_sql_text(t) for t in CLINICAL)


def reduce_sql(tables: ReduceTables) -> str:
    """Join shape (for Spark, transpiled from this DuckDB text by sqlglot): kept rows of the
    view `resources` (COLUMNS plus `filename`), with tables `trial_codes(system, code)` and
    `trial_icd(category)`."""
    return f"""
WITH codings AS (
  SELECT r.filename, r.resourceType, r.id, c AS c
  FROM resources AS r, UNNEST({_codings("r")}) AS t(c)
  WHERE r.resourceType IN ({_clinical()})
), matched AS (
  SELECT DISTINCT k.filename, k.resourceType, k.id FROM codings AS k WHERE {_coding_matches("k.c")}
)
SELECT r.* FROM resources AS r
WHERE {_always_kept(tables)}
   OR EXISTS (SELECT 1 FROM matched AS m
              WHERE m.filename = r.filename AND m.resourceType = r.resourceType AND m.id = r.id)
"""


def matched_sql() -> str:
    """Step 1 of the streaming shape (DuckDB, over the view `resources`): one scan that gives two
    things, as rows (kind, value): the keys of clinical rows with a coding in the trial's tokens
    (`trial_tokens(token)`, `system|code`) or ICD-10 categories (kind 'key'), and every distinct
    patient reference of the rows that are not Patients or Medications (kind 'ref'), so the
    orphan check scans again only when some reference is not `Patient/<id>` of a known
    patient. Codings are unnested row by row (a row without any is kept as one NULL, for its
    reference) and tested against small tables: memory holds the matches and references."""
    system, code = _trimmed("k.c.system"), _trimmed("k.c.code")
    return f"""
SELECT CASE WHEN grouping(key) = 0 THEN 'key' ELSE 'ref' END AS kind, coalesce(key, ref) AS value
FROM (
  SELECT k.ref,
    CASE WHEN k.resourceType IN ({_clinical()})
          AND ({system} || '|' || {code} IN (SELECT token FROM trial_tokens)
               OR ({system} IN ({_icd_systems()})
                   AND {_icd_category(code)} IN (SELECT category FROM trial_icd)))
         THEN k.filename || '|' || k.resourceType || '|' || k.id END AS key
  FROM (SELECT r.filename, r.resourceType, r.id, r._ref AS ref,
               unnest(CASE WHEN len({_codings("r")}) = 0 THEN [NULL] ELSE {_codings("r")} END) AS c
        FROM resources AS r WHERE r.resourceType NOT IN ('Patient', 'Medication')) AS k
) AS m
GROUP BY GROUPING SETS ((key), (ref))
HAVING coalesce(key, ref) IS NOT NULL
"""


def _as_json() -> str:
    """A kept row as JSON text with its type's columns (TYPE_COLUMNS; any other type whole):
    orjson turns that into Python faster than DuckDB's own row conversion."""
    cases = []
    for rtype, cols in TYPE_COLUMNS.items():
        fields = ", ".join(f"{_quoted(c)} := r.{_quoted(c)}" for c in cols)
        cases.append(f"WHEN {_sql_text(rtype)} THEN to_json(struct_pack({fields}))")
    return f"(CASE r.resourceType {' '.join(cases)} ELSE to_json(r) END)::VARCHAR"


def _quoted(name: str) -> str:
    return '"' + name + '"'


def kept_sql(tables: ReduceTables) -> str:
    """Step 2 (over `resources_raw`): every kept row (`matched(key)` from step 1), as its file's name, its type, its
    JSON text and whether its identity is unreadable (`_bad`)."""
    return f"""
SELECT r.filename, r.resourceType, {_as_json()} AS resource, r._bad FROM resources_raw AS r
WHERE {_always_kept(tables)}
   OR (r.resourceType IN ({_clinical()})
       AND r.filename || '|' || r.resourceType || '|' || r.id IN (SELECT key FROM matched))
"""


def references_sql() -> str:
    """Patient references that are not literally `Patient/<id>` of a known patient (table
    `known_patients(ref)`): orphans, and absolute URLs the caller checks precisely. Bulk
    exports write relative references, so this is usually empty."""
    return """
SELECT r.filename, r.resourceType, r.id, r._ref AS ref
FROM resources AS r
WHERE r._ref IS NOT NULL
  AND r.resourceType NOT IN ('Patient', 'Medication')
  AND r._ref NOT IN (SELECT ref FROM known_patients)
"""
