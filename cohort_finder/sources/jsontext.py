"""What cohort-finder reads as JSON: one definition for every source and engine.

A file, an NDJSON line or a server's page is read as RFC 8259 JSON (orjson) with the
extensions the engines' own readers accept, so that no engine reads a line another refuses:

- a UTF-8 byte-order mark at the start (Windows tools write one; a file made by concatenating
  such files has one at the start of each part, so NDJSON lines may start with one too);
- the literals `NaN`, `Infinity`, `-Infinity` (any case, `inf` too), which Python's
  `json.dumps` writes by default, and numbers beyond the range of a double (`1e999`): DuckDB's
  and Spark's readers accept them, so they are read, as non-finite numbers. Where cohort-finder
  reads a number (facts.py) a non-finite one is not a value: that resource is unusable, and
  says so. Elsewhere (an extension, a narrative) it is ignored like the rest of that field;
- a comma before a closing bracket (`[1, 2,]`), which DuckDB's reader accepts.

Anything else that is not JSON (a truncated line, a lone surrogate, a comment) is an error of
its place. The fast path is orjson; the tolerant path runs only on text orjson refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

BOM = b"\xef\xbb\xbf"

# a JSON string (escapes included), an unterminated one, or a run of text between strings
_SEGMENT = re.compile(r'"(?:[^"\\]|\\.)*"|"[\s\S]*|[^"]+')
_NON_FINITE = re.compile(r"([+-]?)(infinity|inf|nan)\b", re.IGNORECASE)
_TRAILING_COMMA = re.compile(r",(\s*)(?=[}\]])")


class JSONTextError(ValueError):
    """Text that is not JSON, even with the extensions above. The message says why."""


def strip_bom(data: bytes) -> bytes:
    return data[len(BOM) :] if data.startswith(BOM) else data


def loads(data: bytes | str) -> Any:
    """Parse one JSON document (a file, a line, a page)."""
    data = strip_bom(data) if isinstance(data, bytes) else data.removeprefix("\ufeff")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        first = exc
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise JSONTextError(f"not UTF-8 ({first})") from None
    try:
        value = json.loads(_normalise(text))
    except (ValueError, RecursionError):
        raise JSONTextError(str(first)) from None
    _refuse_surrogates(value, first)
    return value


def dumps(value: Any) -> str:
    """JSON text that `loads` reads back as it was, non-finite numbers included (orjson would
    write them as null, which reads as absent)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True, separators=(",", ":"))


def _normalise(text: str) -> str:
    """The extensions, outside strings, in the spelling Python's json module reads."""

    def literal(match: re.Match[str]) -> str:
        if match.group(2).lower() == "nan":
            return "NaN"
        return "-Infinity" if match.group(1) == "-" else "Infinity"

    parts = []
    for segment in _SEGMENT.findall(text):
        if not segment.startswith('"'):
            segment = _TRAILING_COMMA.sub(r"\1", _NON_FINITE.sub(literal, segment))
        parts.append(segment)
    return "".join(parts)


def _refuse_surrogates(value: Any, first: orjson.JSONDecodeError) -> None:
    """Python's json module reads `"\\ud800"` (a lone surrogate, not a character) where orjson
    and DuckDB refuse it; such a string could not be written to any output either."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise JSONTextError(str(first)) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
