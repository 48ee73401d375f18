"""The nightly Bulk job, first night against second: what asking only for what changed saves.

    python bench/nightly_bulk.py [--patients 1000] [--seed 42]

Starts the test FHIR server (sekmet-fhir, as the integration tests do, from
.venv-fhir-server), loads the benchmark's synthetic patients (bench/generate.py) into it, then
runs `cohort-finder run --bulk` twice on the same cache and store: the first night exports
everything, the second asks for what changed since (nothing has). Prints each night's wall
clock, requests and resources exported. A script, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

from generate import ensure_data  # noqa: E402

from tests.fhir_server import FhirServer, load_folder  # noqa: E402

CLI = str(Path(sys.executable).parent / "cohort-finder")
TRIAL = str(REPO / "criteria" / "nct07183761.yaml")


def _night(base: str, work: Path) -> tuple[float, str, dict[str, object]]:
    started = time.monotonic()
    done = subprocess.run(
        [CLI, "run", "--criteria", TRIAL, "--source", base, "--bulk", "--cache", str(work / "cache"),
         "--out", str(work / "out"), "--as-of", "2026-01-01"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr)
    history = subprocess.run(
        [CLI, "history", "--store", str(work / "out" / "history.sqlite"), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    notes = json.loads(history.stdout)[-1].get("source_notes", {})
    exported = re.findall(r"bulk export \(.*", done.stderr)
    return seconds, exported[-1] if exported else "", notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    data, _, _ = ensure_data(args.patients, args.seed, quiet=True)
    with FhirServer() as server, tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        loaded = load_folder(server.base, data)
        print(f"loaded {loaded:,} resources of {args.patients:,} patients in {time.monotonic() - started:.0f} s")
        for night in (1, 2):
            seconds, said, notes = _night(server.base, Path(folder))
            print(f"night {night}: {seconds:.1f} s; {said}; store notes {notes}")


if __name__ == "__main__":
    main()
