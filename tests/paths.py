"""Paths the tests share. Tests run offline and read only the project's own files (public
synthetic samples: tests/samples.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CRITERIA = ROOT / "criteria"
MAPPINGS = ROOT / "mappings"
FIXTURES = ROOT / "fixtures"
TEST_DATA = Path(__file__).resolve().parent / "data"
SCHEMA = ROOT / "docs" / "candidates.schema.json"  # the contract's schema of candidates.json
