"""A per-patient crawl against a Group export of the same patients: what a server that refuses
population searches costs (issue 11).

    python bench/crawl.py [--patients 1000] [--seed 42] [--concurrency 4]

Starts the test FHIR server (sekmet-fhir, from .venv-fhir-server), loads the benchmark's
synthetic patients (bench/generate.py), PUTs a Group of all of them, then runs
`cohort-finder run` twice: `--rest --crawl --group` (every patient's searches, `--rate 0`, so
the server is the limit: a hospital run keeps the default `--rate 10`, and then takes at least
requests / 10 seconds) and `--bulk --group` (one Group-level export). Prints each one's wall
clock and requests, and checks both give the same candidates.json. A script, not a timed test.
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

import requests

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

from generate import ensure_data  # noqa: E402

from tests.fhir_server import FHIR_JSON, FhirServer, load_folder  # noqa: E402

CLI = str(Path(sys.executable).parent / "cohort-finder")
TRIAL = str(REPO / "criteria" / "nct07183761.yaml")
GROUP = "bench-cohort"


def _patients(data: Path) -> list[str]:
    ids = []
    for path in sorted(data.rglob("Patient*.ndjson")):
        ids += [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]
    return ids


def _run(base: str, work: Path, *how: str) -> tuple[float, int, dict[str, object]]:
    started = time.monotonic()
    done = subprocess.run(
        [CLI, "run", "--criteria", TRIAL, "--source", base, *how, "--cache", str(work / "cache"),
         "--out", str(work / "out"), "--as-of", "2026-01-01"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr)
    counted = re.findall(r"(\d+) requests in this run", done.stderr)
    document = json.loads((work / "out" / "candidates.json").read_text())
    document.pop("generated_at")
    document.pop("source")
    return seconds, int(counted[-1]) if counted else -1, document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    data, _, _ = ensure_data(args.patients, args.seed, quiet=True)
    ids = _patients(data)
    with FhirServer() as server, tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        loaded = load_folder(server.base, data)
        print(f"loaded {loaded:,} resources of {len(ids):,} patients in {time.monotonic() - started:.0f} s")
        group = {"resourceType": "Group", "id": GROUP, "type": "person", "actual": True,
                 "member": [{"entity": {"reference": f"Patient/{i}"}} for i in ids]}  # fmt: skip
        session = requests.Session()
        session.trust_env = False
        put = session.put(f"{server.base}/Group/{GROUP}", data=json.dumps(group), headers={"Content-Type": FHIR_JSON})
        put.raise_for_status()
        crawl = _run(server.base, Path(folder) / "crawl", "--rest", "--crawl", "--group", GROUP,
                     "--concurrency", str(args.concurrency), "--rate", "0")  # fmt: skip
        export = _run(server.base, Path(folder) / "bulk", "--bulk", "--group", GROUP)
        for name, (seconds, asked, _) in (("crawl", crawl), ("group export", export)):
            print(f"{name}: {seconds:.1f} s, {asked:,} requests ({len(ids) / seconds:.1f} patients/s)")
        print(f"same candidates.json: {crawl[2] == export[2]}")
        print(
            f"crawl_over_export_seconds={crawl[0] / export[0]:.1f} crawl_requests_per_patient={crawl[1] / len(ids):.1f}"
        )


if __name__ == "__main__":
    main()
