"""One definition of readable JSON (sources/jsontext.py) for every source and engine."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cohort_finder.sources.jsontext import JSONTextError, dumps, loads


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b'{"a": 1}', {"a": 1}),
        (b'\xef\xbb\xbf{"a": 1}', {"a": 1}),
        ('\ufeff{"a": 1}', {"a": 1}),
        (b'{"a": [1, 2,], "b": {"c": 1,},}', {"a": [1, 2], "b": {"c": 1}}),
        (b'{"a": "NaN, inf,]"}', {"a": "NaN, inf,]"}),  # inside strings nothing changes
    ],
)
def test_reads_json_and_the_extensions_engines_accept(text: bytes | str, value: object) -> None:
    assert loads(text) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [("NaN", math.nan), ("nan", math.nan), ("-NaN", math.nan), ("Infinity", math.inf), ("-Infinity", -math.inf),
     ("inf", math.inf), ("-inf", -math.inf), ("+INF", math.inf), ("1e999", math.inf), ("-1e999", -math.inf)],
)  # fmt: skip
def test_non_finite_numbers_are_read_as_such(text: str, expected: float) -> None:
    value = loads(f'{{"v": {text}}}'.encode())["v"]
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


@pytest.mark.parametrize(
    "text",
    [b'{"a": ', b'{"a": 1} x', b'{"a": "\\ud800"}', b'{"a": 1 /* c */}', b"{'a': 1}", b'{"a": 01}', b'{"a": nan1}',
     b'{"a": "\xff"}', b"[" * 100_000, b'{"a": 1}\xef\xbb\xbf'],
)  # fmt: skip
def test_anything_else_is_not_json(text: bytes) -> None:
    with pytest.raises(JSONTextError):
        loads(text)


def test_dumps_writes_what_loads_reads_back_non_finite_numbers_included() -> None:
    value = {"a": math.inf, "b": [-math.inf, "é"], "c": None}
    assert loads(dumps(value)) == value
    assert math.isnan(loads(dumps({"n": math.nan}))["n"])


def _duckdb_reads(line: bytes) -> bool:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.ndjson"
        path.write_bytes(line + b"\n")
        try:
            duckdb.sql(f"SELECT * FROM read_ndjson('{path}', columns = {{'a': 'JSON'}})").fetchall()
        except (duckdb.Error, UnicodeDecodeError):
            return False
    return True


_fragments = st.sampled_from(
    [b"NaN", b"-nan", b"Infinity", b"-INF", b"1e999", b"1,", b",]", b",}", b"\xef\xbb\xbf", b" ", b'"', b"[", b"]",
     b"{", b"}", b":", b"null", b"tru", b"0x1", b"01", b"/*", b"'", b"\\", b"\x00", b"\xff", b"1.", b".5", b"+1"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(_fragments, min_size=1, max_size=6), st.integers(min_value=0, max_value=1))
def test_a_line_duckdb_reads_is_a_line_this_reader_reads(parts: list[bytes], where: int) -> None:
    """Whatever DuckDB's reader accepts, the Python reader accepts too: the engines send the
    lines they cannot read to it, so it must read at least as much as they do."""
    inner = b"".join(parts)
    line = b'{"a": ' + inner + b"}" if where else b'{"a": [' + inner + b"]}"
    if _duckdb_reads(line):
        loads(line)
