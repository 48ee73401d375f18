"""How the test run is shared between processes (pytest-xdist, `-n 2` in pyproject.toml).

Tests that share something costly run in one process: everything that starts the FHIR test
server (tests/integration: one server, loaded once) and everything that runs Spark (one JVM,
one session, reused across cases). Other tests go wherever a process is free.
"""

from __future__ import annotations

import pytest

_GROUPS = (
    ("tests/integration/", "fhir-server"),
    ("tests/engines/test_engine_parity.py", "spark"),
    ("tests/engines/test_spark.py", "spark"),
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        for prefix, group in _GROUPS:
            if path.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))
                break
        else:
            if item.get_closest_marker("spark") is not None:
                item.add_marker(pytest.mark.xdist_group("spark"))
