"""Progress: log lines with counts and rate when not on a terminal, a bar when on one."""

from __future__ import annotations

import io
import logging

import pytest

from cohort_finder.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_with_counts_when_not_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cohort_finder.progress")
    with Progress(3, "patients", every=0.0, stream=io.StringIO()) as progress:
        for _ in range(3):
            progress.update()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[-1].startswith("3/3 patients (") and messages[-1].endswith("/s)")


def test_a_bar_on_a_terminal() -> None:
    terminal = FakeTerminal()
    with Progress(5, "patients", stream=terminal) as progress:
        for _ in range(5):
            progress.update()
    shown = terminal.getvalue()
    assert "/5" in shown and "patients" in shown  # tqdm drew the bar (and cleared it at the end)
