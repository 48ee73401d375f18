"""Reports: contract §2 (outputs, atomic writes) and §5 (0600 files, escaped HTML)."""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from cohort_finder import report
from cohort_finder.model import (
    CriterionInfo,
    CriterionResult,
    Evidence,
    PatientResult,
    Result,
    RunError,
    RunResult,
    Status,
)
from cohort_finder.report import (
    render_csv,
    render_html,
    render_json,
    write_atomic,
    write_reports,
)

from ..paths import SCHEMA

XSS = "<script>alert(1)</script>"

CRITERIA = (
    CriterionInfo("alive", "inclusion", "Alive at the reference date", True),
    CriterionInfo("age_18_80", "inclusion", "Aged 18-80 years", True),
    CriterionInfo("hba1c_over_12", "exclusion", "HbA1c > 12 %", True),
    CriterionInfo("alt_over_3uln", "exclusion", "ALT > 3 x ULN", True),
    CriterionInfo("mnsi_score", "inclusion", "MNSI score >= 3 (questionnaire)", False),
)

HBA1C = Evidence(
    resource="Observation/hb1",
    code="http://loinc.org|4548-4",
    date="2026-09-02",
    value=8.1,
    unit="%",
    original_value=65.0,
    original_unit="mmol/mol",
)
ALT = Evidence(
    resource="Observation/alt1",
    code="http://loinc.org|1742-6",
    date="2026-08-01",
    value=50.0,
    unit="U/L",
    uln=40.0,
    uln_source="default",
)


def _criteria(**results: Result) -> tuple[CriterionResult, ...]:
    out = []
    for c in CRITERIA:
        res = results.get(c.id, Result.MANUAL if not c.computable else Result.MET)
        if c.kind == "exclusion" and c.id not in results:
            res = Result.NOT_MET
        evidence = {"hba1c_over_12": (HBA1C,), "alt_over_3uln": (ALT,)}.get(c.id, ())
        note = "most recent HbA1c 8.1 % on 2026-09-02" if c.id == "hba1c_over_12" else None
        out.append(CriterionResult(c.id, c.kind, res, evidence, note))
    return tuple(out)


def make_run() -> RunResult:
    patients = (
        PatientResult("a1", Status.CANDIDATE, 61, "female", _criteria(), name="Ann Example"),
        PatientResult(
            "b2",
            Status.POSSIBLE,
            None,
            None,
            _criteria(age_18_80=Result.UNKNOWN),
            name=XSS,
        ),
        PatientResult(
            "c3",
            Status.EXCLUDED,
            90,
            "male",
            _criteria(alive=Result.NOT_MET, age_18_80=Result.NOT_MET),
            name=None,
        ),
        PatientResult("=cmd", Status.EXCLUDED, 40, "+other", _criteria(hba1c_over_12=Result.MET)),
    )
    return RunResult(
        trial_id="NCT07183761",
        trial_title="Umbilical Cord MSC Therapy in Diabetic Peripheral Neuropathy",
        as_of="2026-11-25",
        source="fixtures/fhir_bundles",
        generated_at="2026-11-25T02:00:03Z",
        criteria=CRITERIA,
        patients=patients,
        errors=(RunError("bad.ndjson:17", "line 17 is not valid JSON", patient_id="b2"),),
    )


@pytest.fixture
def run() -> RunResult:
    return make_run()


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(old)


# --- candidates.json -------------------------------------------------------------------


def test_json_validates_against_contract_schema(run: RunResult) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = orjson.loads(SCHEMA.read_bytes())
    jsonschema.validate(orjson.loads(render_json(run)), schema)


def test_json_is_deterministic(run: RunResult) -> None:
    first = render_json(run)
    assert first == render_json(make_run())
    assert first.endswith(b"}\n")


def test_json_has_no_patient_name(run: RunResult) -> None:
    data = render_json(run)
    assert b"Ann Example" not in data
    assert b"alert(1)" not in data
    assert all("name" not in p for p in orjson.loads(data)["patients"])


def test_json_summary_and_shape(run: RunResult) -> None:
    doc = orjson.loads(render_json(run))
    assert list(doc) == [
        "trial",
        "as_of",
        "source",
        "generated_at",
        "summary",
        "criteria",
        "patients",
        "errors",
    ]
    assert doc["summary"] == {
        "patients": 4,
        "candidate": 1,
        "possible": 1,
        "excluded": 2,
        "errors": 1,
    }
    assert [p["id"] for p in doc["patients"]] == ["a1", "b2", "c3", "=cmd"]
    assert doc["errors"] == [{"source": "bad.ndjson:17", "message": "line 17 is not valid JSON"}]
    a1 = doc["patients"][0]
    assert a1["status"] == "candidate" and a1["criteria"][0]["id"] == "alive"
    by_id = {c["id"]: c for c in a1["criteria"]}
    assert "note" not in by_id["alive"]
    assert by_id["hba1c_over_12"]["result"] == "not_met"
    assert by_id["hba1c_over_12"]["note"].startswith("most recent HbA1c")
    hb = by_id["hba1c_over_12"]["evidence"][0]
    assert hb == {
        "resource": "Observation/hb1",
        "code": "http://loinc.org|4548-4",
        "date": "2026-09-02",
        "value": 8.1,
        "unit": "%",
        "original_value": 65.0,
        "original_unit": "mmol/mol",
    }
    alt = by_id["alt_over_3uln"]["evidence"][0]
    assert alt["uln"] == 40.0 and alt["uln_source"] == "default" and "matched_by" not in alt
    b2 = doc["patients"][1]
    assert b2["age"] is None and b2["gender"] is None


def test_json_evidence_nulls_present_but_code_left_out_when_none() -> None:
    # candidates.schema.json allows null date/value/unit but requires code to be text
    bare = Evidence(resource="Condition/x")
    run = make_run()
    only = CriterionResult("alive", "inclusion", Result.MET, (bare,))
    p = replace(run.patients[0], criteria=(only,))
    doc = orjson.loads(render_json(replace(run, patients=(p,))))
    assert doc["patients"][0]["criteria"][0]["evidence"] == [
        {"resource": "Condition/x", "date": None, "value": None, "unit": None}
    ]


# --- candidates.csv --------------------------------------------------------------------


def _csv_rows(run: RunResult) -> list[list[str]]:
    data = render_csv(run)
    assert b"\r\n" not in data
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def test_csv_header_and_row(run: RunResult) -> None:
    rows = _csv_rows(run)
    assert rows[0] == [
        "id",
        "status",
        "age",
        "gender",
        "alive",
        "age_18_80",
        "hba1c_over_12",
        "alt_over_3uln",
        "mnsi_score",
    ]
    assert rows[1] == [
        "a1",
        "candidate",
        "61",
        "female",
        "met",
        "met",
        "not_met",
        "not_met",
        "manual",
    ]
    assert rows[2][:4] == ["b2", "possible", "", ""]
    assert rows[2][5] == "unknown"
    assert len(rows) == 1 + len(run.patients)


def test_csv_guards_formula_injection(run: RunResult) -> None:
    row = _csv_rows(run)[4]
    assert row[0] == "'=cmd"
    assert row[3] == "'+other"
    for bad in ("-1+1", "@SUM(A1)", "\tx", "\rx"):
        assert report.csv_report.guard_cell(bad) == "'" + bad
    assert report.csv_report.guard_cell("safe-id") == "safe-id"


# --- report.html -----------------------------------------------------------------------


def _scripts(html: str) -> list[str]:
    return re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.IGNORECASE | re.DOTALL)


def test_html_escapes_record_data(run: RunResult) -> None:
    html = render_html(run).decode("utf-8")
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the one script is the package's own overview.js, nothing from the record
    own = (Path(report.__file__).parent / "templates" / "overview.js").read_text(encoding="utf-8")
    assert [s.strip() for s in _scripts(html)] == [own.strip()]


def test_html_is_self_contained(run: RunResult) -> None:
    html = render_html(run).decode("utf-8")
    # Code systems (http://loinc.org|...) appear as text; nothing may be fetched or linked.
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"<(link|iframe|img|object|embed)\b", html, re.IGNORECASE)
    assert not re.search(r"<script\b[^>]*\bsrc", html, re.IGNORECASE)
    assert "@import" not in html and "url(" not in html
    for script in _scripts(html):
        assert "fetch(" not in script and "XMLHttpRequest" not in script and "innerHTML" not in script


def test_html_section_order(run: RunResult) -> None:
    html = render_html(run).decode("utf-8")
    marks = [
        'id="summary"',
        'id="overview"',
        'id="details"',
        'id="funnel"',
        'id="criteria"',
        'id="excluded"',
        'id="errors"',
    ]
    positions = [html.index(m) for m in marks]
    assert positions == sorted(positions)
    assert "Candidates and possible patients (2)" in html and "Excluded (2)" in html
    # the candidate before the possible patient, excluded patients in id order as given
    overview = html[html.index('id="overview"') : html.index('id="details"')]
    assert overview.index('data-id="a1"') < overview.index('data-id="b2"')
    assert html.index(">c3<") < html.index(">=cmd<")


def test_html_header_and_summary(run: RunResult) -> None:
    html = render_html(run).decode("utf-8")
    assert "NCT07183761" in html and "Umbilical Cord MSC Therapy" in html
    assert "2026-11-25" in html and "fixtures/fhir_bundles" in html
    assert "2026-11-25T02:00:03Z" in html
    summary = html[html.index('id="summary"') : html.index('id="overview"')]
    assert re.search(r'class="n">4</span>patients', summary)
    assert re.search(r'class="n">2</span>excluded', summary)
    assert "Ann Example" in html  # the name belongs in the investigator's report


def test_html_protocol_text_once_in_the_criteria_section(run: RunResult) -> None:
    html = render_html(run).decode("utf-8")
    # a criterion's protocol text appears in the criteria table, and in a patient's detail only
    # as that patient's checklist item (manual criteria)
    assert html.count("HbA1c &gt; 12 %") == 1
    criteria = html[html.index('id="criteria"') : html.index('id="excluded"')]
    assert "HbA1c &gt; 12 %" in criteria and "ALT &gt; 3 x ULN" in criteria


def test_html_manual_checklist(run: RunResult) -> None:
    html = render_html(run).decode("utf-8")
    details = html[html.index('id="details"') : html.index('id="funnel"')]
    # the two candidates/possibles each carry the manual criterion as a checklist item
    assert details.count("To check by hand (1)") == 2
    assert "☐" in details and "MNSI score &gt;= 3 (questionnaire)" in details


def test_html_evidence_in_words(run: RunResult) -> None:
    html = render_html(run).decode("utf-8")
    assert "ULN 40 U/L (default ULN)" in html
    assert "converted from 65 mmol/mol" in html
    assert "<strong>8.1 %</strong> · 2026-09-02 (3 months before as-of)" in html
    # the code URI is secondary detail, in words (here the record gave no display name)
    assert '<span class="what">LOINC 4548-4</span>' in html and "http://loinc.org|4548-4" not in html
    run2 = replace(
        run,
        patients=(
            replace(
                run.patients[0],
                criteria=(
                    CriterionResult(
                        "alive",
                        "inclusion",
                        Result.MET,
                        (
                            Evidence("Observation/r", uln=35.0, uln_source="referenceRange", unit="U/L"),
                            Evidence("MedicationStatement/m", matched_by="name"),
                        ),
                    ),
                ),
            ),
        ),
    )
    html2 = render_html(run2).decode("utf-8")
    assert "ULN 35 U/L (lab&#39;s reference range)" in html2 and "matched by name" in html2


def test_html_groups_a_possible_patients_criteria_by_effect(run: RunResult) -> None:
    html = render_html(run).decode("utf-8")
    start = html.index('id="patient-b2"')
    detail = html[start : html.index("</details>", start)]
    assert "unknown: age_18_80" in detail
    groups = [m for m in ("Unknown (1)", "To check by hand (1)", "Supports (3)") if m in detail]
    assert groups == ["Unknown (1)", "To check by hand (1)", "Supports (3)"]
    assert [detail.index(g) for g in groups] == sorted(detail.index(g) for g in groups)
    assert "Rules out" not in detail


def test_html_overview_rows_carry_what_the_filters_read(run: RunResult) -> None:
    html = render_html(run).decode("utf-8")
    row = re.search(r'<tr data-id="b2"[^>]*>', html)
    assert row is not None
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', row.group(0)))
    assert attrs["status"] == "possible" and attrs["decision"] == "" and attrs["change"] == ""
    # one letter per criterion in the run's order: alive met, age unknown, 2 exclusions not met, manual
    assert attrs["results"] == "munnx"
    assert attrs["search"] == "b2 &lt;script&gt;alert(1)&lt;/script&gt;".lower() + " "


def test_html_excluded_patients_are_one_line_each(run: RunResult) -> None:
    html = render_html(run).decode()
    excluded = html[html.index('id="excluded"') : html.index('id="errors"')]
    assert excluded.count("<li>") == 2
    assert "excluded by: alive, age_18_80" in excluded and "excluded by: hba1c_over_12" in excluded
    assert '<details class="patient"' not in excluded
    assert html.count('<details class="patient"') == 2  # the candidate and the possible patient


def test_html_funnel_counts_in_protocol_order(run: RunResult) -> None:
    html = render_html(run).decode()
    funnel = html[html.index('id="funnel"') : html.index('id="criteria"')]
    assert "<svg" in funnel
    rows = re.findall(
        r'<tr><td class="mono">(\w+)</td><td>\w+</td><td class="num">(\d+)</td><td class="num">(\d+)</td>'
        r'<td class="num">(\d+)</td><td class="num">(\d+)</td></tr>',
        funnel,
    )
    # c3: alive and age rule out (alive first); =cmd: hba1c rules out; b2: age unknown
    assert rows == [
        ("alive", "1", "0", "1", "3"),
        ("age_18_80", "1", "1", "0", "3"),
        ("hba1c_over_12", "1", "0", "1", "2"),
        ("alt_over_3uln", "0", "0", "0", "2"),
        ("mnsi_score", "0", "0", "0", "2"),
    ]


def test_html_errors_section(run: RunResult) -> None:
    html = render_html(run).decode("utf-8")
    errors = html[html.index('id="errors"') :]
    assert "bad.ndjson:17" in errors and "line 17 is not valid JSON" in errors


def test_html_key_values_in_the_overview() -> None:
    keyed = tuple(replace(c, key="HbA1c") if c.id == "hba1c_over_12" else c for c in CRITERIA)
    html = render_html(replace(make_run(), criteria=keyed)).decode()
    overview = html[html.index('id="overview"') : html.index('id="details"')]
    assert '<th data-sort="num" class="num">HbA1c</th>' in overview
    assert overview.count('8.1 %<span class="date">2026-09-02</span>') == 2


# --- writing ---------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_reports_modes_with_open_umask(run: RunResult, tmp_path: Path, umask_zero: None) -> None:
    out = tmp_path / "out" / "run1"
    paths = write_reports(run, out)
    assert [p.name for p in paths] == ["candidates.json", "candidates.csv", "report.html"]
    assert _mode(out) == 0o700
    for p in paths:
        assert p.parent == out
        assert _mode(p) == 0o600, p
    assert paths[0].read_bytes() == render_json(run)
    assert sorted(os.listdir(out)) == sorted(p.name for p in paths)  # no temp files left


def test_write_reports_overwrites_existing_with_0600(run: RunResult, tmp_path: Path, umask_zero: None) -> None:
    target = tmp_path / "candidates.json"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    write_reports(run, tmp_path)
    assert _mode(target) == 0o600 and target.read_bytes() == render_json(run)


def test_write_atomic_failure_leaves_no_temp_and_keeps_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "candidates.json"
    target.write_bytes(b"previous run")

    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new data")
    assert target.read_bytes() == b"previous run"
    assert os.listdir(tmp_path) == ["candidates.json"]


def test_render_failure_does_not_clobber_outputs(
    run: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_reports(run, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(*_: object) -> bytes:
        raise RuntimeError("template bug")

    monkeypatch.setattr(report, "page", broken)  # the last output to be rendered
    changed = replace(run, generated_at="2027-01-01T00:00:00Z")
    with pytest.raises(RuntimeError, match="template bug"):
        write_reports(changed, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_patient_whose_data_could_not_be_read_is_marked(run: RunResult) -> None:
    named = {e.patient_id for e in run.errors if e.patient_id}
    assert named, "the sample run names a patient in its errors"
    html = render_html(run).decode()
    assert html.count("some data could not be read: see Errors") == sum(1 for p in run.patients if p.id in named)
