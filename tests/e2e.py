"""Run the real command, as a user would, and read what it wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import ROOT


@dataclass(frozen=True)
class Run:
    exit_code: int
    stdout: str
    stderr: str
    out: Path

    @property
    def document(self) -> dict[str, Any]:
        return json.loads((self.out / "candidates.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]

    def patient(self, pid: str) -> dict[str, Any]:
        return next(p for p in self.document["patients"] if p["id"] == pid)

    def comparable(self) -> dict[str, Any]:
        """candidates.json without what differs between two runs of the same data from
        different sources (`generated_at`, `source`): for parity between sources."""
        document = self.document
        document.pop("generated_at")
        document.pop("source")
        return document


def cohort_finder(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script when there is one, else the module (same code)."""
    exe = shutil.which("cohort-finder", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "cohort_finder"]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, env=full_env, check=False)


def run_trial(
    criteria: Path, source: Path | str, out: Path, as_of: str, *extra: str, env: dict[str, str] | None = None
) -> Run:
    """`source`: a folder, or a server's base URL."""
    done = cohort_finder(
        "run", "--criteria", str(criteria), "--source", str(source), "--out", str(out), "--as-of", as_of, *extra,
        env=env,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr, out)
