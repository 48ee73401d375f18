"""A run that could not read its source at all writes nothing (contract §4): the previous
outputs stay byte for byte, stderr says why, the store records the run as failed, exit 1."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import socket
from pathlib import Path

import pytest

from cohort_finder.store import db

from .e2e import cohort_finder
from .paths import CRITERIA, FIXTURES

TRIAL = str(CRITERIA / "nct07183761.yaml")
OUTPUTS = ("candidates.json", "candidates.csv", "report.html")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "fhir_bundles", tmp_path / "ehr")
    done = cohort_finder("run", "--criteria", TRIAL, "--source", str(tmp_path / "ehr"),
                         "--out", str(tmp_path / "out"), "--as-of", "2026-06-29")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return tmp_path / "out"


def _outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _last_run(out: Path) -> dict[str, object]:
    done = cohort_finder("history", "--store", str(out / "history.sqlite"), "--json")
    return json.loads(done.stdout)[-1]  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", ["missing folder", "server down", "no patient any more"])
def test_a_source_that_cannot_be_read_leaves_yesterdays_outputs(out: Path, tmp_path: Path, case: str) -> None:
    before = _outputs(out)
    env = {}
    if case == "missing folder":
        source, says = str(tmp_path / "gone"), "source not found"
    elif case == "server down":
        source, says = f"http://127.0.0.1:{_unused_port()}/fhir", "every search failed"
        env = {"COHORT_FINDER_RETRIES": "0", "COHORT_FINDER_TIMEOUT": "2"}
    else:  # the same folder, emptied (an export that wrote nothing)
        shutil.rmtree(tmp_path / "ehr")
        (tmp_path / "ehr").mkdir()
        source, says = str(tmp_path / "ehr"), "the source holds no Patient, where run 1"
    done = cohort_finder(
        "run", "--criteria", TRIAL, "--source", source, "--out", str(out), "--as-of", "2026-06-30", "--rest",
        env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert _outputs(out) == before
    assert not list(out.glob(".*.tmp"))
    last = _last_run(out)
    assert (last["run"], last["state"], last["exit_status"]) == (2, "failed", 1)
    assert says in str(last["message"])
    table = cohort_finder("history", "--store", str(out / "history.sqlite")).stdout
    assert "failed runs:\n  run 2: " in table


def test_the_first_run_of_an_empty_folder_is_no_failure(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = cohort_finder("run", "--criteria", TRIAL, "--source", str(tmp_path / "empty"),
                         "--out", str(tmp_path / "out"), "--as-of", "2026-06-30")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "0 patients" in done.stdout


def _hold(path: str, ready: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event) -> None:
    with db.writer_lock(Path(path)):
        ready.set()
        release.wait(30)


def test_a_second_run_on_a_store_in_use_is_refused_and_writes_nothing(out: Path) -> None:
    before = _outputs(out)
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(out / "history.sqlite"), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        done = cohort_finder("run", "--criteria", TRIAL, "--source", str(FIXTURES / "fhir_bundles"),
                             "--out", str(out), "--as-of", "2026-06-30")  # fmt: skip
        assert done.returncode == 2 and "is in use by cohort-finder pid" in done.stderr, done.stderr
        assert _outputs(out) == before
    finally:
        release.set()
        holder.join(10)
    assert len(cohort_finder("history", "--store", str(out / "history.sqlite")).stdout.splitlines()) == 3  # 1 run
