"""A run store made by the real command, and the review app served from it by a real uvicorn on
127.0.0.1: what the route tests and the browser tests talk to."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from cohort_finder.serve.app import Config, create_app

from ..e2e import run_trial
from ..fhir_server import free_port
from ..paths import CRITERIA, FIXTURES

TOKEN = "test-team-token-0123456789abcdef"
TRIAL = "NCT07183761"
HOSTILE = "html-name-script-tag"  # a fixture patient named <script>alert(1)</script>


@dataclass(frozen=True)
class StoreRuns:
    out: Path  # OUT_DIR of the second run (report.html, candidates.json)
    store: Path


def two_runs(folder: Path) -> StoreRuns:
    """Two complete runs of the first trial over the fixtures, a day apart (so there is a diff)."""
    out = folder / "out"
    store = folder / "history.sqlite"
    for as_of in ("2026-06-29", "2026-06-30"):
        done = run_trial(CRITERIA / "nct07183761.yaml", FIXTURES / "fhir_bundles", out, as_of, "--store", str(store))
        assert done.exit_code == 0, done.stderr
    return StoreRuns(out, store)


@dataclass(frozen=True)
class LiveApp:
    base: str
    config: Config


@contextmanager
def serve(store: Path, token: str | None = TOKEN) -> Iterator[LiveApp]:
    config = Config(store=store, token=token, audit=store.with_name(store.name + ".audit.jsonl"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the review app did not start")
        time.sleep(0.05)
    try:
        yield LiveApp(f"http://127.0.0.1:{port}", config)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
