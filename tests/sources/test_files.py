"""The file source: Bundles of any type, single resources, NDJSON, recursively, in sorted order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cohort_finder.errors import SourceError
from cohort_finder.model import RunError
from cohort_finder.sources.base import Item
from cohort_finder.sources.files import FileSource

from .reading import split


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def read_all(root: Path) -> tuple[list[Item], list[RunError]]:
    return split(FileSource(root))


def test_reads_bundles_resources_and_ndjson_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "b" / "single.json", {"resourceType": "Patient", "id": "p2"})
    write(
        tmp_path / "a.json",
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p1"}},
                {"request": {"method": "DELETE", "url": "Patient/x"}},
            ],
        },
    )
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "Observation.ndjson").write_text(
        json.dumps({"resourceType": "Observation", "id": "o1"})
        + "\n\n"
        + json.dumps({"resourceType": "Observation", "id": "o2"})
        + "\n"
    )
    (tmp_path / "notes.txt").write_text("not read")
    items, errors = read_all(tmp_path)
    assert errors == []
    assert [(i.origin, i.resource["id"]) for i in items] == [
        ("a.json#entry[0]", "p1"),
        ("b/single.json", "p2"),
        ("c/Observation.ndjson:1", "o1"),
        ("c/Observation.ndjson:3", "o2"),
    ]
    assert items[0].full_url == "urn:uuid:1"


def test_bad_lines_and_files_become_errors_and_reading_goes_on(tmp_path: Path) -> None:
    (tmp_path / "x.ndjson").write_text(
        '{"resourceType": "Patient", "id": "p1"}\n'
        '{"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}, "valueQuantity": {\n'
        "[1, 2]\n"
        '{"resourceType": "Patient", "id": "p2"}\n'
    )
    (tmp_path / "y.json").write_text('{"resourceType": "Bundle", "entry": [')
    write(tmp_path / "z.json", {"resourceType": "Bundle", "entry": [{"resource": {"id": "no-type"}}]})
    items, errors = read_all(tmp_path)
    assert [i.resource["id"] for i in items] == ["p1", "p2"]
    assert [e.source for e in errors] == ["x.ndjson:2", "x.ndjson:3", "y.json", "z.json#entry[0]"]
    assert errors[0].message == "line 2 is not valid JSON"
    # a broken line that still names its patient and type says so
    assert (errors[0].patient_id, errors[0].resource_type) == ("Patient/p1", "Observation")
    assert errors[1].patient_id is None


def test_json_without_resource_type_is_an_error_of_its_file_unless_ignored(tmp_path: Path) -> None:
    write(tmp_path / "SOURCE_MANIFEST.json", {"files": []})
    write(tmp_path / "sub" / "hello.json", {"hello": "world"})
    (tmp_path / "x.ndjson").write_text('{"id": "p1"}\n')
    items, errors = read_all(tmp_path)
    assert items == []
    assert [(e.source, e.message) for e in errors] == [
        ("SOURCE_MANIFEST.json", "not a FHIR resource (no resourceType)"),
        ("sub/hello.json", "not a FHIR resource (no resourceType)"),
        ("x.ndjson:1", "line 1 is not a FHIR resource (no resourceType)"),
    ]
    items, errors = split(FileSource(tmp_path, ignore=["SOURCE_MANIFEST.json", "sub/*", "*.ndjson"]))
    assert items == [] and errors == []


def test_a_byte_order_mark_is_ignored_at_the_start_of_a_file_and_of_a_line(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    (tmp_path / "a.json").write_bytes(bom + json.dumps({"resourceType": "Patient", "id": "p1"}).encode())
    (tmp_path / "b.ndjson").write_bytes(
        bom + b'{"resourceType": "Patient", "id": "p2"}\n' + bom + b'{"resourceType": "Patient", "id": "p3"}\n' + bom
    )
    items, errors = read_all(tmp_path)
    assert errors == []
    assert [i.resource["id"] for i in items] == ["p1", "p2", "p3"]


def test_nan_and_infinity_are_read_as_non_finite_numbers_and_other_non_json_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.ndjson").write_text(
        '{"resourceType": "Observation", "id": "o1", "valueQuantity": {"value": NaN}}\n'
        '{"resourceType": "Observation", "id": "o2", "valueQuantity": {"value": -Infinity}, "x": [1, 2,]}\n'
        '{"resourceType": "Observation", "id": "o3", "valueQuantity": {"value": 1e999}}\n'
        '{"resourceType": "Observation", "id": "o4", "note": "\\ud800"}\n'
        '{"resourceType": "Observation", "id": "o5" /* a comment */}\n'
    )
    items, errors = read_all(tmp_path)
    values = [i.resource["valueQuantity"]["value"] for i in items]
    assert [i.resource["id"] for i in items] == ["o1", "o2", "o3"]
    assert values[0] != values[0] and values[1] == float("-inf") and values[2] == float("inf")
    assert [e.source for e in errors] == ["x.ndjson:4", "x.ndjson:5"]


def test_missing_source_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        FileSource(tmp_path / "nope")
