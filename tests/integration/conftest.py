"""A real FHIR R4 server (sekmet-fhir, see tests/fhir_server.py) loaded with the hand-built
fixtures and the Synthea sample (tests/samples.py), once per test session."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from ..fhir_server import SEKMET, FhirServer, load_folder, sekmet_available
from ..paths import FIXTURES
from ..samples import SYNTHEA

# Resources the server refuses, by source folder: {"Type/id": why}. They are not loaded (so a
# server run cannot see them); load_folder fails when one is accepted after all.
# abatementBoolean is STU3: R4 (and R4B, which the server validates against) has
# Condition.abatement[x] = dateTime | Age | Period | Range | string only.
REJECTED = {
    "fhir_bundles": {
        "Condition/t2d-abatement-boolean-true-not-met-diabetes": "Condition.abatementBoolean is not R4",
    },
}


@dataclass(frozen=True)
class LoadedServer:
    base: str  # http://127.0.0.1:PORT/fhir
    pid: int
    loaded: dict[str, int]  # source folder -> resources loaded (one per Type/id)
    rejected: dict[str, dict[str, str]] = field(default_factory=dict)  # source folder -> {Type/id: why}
    seconds: dict[str, float] = field(default_factory=dict)  # start, load <folder>


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_sekmet() -> None:
    """Skip without the server, except on CI (CI set), where its absence is a failure."""
    if sekmet_available(SEKMET):
        return
    message = f"{SEKMET} not found: `bash scripts/setup` installs the test FHIR server"
    if on_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[LoadedServer]:
    require_sekmet()
    folders = {"fhir_bundles": FIXTURES / "fhir_bundles", "synthea-r4": SYNTHEA}
    started = time.monotonic()
    with FhirServer() as server:
        seconds = {"start": time.monotonic() - started}
        loaded = {}
        for name, folder in folders.items():
            began = time.monotonic()
            loaded[name] = load_folder(server.base, folder, expected_rejections=REJECTED.get(name))
            seconds[f"load {name}"] = time.monotonic() - began
        yield LoadedServer(server.base, server.pid, loaded, REJECTED, seconds)
