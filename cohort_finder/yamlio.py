"""YAML that remembers where things were written, so errors can name the line.

Criteria and mapping files are written by people; "line 42: unknown rule kind 'lab_ul'" is
the difference between a fix in seconds and a hunt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import CriteriaError


class LineDict(dict[str, Any]):
    """A mapping that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list[Any]):
    line: int = 0


# libyaml's parser when present (mapping files hold thousands of codes); marks work the same
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(None, None, f"keys must be text, not {key!r}", key_node.start_mark)
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is written twice", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: Path) -> LineDict:
    """Load a YAML file whose top level is a mapping, or raise CriteriaError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CriteriaError(path, None, f"cannot read file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise CriteriaError(path, None, "file is not UTF-8 text") from exc
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        # At the end of the file the problem mark says nothing useful; the context (where the
        # unclosed quote or bracket opened) is where to look.
        at_end = "end of stream" in (exc.problem or "")
        mark = (exc.context_mark if at_end else None) or exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        context = f" ({exc.context})" if exc.context else ""
        raise CriteriaError(path, line, f"not valid YAML: {exc.problem or exc}{context}") from exc
    except yaml.YAMLError as exc:
        raise CriteriaError(path, None, f"not valid YAML: {exc}") from exc
    if not isinstance(data, LineDict):
        raise CriteriaError(path, 1, "the file must be a YAML mapping (key: value) at top level")
    return data
