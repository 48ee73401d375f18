"""Tests for cohort_finder.units (contract §3 "Units")."""

from __future__ import annotations

import pytest

from cohort_finder.units import AnalyteUnits, LinearConversion, UnitConverter

ALIASES = {
    "K/uL": "10*3/uL",
    "x10^9/L": "10*9/L",
    "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "mL/min/1.73 m2": "mL/min/{1.73_m2}",
}
HBA1C = AnalyteUnits(conversions=(LinearConversion("mmol/mol", "%", scale=0.09148, offset=2.152),))
BILIRUBIN = AnalyteUnits(conversions=(LinearConversion("mg/dL", "umol/L", 17.1),))
HEMOGLOBIN = AnalyteUnits(conversions=(LinearConversion("mmol/L", "g/L", 16.11),))
TRANSAMINASE = AnalyteUnits(equivalents={"[IU]/L": "U/L"})
EGFR = "mL/min/{1.73_m2}"


@pytest.fixture(scope="module")
def conv() -> UnitConverter:
    return UnitConverter(ALIASES)


# --- cell counts ---------------------------------------------------------------


@pytest.mark.parametrize("unit", ["10*9/L", "10*3/uL", "10*3/mm3", "10^9/L", "K/uL"])
def test_cell_count_units_are_one_scale(conv: UnitConverter, unit: str) -> None:
    assert conv.convert(90.0, unit, "10*9/L") == pytest.approx(90.0)
    assert conv.convert(1.5, "10*9/L", unit) == pytest.approx(1.5)


@pytest.mark.parametrize("unit", ["10*9/L", "10*3/uL", "10*3/mm3"])
def test_cell_count_factor_is_exact_at_threshold(conv: UnitConverter, unit: str) -> None:
    # Float noise here would turn "90 < 90" into a met exclusion.
    assert conv.convert(90.0, unit, "10*9/L") == 90.0
    assert conv.convert(90.0, "10*9/L", unit) == 90.0


@pytest.mark.parametrize("unit", ["/uL", "/mm3"])
def test_per_microlitre_is_a_thousandth(conv: UnitConverter, unit: str) -> None:
    assert conv.convert(1500.0, unit, "10*9/L") == pytest.approx(1.5)
    assert conv.convert(1.5, "10*9/L", unit) == pytest.approx(1500.0)


# --- hemoglobin ----------------------------------------------------------------


def test_hemoglobin_g_dl_to_g_l(conv: UnitConverter) -> None:
    assert conv.convert(7.9, "g/dL", "g/L") == pytest.approx(79.0)
    assert conv.convert(79.0, "g/L", "g/dL") == pytest.approx(7.9)
    # UCUM legs still apply when the analyte has an unrelated (mmol/L) rule.
    assert conv.convert(7.9, "g/dL", "g/L", HEMOGLOBIN) == pytest.approx(79.0)


def test_hemoglobin_mmol_l_via_analyte_rule(conv: UnitConverter) -> None:
    assert conv.convert(5.0, "mmol/L", "g/L", HEMOGLOBIN) == pytest.approx(80.55)
    assert conv.convert(5.0, "mmol/L", "g/dL", HEMOGLOBIN) == pytest.approx(8.055)
    assert conv.convert(80.55, "g/L", "mmol/L", HEMOGLOBIN) == pytest.approx(5.0)
    assert conv.convert(5000.0, "umol/L", "g/L", HEMOGLOBIN) == pytest.approx(80.55)


def test_hemoglobin_mmol_l_without_analyte_is_unknown(conv: UnitConverter) -> None:
    assert conv.convert(5.0, "mmol/L", "g/L") is None
    assert not conv.factor_known("mmol/L", "g/L")


# --- bilirubin -----------------------------------------------------------------


def test_bilirubin_mg_dl_to_umol_l(conv: UnitConverter) -> None:
    assert conv.convert(1.2, "mg/dL", "umol/L", BILIRUBIN) == pytest.approx(20.52)
    assert conv.convert(1.2, "mg/dL", "mmol/L", BILIRUBIN) == pytest.approx(0.02052)
    assert conv.convert(12.0, "mg/L", "umol/L", BILIRUBIN) == pytest.approx(20.52)


def test_bilirubin_inverse_direction(conv: UnitConverter) -> None:
    assert conv.convert(20.52, "umol/L", "mg/dL", BILIRUBIN) == pytest.approx(1.2)
    assert conv.convert(20.52, "µmol/L", "mg/dL", BILIRUBIN) == pytest.approx(1.2)


def test_bilirubin_without_analyte_is_unknown(conv: UnitConverter) -> None:
    assert conv.convert(1.2, "mg/dL", "umol/L") is None


# --- HbA1c ---------------------------------------------------------------------


def test_hba1c_ifcc_to_ngsp(conv: UnitConverter) -> None:
    assert conv.convert(64.0, "mmol/mol", "%", HBA1C) == pytest.approx(8.00672)
    assert conv.convert(108.0, "mmol/mol", "%", HBA1C) == pytest.approx(12.03184)


def test_hba1c_ngsp_to_ifcc_inverse(conv: UnitConverter) -> None:
    assert conv.convert(8.00672, "%", "mmol/mol", HBA1C) == pytest.approx(64.0)


def test_hba1c_percent_unchanged(conv: UnitConverter) -> None:
    assert conv.convert(7.1, "%", "%", HBA1C) == 7.1


def test_hba1c_neighbour_units_do_not_fall_back_to_ucum(conv: UnitConverter) -> None:
    # [ppth] is numerically mmol/mol and 10*-2 is %, but with the sides of the rule
    # sharing a dimension the scale of a neighbour unit cannot be known.
    assert conv.convert(64.0, "[ppth]", "%", HBA1C) is None
    assert conv.convert(8.0, "10*-2", "mmol/mol", HBA1C) is None
    assert not conv.factor_known("[ppth]", "%", HBA1C)


def test_mmol_mol_to_percent_without_analyte_is_plain_ucum(conv: UnitConverter) -> None:
    # Documented behaviour: with no analyte rule this is dimensionless UCUM arithmetic
    # (1 mmol/mol = 0.1 %). Callers must pass the HbA1c rule to get the IFCC equation.
    assert conv.convert(64.0, "mmol/mol", "%") == pytest.approx(6.4)
    assert conv.convert(64.0, "mmol/mol", "%", HBA1C) != pytest.approx(6.4)


# --- ALT / AST -----------------------------------------------------------------


def test_iu_per_l_needs_analyte_equivalent(conv: UnitConverter) -> None:
    assert conv.convert(120.0, "[IU]/L", "U/L") is None
    assert not conv.factor_known("[IU]/L", "U/L")
    assert conv.convert(120.0, "[IU]/L", "U/L", TRANSAMINASE) == 120.0
    assert conv.convert(120.0, "U/L", "[IU]/L", TRANSAMINASE) == 120.0
    assert conv.factor_known("[IU]/L", "U/L", TRANSAMINASE)


def test_equivalent_combines_with_ucum(conv: UnitConverter) -> None:
    assert conv.convert(0.12, "[IU]/mL", "U/L", TRANSAMINASE) is None
    assert conv.convert(0.12, "kU/L", "U/L", TRANSAMINASE) == pytest.approx(120.0)
    iu_ml = AnalyteUnits(equivalents={"[IU]/mL": "U/mL"})
    assert conv.convert(0.12, "[IU]/mL", "U/L", iu_ml) == pytest.approx(120.0)


# --- eGFR and annotations --------------------------------------------------------


@pytest.mark.parametrize(
    "unit",
    [EGFR, "mL/min/1.73m2", "ML/MIN/1.73M2", "  mL/min/1.73 m2 ", "mL/min/{1.73_m2}"],
)
def test_egfr_spellings_are_one_unit(conv: UnitConverter, unit: str) -> None:
    assert conv.convert(29.5, unit, EGFR) == 29.5
    assert conv.factor_known(unit, EGFR)


def test_egfr_annotation_kept_through_ucum(conv: UnitConverter) -> None:
    assert conv.convert(0.5, "mL/s/{1.73_m2}", EGFR) == pytest.approx(30.0)


@pytest.mark.parametrize("unit", ["mL/min", "mL/min/{m2}", "mL/min/{1.73_m2}/{x}"])
def test_annotation_mismatch_is_unknown(conv: UnitConverter, unit: str) -> None:
    assert conv.convert(29.5, unit, EGFR) is None
    assert conv.convert(29.5, EGFR, unit) is None
    assert not conv.factor_known(unit, EGFR)


def test_annotations_only_units(conv: UnitConverter) -> None:
    assert conv.convert(3.0, "{ratio}", "{ratio}") == 3.0
    assert conv.convert(3.0, "{ratio}", "%") is None
    assert conv.convert(3.0, "10*3{cells}/uL", "10*9/L") is None
    assert conv.convert(3.0, "10*3{cells}/uL", "10*9{cells}/L") == pytest.approx(3.0)


# --- unusable units --------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_unit", "to_unit"),
    [
        ("furlongs", "10*9/L"),
        ("mg/dL", EGFR),
        ("mg/dL", "mL/min"),
        ("g/L", "10*9/L"),
        ("Cel", "K"),
        ("[degF]", "Cel"),
        ("mL/min/1.73m2", "g/L"),
    ],
)
def test_unconvertible_units_are_none(conv: UnitConverter, from_unit: str, to_unit: str) -> None:
    assert conv.convert(1.0, from_unit, to_unit) is None
    assert not conv.factor_known(from_unit, to_unit)


@pytest.mark.parametrize("unit", [None, "", "   "])
def test_missing_unit_is_none(conv: UnitConverter, unit: str | None) -> None:
    assert conv.convert(1.0, unit, "g/L") is None
    assert conv.convert(1.0, unit, "g/L", BILIRUBIN) is None
    assert not conv.factor_known(unit, "g/L")


def test_unaliased_k_per_ul_is_kelvin_not_thousands() -> None:
    assert UnitConverter().convert(90.0, "K/uL", "10*9/L") is None


# --- normalisation ---------------------------------------------------------------


def test_normalize(conv: UnitConverter) -> None:
    assert conv.normalize(" K/uL ") == "10*3/uL"
    assert conv.normalize("k/ul") == "10*3/uL"
    assert conv.normalize("µmol/L") == "umol/L"  # U+00B5 micro sign
    assert conv.normalize("μmol/L") == "umol/L"  # U+03BC greek mu
    assert conv.normalize("mg/dL") == "mg/dL"


def test_alias_exact_match_beats_case_insensitive() -> None:
    converter = UnitConverter({"Kcell": "10*3/uL", "KCELL": "10*6/uL"})
    assert converter.normalize("KCELL") == "10*6/uL"
    assert converter.normalize("Kcell") == "10*3/uL"
    assert converter.normalize("kcell") in {"10*3/uL", "10*6/uL"}


def test_ucum_stays_case_sensitive(conv: UnitConverter) -> None:
    assert conv.convert(1.0, "MG/DL", "mg/dL") is None


def test_alias_normalisation_in_convert(conv: UnitConverter) -> None:
    assert conv.convert(250.0, "K/uL", "10*9/L") == 250.0
    assert conv.convert(250.0, "K/µL", "10*9/L") == 250.0
    assert conv.convert(3.0, "µmol/L", "umol/L") == 3.0
    assert conv.convert(3.0, "μmol/L", "mmol/L") == pytest.approx(0.003)
    assert conv.convert(1.2, "mg/dL", "µmol/L", BILIRUBIN) == pytest.approx(20.52)
    assert conv.convert(1.2, "mg/dL", "μmol/L", BILIRUBIN) == pytest.approx(20.52)


# --- API details -----------------------------------------------------------------


def test_factor_known_matches_convert(conv: UnitConverter) -> None:
    assert conv.factor_known("g/dL", "g/L")
    assert conv.factor_known("mmol/mol", "%", HBA1C)
    assert conv.factor_known("umol/L", "mg/dL", BILIRUBIN)


def test_same_unit_returns_value_even_if_not_ucum(conv: UnitConverter) -> None:
    assert conv.convert(4.0, "furlongs", "furlongs") == 4.0


def test_first_applicable_conversion_wins(conv: UnitConverter) -> None:
    analyte = AnalyteUnits(
        conversions=(
            LinearConversion("mg/dL", "umol/L", 17.1),
            LinearConversion("mg/dL", "umol/L", 99.0),
        )
    )
    assert conv.convert(1.0, "mg/dL", "umol/L", analyte) == pytest.approx(17.1)


@pytest.mark.parametrize("scale", [0.0, float("nan"), float("inf")])
def test_degenerate_conversion_rejected(scale: float) -> None:
    with pytest.raises(ValueError, match="invalid conversion"):
        LinearConversion("a", "b", scale)


def test_dataclasses_are_frozen() -> None:
    conversion = LinearConversion("mg/dL", "umol/L", 17.1)
    with pytest.raises(AttributeError):
        conversion.scale = 1.0  # type: ignore[misc]
    assert conversion.offset == 0.0
    assert AnalyteUnits().conversions == ()
    assert dict(AnalyteUnits().equivalents) == {}
