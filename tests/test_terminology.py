"""Code matching (contract §3) and the mappings loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from cohort_finder.errors import CriteriaError
from cohort_finder.model import Coding
from cohort_finder.terminology import ICD10, ICD10CM, RXNORM, SNOMED, load_terminology

from .paths import MAPPINGS

MAPPING = """
version: "1"
source: test
valuesets:
  diabetes2:
    title: T2DM
    source: test
    codes:
      icd10cm: ["E11", "C00-C96", "O00-O9A"]
      snomed: ["44054006"]
  meds:
    title: DPN drugs
    source: test
    ingredients: [pregabalin, epalrestat]
ingredients:
  pregabalin: {rxnorm: ["187832"], atc: ["N03AX16"], names: ["pregabalin"]}
  epalrestat: {names: ["epalrestat"]}
  desvenlafaxine: {rxnorm: ["734064"], names: ["desvenlafaxine"]}
products: ["products.tsv"]
"""


@pytest.fixture()
def term(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "m.yaml").write_text(MAPPING)
    (tmp_path / "products.tsv").write_text("rxcui\tingredient\tname\n483438\tpregabalin\tpregabalin 100 MG\n")
    return load_terminology(tmp_path)


@pytest.mark.parametrize(
    ("system", "code", "hit"),
    [
        (ICD10CM, "E11.42", True),
        (ICD10CM, "E1142", True),  # without the dot
        (ICD10, "E11.9", True),  # the WHO system URI is accepted too
        (ICD10CM, "e11.9", True),
        (ICD10CM, "E10.9", False),
        (ICD10CM, "E1", False),  # shorter than the prefix
        (ICD10CM, "C50.911", True),  # range C00-C96
        (ICD10CM, "C97", False),
        (ICD10CM, "D00.0", False),
        (ICD10CM, "O9A.1", True),  # O00-O9A compared as text
        (ICD10CM, "O99.8", True),
        (SNOMED, "44054006", True),
        (SNOMED, "E11", False),  # ICD prefixes do not leak into other systems
        ("", "44054006", False),  # a coding without a system never matches
        ("http://snomed.info/sct/", "44054006", False),
    ],
)
def test_code_matching(term, system: str, code: str, hit: bool) -> None:  # type: ignore[no-untyped-def]
    assert term.codesets["diabetes2"].matches(Coding(system, code)) is hit


def test_medications_match_by_ingredient_product_and_whole_word_name(term) -> None:  # type: ignore[no-untyped-def]
    meds = term.medsets["meds"]
    assert meds.ingredient_by_code(Coding(RXNORM, "187832")) == ("pregabalin", "code")
    assert meds.ingredient_by_code(Coding("http://www.whocc.no/atc", "N03AX16")) == ("pregabalin", "code")
    assert meds.ingredient_by_code(Coding(RXNORM, "483438")) == ("pregabalin", "product")
    assert meds.ingredient_by_code(Coding(RXNORM, "734064")) is None
    assert meds.ingredient_by_name("Epalrestat 50 mg tablet") == "epalrestat"
    assert meds.ingredient_by_name("PREGABALIN oral") == "pregabalin"
    assert meds.ingredient_by_name("pregabalinx") is None
    assert (RXNORM, "734064") in term.known_medication_codes


def test_duplicate_names_across_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text('version: "1"\nsource: t\nvaluesets:\n  x: {title: X, codes: {snomed: ["1"]}}\n')
    (tmp_path / "b.yaml").write_text('version: "1"\nsource: t\nvaluesets:\n  x: {title: X, codes: {snomed: ["2"]}}\n')
    with pytest.raises(CriteriaError) as caught:
        load_terminology(tmp_path)
    assert caught.value.line == 4 and "already defined in a.yaml" in caught.value.reason


def test_unknown_system_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text('version: "1"\nsource: t\nvaluesets:\n  x:\n    codes:\n      snowmed: ["1"]\n')
    with pytest.raises(CriteriaError) as caught:
        load_terminology(tmp_path)
    assert caught.value.line == 6 and "unknown code system 'snowmed'" in caught.value.reason


def test_project_mappings_load_with_versions() -> None:
    term = load_terminology(MAPPINGS)
    assert term.versions and all(term.versions.values())
    assert {"hba1c", "egfr", "alt"} <= set(term.analytes)
    assert term.analytes["alt"].default_uln == (40.0, "U/L")
    t2 = term.codesets["type2_diabetes"]
    assert t2.matches(Coding(ICD10CM, "E11.42")) and not t2.matches(Coding(ICD10CM, "E10.9"))
    dpn = term.codesets["diabetic_peripheral_neuropathy"]
    for excluded in ("E11.41", "E11.43", "E11.44", "E11.49"):
        assert not dpn.matches(Coding(ICD10CM, excluded)), excluded
    arrhythmia = term.codesets["arrhythmia"]
    assert arrhythmia.matches(Coding(ICD10CM, "I49.01")) and not arrhythmia.matches(Coding(ICD10CM, "I49.1"))


# The trial page's lab codes, copied by hand from spec/nct07183761.md ("Lab codes (LOINC) and units")
SPEC_LAB_CODES = {
    "hba1c": {"4548-4", "17856-6", "17855-8", "4549-2", "96595-4", "59261-8"},
    "neutrophils": {"751-8", "26499-4", "753-4"},
    "platelets": {"777-3", "26515-7", "778-1", "13056-7", "26516-5", "97995-5", "49497-1"},
    "hemoglobin": {"718-7", "20509-6", "30313-1", "30350-3", "59260-0"},
    "alt": {"1742-6", "1743-4", "1744-2", "76625-3"},
    "ast": {"1920-8", "30239-8", "88112-8"},
    "bilirubin_total": {"1975-2", "42719-5", "14631-6", "54363-7", "77137-8"},
    "egfr": {
        "33914-3",
        "48642-3",
        "48643-1",
        "50044-7",
        "70969-1",
        "77147-7",
        "62238-1",
        "88293-6",
        "88294-4",
        "98979-8",
        "98980-6",
        "94677-2",
        "50210-4",
        "69405-9",
    },
    "creatine_kinase": {"2157-6"},
}
NOT_THESE = {"hba1c": {"41995-2", "62388-4"}, "neutrophils": {"770-8"}, "platelets": {"48386-7", "34167-7", "96354-6"}}


def test_lab_analytes_hold_exactly_the_trial_pages_loinc_codes() -> None:
    term = load_terminology(MAPPINGS)
    for name, codes in SPEC_LAB_CODES.items():
        held = {code for system, code in term.analytes[name].codes.exact if system == "http://loinc.org"}
        assert held == codes, name
        for wrong in NOT_THESE.get(name, set()):
            assert not term.analytes[name].codes.matches(Coding("http://loinc.org", wrong))


def test_a_system_written_two_ways_matches_either_uri(tmp_path: Path) -> None:
    mapping = 'version: "1"\nsource: t\nvaluesets:\n  dialysis:\n    codes: {hcpcs: ["G0257"]}\n'
    (tmp_path / "a.yaml").write_text(mapping)
    dialysis = load_terminology(tmp_path).codesets["dialysis"]
    assert dialysis.matches(Coding("http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "G0257"))
    assert dialysis.matches(Coding("http://www.nlm.nih.gov/research/umls/hcpcs", "G0257"))  # as VSAC writes it
    assert not dialysis.matches(Coding("http://www.ama-assn.org/go/cpt", "G0257"))
