"""docs/operations.md works as written: its crontab line runs the nightly job, and its
systemd service sets only options the command has."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .paths import CRITERIA, FIXTURES, ROOT

DOC = (ROOT / "docs" / "operations.md").read_text()


def _block(kind: str, number: int = 0) -> str:
    return re.findall(rf"```{kind}\n(.*?)```", DOC, re.S)[number]


def test_the_crontab_line_runs_the_nightly_job(tmp_path: Path) -> None:
    crontab = _block("crontab").splitlines()
    env = {k: v for k, v in (line.split("=", 1) for line in crontab if re.match(r"^[A-Z_]+=", line))}
    (job,) = [line for line in crontab if re.match(r"^[0-9*]", line)]
    command = job.split(None, 5)[5]
    secrets = tmp_path / "secrets.env"
    secrets.write_text("COHORT_FINDER_RUN_AS_OF=2026-06-30\n")
    command = command.replace("/etc/cohort-finder/secrets.env", str(secrets))
    command = command.replace("/var/log/cohort-finder/nightly.log", str(tmp_path / "nightly.log"))
    env.update(
        COHORT_FINDER_HOME=str(ROOT),  # this checkout, with its .venv
        COHORT_FINDER_RUN_CRITERIA=str(CRITERIA / "nct07183761.yaml"),
        COHORT_FINDER_RUN_SOURCE=str(FIXTURES / "fhir_bundles"),  # the folder an export job wrote
        COHORT_FINDER_RUN_OUT=str(tmp_path / "out"),
        COHORT_FINDER_RUN_CACHE=str(tmp_path / "cache"),
    )
    done = subprocess.run(
        ["/bin/sh", "-c", command], env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, (done.stdout, done.stderr, (tmp_path / "nightly.log").read_text())
    assert (tmp_path / "out" / "candidates.json").stat().st_mode & 0o077 == 0
    log = (tmp_path / "nightly.log").read_text().splitlines()
    assert any('"message": "patients 220: candidate 96' in line for line in log)


def test_the_systemd_units_name_only_what_exists() -> None:
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.optionxform = str  # type: ignore[assignment,method-assign]
    service.read_string(_block("ini", 0))
    timer = configparser.ConfigParser(interpolation=None)
    timer.read_string(_block("ini", 1))
    section = service["Service"]
    assert section["Type"] == "oneshot" and section["UMask"] == "0077"
    assert section["ExecStart"].endswith("cohort-finder --log-format json run")
    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "cohort-finder"), "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in _block("ini", 0).splitlines():
        if line.startswith("Environment=COHORT_FINDER_RUN_"):
            option = "--" + line.split("=")[1].removeprefix("COHORT_FINDER_RUN_").lower().replace("_", "-")
            assert option in help_text, option
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:30:00" and timer["Install"]["WantedBy"] == "timers.target"


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    service = _block("ini", 0).replace(
        "/opt/cohort-finder/.venv/bin/cohort-finder", str(Path(sys.executable).parent / "cohort-finder")
    )
    service = service.replace("User=cohort-finder", "User=root").replace("Group=cohort-finder", "Group=root")
    (tmp_path / "cf.service").write_text(service)
    (tmp_path / "cf.timer").write_text(_block("ini", 1).replace("[Timer]", "[Timer]\nUnit=cf.service"))
    done = subprocess.run(
        [analyze, "verify", "--man=no", "./cf.service", "./cf.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
