from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .live import LiveApp, StoreRuns, serve, two_runs


@pytest.fixture(scope="package")
def runs(tmp_path_factory: pytest.TempPathFactory) -> StoreRuns:
    return two_runs(tmp_path_factory.mktemp("serve-store"))


@pytest.fixture
def fresh_runs(runs: StoreRuns, tmp_path: Path) -> StoreRuns:
    """A copy of the store, for tests that record decisions."""
    store = tmp_path / "history.sqlite"
    store.write_bytes(runs.store.read_bytes())
    store.chmod(0o600)
    return StoreRuns(runs.out, store)


@pytest.fixture
def app(fresh_runs: StoreRuns) -> Iterator[LiveApp]:
    with serve(fresh_runs.store) as live:
        yield live
