"""The batch fact table the kinds decided by query read: the coding a value set picks first (as
CodeSet.first_match does, with or without a display), ICD-10-CM prefixes decided once per
distinct coding, and the look-back window's edges."""

from __future__ import annotations

from datetime import date

from cohort_finder.model import Coding, Fact
from cohort_finder.rules.table import FactTable
from cohort_finder.terminology import CodeSet

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
DIABETES = CodeSet("t2dm", "Type 2 diabetes", frozenset({(SNOMED, "44054006")}), icd10_prefixes=("E11",))


def _condition(rid: str, patient: str, *codings: Coding, onset: str | None = None) -> tuple[str, Fact]:
    return patient, Fact("Condition", rid, patient, codings=codings, onset=onset)


def _picked(table: FactTable) -> list[tuple[str, str, str, str | None]]:
    first = f"JOIN {table.first_codings()} AS c ON c.k = f.k AND c.set_id = {table.set_id(DIABETES)}"
    query = f"SELECT f.resource_id, c.system, c.code, c.display FROM facts AS f {first} ORDER BY 1"
    return [tuple(row) for row in table.rows(query)]  # type: ignore[misc]


def test_the_first_coding_in_the_value_set_is_picked_with_or_without_a_display() -> None:
    table = FactTable(
        [
            _condition(
                "a", "p1", Coding("http://other", "1"), Coding(ICD, "E11.42", "DPN"), Coding(SNOMED, "44054006")
            ),
            _condition("b", "p2", Coding(ICD, "E11.9"), Coding(SNOMED, "44054006", "Diabetes")),
            _condition("c", "p3", Coding(ICD, "E10.9", "Type 1")),
        ],
        date(2026, 6, 30),
    )
    assert _picked(table) == [("a", ICD, "E11.42", "DPN"), ("b", ICD, "E11.9", None)]
    assert DIABETES.first_match([Coding(ICD, "E11.9"), Coding(SNOMED, "44054006", "Diabetes")]) == Coding(ICD, "E11.9")


def test_a_value_set_keeps_its_id_and_matches_only_its_codes() -> None:
    other = CodeSet("t1dm", "Type 1 diabetes", icd10_prefixes=("E10",))
    table = FactTable([_condition("c", "p3", Coding(ICD, "E10.9"))], date(2026, 6, 30))
    assert table.set_id(DIABETES) == table.set_id(DIABETES) != table.set_id(other)
    assert _picked(table) == []
    assert table.rows(f"SELECT system, code FROM matches WHERE set_id = {table.set_id(other)}") == [(ICD, "E10.9")]


def test_the_window_counts_the_day_exactly_n_days_before_as_of_and_not_the_day_before_it() -> None:
    days = ["2026-05-30", "2026-05-31", "2026-06-30", "2026-07-01", "2026-06", None]
    table = FactTable(
        [_condition(f"c{n}", "p", Coding(ICD, "E11.9"), onset=day) for n, day in enumerate(days)], date(2026, 6, 30)
    )
    # two rules as parameters: a 30-day window and none (any full date up to as-of)
    params = table.params((("start", "VARCHAR"),), [(0, table.window(30)), (1, table.window(None))])
    query = f"SELECT r.rule, onset FROM facts AS f, {params} AS r WHERE {table.in_window('f.onset', 'r.start')}"
    inside = table.rows(f"{query} ORDER BY 1, 2")
    assert inside == [
        (0, "2026-05-31"),
        (0, "2026-06-30"),
        (1, "2026-05-30"),
        (1, "2026-05-31"),
        (1, "2026-06-30"),
    ]


def test_parameters_keep_their_types_and_a_rule_may_have_several_rows() -> None:
    table = FactTable([], date(2026, 6, 30))
    params = table.params(
        (("set_id", "INTEGER"), ("statuses", "VARCHAR[]"), ("current", "BOOLEAN"), ("start", "VARCHAR")),
        [(0, 3, frozenset({"completed", "in-progress"}), True, "2026-01-01"), (0, 4, frozenset(), False, None)],
    )
    assert table.rows(f"SELECT * FROM {params} ORDER BY set_id") == [
        (0, 3, ["completed", "in-progress"], True, "2026-01-01"),
        (0, 4, [], False, None),
    ]


def test_no_parameter_rows_is_an_empty_relation_of_the_stated_types() -> None:
    table = FactTable([], date(2026, 6, 30))
    params = table.params((("start", "VARCHAR"), ("t1", "DOUBLE")), [])
    assert table.rows(f"SELECT * FROM {params}") == []
    described = table.rows(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {params})")
    assert described == [("rule", "INTEGER"), ("start", "VARCHAR"), ("t1", "DOUBLE")]


def test_a_kinds_one_statement_decides_each_rule_as_that_rule_alone_would() -> None:
    """All of a trial's rules of a kind in one statement (a parameter table) against each rule
    asked alone, for every kind the first trial uses, over the fixture patients."""
    from cohort_finder.criteria import load_trial
    from cohort_finder.engines import PythonEngine
    from cohort_finder.evaluate.batch import link
    from cohort_finder.evaluate.plan import decide_by_query, plan_for
    from cohort_finder.rules import Rule, leaves
    from cohort_finder.sources.files import FileSource

    from ..paths import CRITERIA, FIXTURES

    as_of = date(2026, 6, 30)
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    linked = link(PythonEngine().collect(trial, FileSource(FIXTURES / "fhir_bundles")), plan_for(trial, as_of))
    kinds: dict[type[Rule], list[Rule]] = {}
    for criterion in trial.criteria:
        for leaf in leaves(criterion.rule) if criterion.rule is not None else ():
            if leaf.by_query:
                kinds.setdefault(type(leaf), []).append(leaf)
    assert sum(len(rules) > 1 for rules in kinds.values()) >= 3  # condition, lab, lab_uln: several each
    terms = trial.terminology
    facts = [(pid, fact) for pid in linked.ids for fact in linked.by_patient[pid]]
    table = FactTable(facts, as_of, terms.converter, terms.known_medication_codes)
    together = decide_by_query(table, kinds)
    decided = 0
    for rules in kinds.values():
        for rule in rules:
            alone = decide_by_query(table, {type(rule): [rule]})
            assert together[id(rule)] == alone[id(rule)], rule
            decided += len(alone[id(rule)])
    table.close()
    assert decided > 500  # the rules had patients' facts to decide
