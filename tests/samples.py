"""The public synthetic data samples the tests read, kept in or made by the project, so that no
test needs the read-only ../shared folder:

- `SYNTHEA`: eight Synthea R4 patients copied unchanged from ../shared/data/synthea-r4 (the five
  with type 2 diabetes and diabetic neuropathy, and the three smallest others), with their
  provenance in `SOURCE_MANIFEST.json` (Apache-2.0).
- `carebundle()`: the 100 carebundle patients of ../shared/data/carebundle-ndjson, made again
  by the same generator (PyPI carebundle, seed 42, through bench/generate.py --plain) into
  tests/.cache the first time a test asks. `CAREBUNDLE_SHA256` holds the shared files' hashes:
  the sample is the same data, byte for byte (tests/bench/test_bench_smoke.py checks it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .paths import ROOT, TEST_DATA

SYNTHEA = TEST_DATA / "synthea-r4-sample"
SYNTHEA_PATIENTS = 8
SYNTHEA_AS_OF = "2021-04-17"  # Synthea's records end in 2021-04
CACHE = ROOT / "tests" / ".cache"

CAREBUNDLE_SHA256 = {
    "AllergyIntolerance.ndjson": "9eb2686fec224cb9f5eaac3186128939a8054bbc376f5046e891bda92e0c84f0",
    "Condition.ndjson": "5d86806fc62d204e636d304caf862716f75a9eaa397e8c2f36adac2acdeef2bb",
    "DiagnosticReport.ndjson": "b28955ec21d80a1e1e298eca33d90f4b2bfef3598243b1fa370934a9eaa41936",
    "Encounter.ndjson": "393583c35590538a20c71f433b9373178c92f415379dd8f407a032bd34a91812",
    "MedicationRequest.ndjson": "a65976a3281656101a4a9835cf9c316817ad10906dcf7a12a48f820869dac6c6",
    "Observation.ndjson": "c255b487aa2db5520097c055dbb1e08bb4bbf45fb814bddd8d85947a5b543249",
    "Patient.ndjson": "49fb363c023c632e2196b15536192c44553bff6bef059c1a0434466630d9d96b",
    "Practitioner.ndjson": "1d595b425227c496a8843648cf8477fa6d382c40be737b5588a79b7064d0c10c",
}


def generate_carebundle(out: Path, patients: int = 100, seed: int = 42) -> None:
    """carebundle's own NDJSON (`carebundle generate --profile mixed --count N --seed S --sex
    mixed --age-range 18-85 --format ndjson`), through the benchmark's generator."""
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "generate.py"), "--patients", str(patients), "--seed", str(seed),
         "--plain", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=True,
    )  # fmt: skip


def carebundle() -> Path:
    """The 100-patient sample, generated once (two test processes may race: the first rename
    wins, and both read the same bytes)."""
    target = CACHE / "carebundle-ndjson-100-42"
    if target.is_dir():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=CACHE, prefix=".carebundle-"))
    try:
        generate_carebundle(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
