"""Value sets from `mappings/` and code matching.

Matching follows contract §3: system and code must both match; ICD-10 codes match with or
without the dot, entries are prefixes (`E11` covers `E11.42`) or ranges of three-character
categories compared as text (`C00-C96`, `O00-O9A`). A coding without a system never matches.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CriteriaError
from .model import Coding
from .units import AnalyteUnits, LinearConversion, UnitConverter
from .yamlio import LineDict, LineList, load_yaml

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
HCPCS_UMLS = "http://www.nlm.nih.gov/research/umls/hcpcs"  # the URI VSAC expansions use

# A mapping file's short system name, and every URI a record may write it with.
SYSTEMS: dict[str, tuple[str, ...]] = {
    "loinc": (LOINC,),
    "snomed": (SNOMED,),
    "icd10cm": (ICD10CM, ICD10),
    "rxnorm": (RXNORM,),
    "atc": (ATC,),
    "cpt": (CPT,),
    "hcpcs": (HCPCS, HCPCS_UMLS),
}
ICD10_SYSTEMS = frozenset(SYSTEMS["icd10cm"])
_RANGE = re.compile(r"^([A-Z][0-9][0-9A-Z])-([A-Z][0-9][0-9A-Z])$")


def icd10_key(code: str) -> str:
    return code.replace(".", "").strip().upper()


@dataclass(frozen=True, slots=True)
class CodeSet:
    """A coded value set. `exact` holds (system, code) pairs; ICD-10 entries live apart."""

    name: str
    title: str
    exact: frozenset[tuple[str, str]] = frozenset()
    icd10_prefixes: tuple[str, ...] = ()
    icd10_ranges: tuple[tuple[str, str], ...] = ()

    def matches(self, coding: Coding) -> bool:
        if (coding.system, coding.code) in self.exact:
            return True
        if coding.system in ICD10_SYSTEMS:
            key = icd10_key(coding.code)
            if self.icd10_prefixes and key.startswith(self.icd10_prefixes):
                return True
            category = key[:3]
            return any(lo <= category <= hi for lo, hi in self.icd10_ranges)
        return False

    def first_match(self, codings: Iterable[Coding]) -> Coding | None:
        for coding in codings:
            if self.matches(coding):
                return coding
        return None

    def union(self, other: CodeSet, name: str = "union") -> CodeSet:
        return CodeSet(
            name,
            name,
            self.exact | other.exact,
            tuple(sorted(set(self.icd10_prefixes) | set(other.icd10_prefixes))),
            tuple(sorted(set(self.icd10_ranges) | set(other.icd10_ranges))),
        )


@dataclass(frozen=True, slots=True)
class Ingredient:
    key: str
    codes: frozenset[tuple[str, str]]
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MedicationSet:
    name: str
    title: str
    ingredients: tuple[Ingredient, ...]
    # product code (system, code) -> ingredient key, for products of these ingredients
    products: dict[tuple[str, str], str] = field(default_factory=dict)
    name_pattern: re.Pattern[str] | None = None  # every known ingredient name
    names: dict[str, str] = field(default_factory=dict)  # casefolded name -> ingredient key
    members: frozenset[str] = frozenset()

    def ingredient_by_code(self, coding: Coding) -> tuple[str, str] | None:
        """(ingredient, how) for a coding naming one of the set's ingredients or products."""
        key = (coding.system, coding.code)
        for ingredient in self.ingredients:
            if key in ingredient.codes:
                return ingredient.key, "code"
        product = self.products.get(key)
        return (product, "product") if product else None

    def ingredient_by_name(self, text: str) -> str | None:
        """The first of the set's ingredients named as a whole word. The pattern knows every
        ingredient's names, longest first, so "gabapentin enacarbil" (another ingredient) is
        read as itself and not as gabapentin."""
        if self.name_pattern is None:
            return None
        for found in self.name_pattern.finditer(text):
            key = self.names.get(found.group(0).casefold())
            if key in self.members:
                return key
        return None


@dataclass(frozen=True, slots=True)
class Analyte:
    name: str
    title: str
    unit: str
    codes: CodeSet
    units: AnalyteUnits
    default_uln: tuple[float, str] | None = None


@dataclass(slots=True)
class Terminology:
    """Every value set, analyte and ingredient of a mappings folder, in one namespace."""

    folder: Path
    codesets: dict[str, CodeSet] = field(default_factory=dict)
    medsets: dict[str, MedicationSet] = field(default_factory=dict)
    analytes: dict[str, Analyte] = field(default_factory=dict)
    # every code known to name a medication (any ingredient or product): when one of these
    # is on a record the code decides, and name matching is not tried
    known_medication_codes: frozenset[tuple[str, str]] = frozenset()
    versions: dict[str, str] = field(default_factory=dict)
    converter: UnitConverter = field(default_factory=UnitConverter)


def load_terminology(folder: Path) -> Terminology:
    if not folder.is_dir():
        raise CriteriaError(folder, None, "mappings folder not found")
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise CriteriaError(folder, None, "mappings folder holds no .yaml files")
    docs = [(path, load_yaml(path)) for path in files]
    term = Terminology(folder)
    aliases: dict[str, str] = {}
    ingredients: dict[str, Ingredient] = {}
    products: dict[tuple[str, str], str] = {}
    med_specs: list[tuple[Path, str, LineDict]] = []
    defined: dict[str, str] = {}

    def claim(path: Path, section: LineDict, name: str) -> None:
        if name in defined:
            raise CriteriaError(path, section.line_of(name), f"'{name}' is already defined in {defined[name]}")
        defined[name] = path.name

    for path, doc in docs:
        _require(path, doc, "version", str)
        _require(path, doc, "source", str)
        term.versions[path.name] = str(doc["version"])
        unknown = set(doc) - {"version", "source", "valuesets", "analytes", "ingredients", "unit_aliases", "products"}
        if unknown:
            key = sorted(unknown)[0]
            raise CriteriaError(path, doc.line_of(key), f"unknown top-level key '{key}'")
        for alias, target in _mapping(path, doc, "unit_aliases").items():
            aliases[str(alias)] = str(target)
        section = _mapping(path, doc, "ingredients")
        for name, spec in section.items():
            spec = _as_mapping(path, section, name, spec)
            claim(path, section, name)
            ingredients[name] = Ingredient(name, _codes(path, spec), tuple(_strings(path, spec, "names")))
        section = _mapping(path, doc, "valuesets")
        for name, spec in section.items():
            spec = _as_mapping(path, section, name, spec)
            claim(path, section, name)
            if "ingredients" in spec:
                med_specs.append((path, name, spec))
            else:
                term.codesets[name] = _codeset(path, name, spec)
        section = _mapping(path, doc, "analytes")
        for name, spec in section.items():
            spec = _as_mapping(path, section, name, spec)
            claim(path, section, name)
            term.analytes[name] = _analyte(path, name, spec)
        for product_file in _strings(path, doc, "products"):
            products.update(_products(folder / product_file, ingredients))

    all_names = {n.casefold(): key for key, ing in ingredients.items() for n in ing.names}
    ordered = sorted(all_names, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in ordered) + r")\b", re.IGNORECASE) if ordered else None
    for path, name, spec in med_specs:
        keys = _strings(path, spec, "ingredients")
        for key in keys:
            if key not in ingredients:
                raise CriteriaError(
                    path, spec.line_of("ingredients"), f"value set '{name}' names unknown ingredient '{key}'"
                )
        members = tuple(ingredients[k] for k in keys)
        own = {code: ing for code, ing in products.items() if ing in keys}
        term.medsets[name] = MedicationSet(
            name, str(spec.get("title", name)), members, own, pattern, all_names, frozenset(keys)
        )
    term.known_medication_codes = frozenset(products) | frozenset(c for i in ingredients.values() for c in i.codes)
    term.converter = UnitConverter(aliases)
    return term


def _require(path: Path, doc: LineDict, key: str, kind: type) -> None:
    if not isinstance(doc.get(key), kind):
        raise CriteriaError(path, doc.line_of(key), f"'{key}' is required and must be {kind.__name__}")


def _mapping(path: Path, doc: LineDict, key: str) -> LineDict:
    value = doc.get(key)
    if value is None:
        return LineDict()
    if not isinstance(value, LineDict):
        raise CriteriaError(path, doc.line_of(key), f"'{key}' must be a mapping")
    return value


def _as_mapping(path: Path, parent: LineDict, name: str, spec: object) -> LineDict:
    if not isinstance(spec, LineDict):
        raise CriteriaError(path, parent.line_of(name), f"'{name}' must be a mapping")
    return spec


def _strings(path: Path, doc: LineDict, key: str) -> list[str]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, LineList) or not all(isinstance(v, (str, int)) for v in value):
        raise CriteriaError(path, doc.line_of(key), f"'{key}' must be a list of text values")
    return [str(v) for v in value]


def _codes(path: Path, spec: LineDict) -> frozenset[tuple[str, str]]:
    """Exact (system URI, code) pairs. ICD-10-CM entries are prefixes and ranges, kept apart."""
    exact: set[tuple[str, str]] = set()
    for short, uris in SYSTEMS.items():
        if short in spec and short != "icd10cm":
            exact.update((uri, code.strip()) for code in _strings(path, spec, short) for uri in uris)
    return frozenset(exact)


def _codeset(path: Path, name: str, spec: LineDict) -> CodeSet:
    codes = spec.get("codes")
    if not isinstance(codes, LineDict) or not codes:
        raise CriteriaError(path, spec.line_of("codes"), f"value set '{name}' needs 'codes' (or 'ingredients')")
    for short in codes:
        if short not in SYSTEMS:
            raise CriteriaError(
                path, codes.line_of(short), f"unknown code system '{short}' (known: {', '.join(SYSTEMS)})"
            )
    prefixes: list[str] = []
    ranges: list[tuple[str, str]] = []
    for raw in _strings(path, codes, "icd10cm"):
        entry = raw.strip().upper()
        if "-" in entry:
            found = _RANGE.match(entry)
            if not found:
                raise CriteriaError(
                    path, codes.line_of("icd10cm"), f"'{entry}' is not a range of three-character categories"
                )
            ranges.append((found.group(1), found.group(2)))
        else:
            prefixes.append(icd10_key(entry))
    return CodeSet(name, str(spec.get("title", name)), _codes(path, codes), tuple(sorted(prefixes)), tuple(ranges))


def _analyte(path: Path, name: str, spec: LineDict) -> Analyte:
    _require(path, spec, "unit", str)
    uln = spec.get("default_uln")
    default_uln: tuple[float, str] | None = None
    if uln is not None:
        if (
            not isinstance(uln, LineDict)
            or not isinstance(uln.get("value"), (int, float))
            or not isinstance(uln.get("unit"), str)
        ):
            raise CriteriaError(path, spec.line_of("default_uln"), "default_uln needs a numeric 'value' and a 'unit'")
        default_uln = (float(uln["value"]), str(uln["unit"]))
    conversions: list[LinearConversion] = []
    for conv in spec.get("conversions") or []:
        if not isinstance(conv, LineDict) or not all(k in conv for k in ("from", "to", "scale")):
            raise CriteriaError(path, spec.line_of("conversions"), "a conversion needs 'from', 'to' and 'scale'")
        conversions.append(
            LinearConversion(str(conv["from"]), str(conv["to"]), float(conv["scale"]), float(conv.get("offset", 0.0)))
        )
    equivalents = {str(k): str(v) for k, v in _mapping(path, spec, "equivalent_units").items()}
    codes = _codeset(path, name, spec)
    return Analyte(
        name,
        str(spec.get("title", name)),
        str(spec["unit"]),
        codes,
        AnalyteUnits(equivalents, tuple(conversions)),
        default_uln,
    )


def _products(path: Path, ingredients: dict[str, Ingredient]) -> dict[tuple[str, str], str]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows: Sequence[dict[str, str]] = list(csv.DictReader(handle, delimiter="\t"))
    except OSError as exc:
        raise CriteriaError(path, None, f"cannot read product table: {exc.strerror}") from exc
    table: dict[tuple[str, str], str] = {}
    for number, row in enumerate(rows, start=2):
        rxcui, ingredient = (row.get("rxcui") or "").strip(), (row.get("ingredient") or "").strip()
        if not rxcui or ingredient not in ingredients:
            raise CriteriaError(path, number, f"row needs an rxcui and a known ingredient (got {ingredient!r})")
        table[(RXNORM, rxcui)] = ingredient
    return table
