"""Paths the tests share. Tests run offline and only ever read ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CRITERIA = ROOT / "criteria"
MAPPINGS = ROOT / "mappings"
FIXTURES = ROOT / "fixtures"
TEST_DATA = Path(__file__).resolve().parent / "data"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (the read-only shared folder sits beside the repo)")
    return path
