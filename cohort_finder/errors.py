"""One error hierarchy: library code raises, only the CLI prints and exits.

Each class carries the exit code the contract gives it (§1): 2 for bad usage or an invalid
criteria file. Problems with the *data* are not exceptions: they are collected as
`RunError` rows and make the run exit 1 (contract §4).
"""

from __future__ import annotations

from pathlib import Path


class CohortFinderError(Exception):
    exit_code = 1


class UsageError(CohortFinderError):
    """Bad command-line usage: a missing folder, a bad date."""

    exit_code = 2


class CriteriaError(CohortFinderError):
    """A criteria or mapping file that cannot be used. Names the file, the line and why."""

    exit_code = 2

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {reason}")


class SourceError(CohortFinderError):
    """A source that cannot be read at all (as opposed to one bad file or line in it): a
    folder that is missing, a server that cannot be reached or refuses every request, no
    Patient where the previous run found some. Exit 1, and no outputs are written, so the
    previous run's stay as they were (contract §4)."""


class StoreError(CohortFinderError):
    """A run store that cannot be used: not a store, from a newer release, or in use by
    another run. Nothing is changed (contract §7)."""

    exit_code = 2


class WorkerError(CohortFinderError):
    """A worker process died before finishing its patients (killed, out of memory): the run
    stops with exit 1 and writes no outputs, so the previous run's stay."""


class FetchError(CohortFinderError):
    """A request to a FHIR server that failed after its retries. `url` says which (with its
    query). A failed page is a `RunError` of the run; a request without which the source
    cannot be read at all raises this."""

    def __init__(self, url: str, message: str, *, cut_short: bool = False) -> None:
        self.url = url
        self.cut_short = cut_short  # the body broke off in transit: worth asking again
        super().__init__(message)


class AuthError(CohortFinderError):
    """Authentication cannot be set up or the server refused it. Never quotes a secret."""


class PublishError(CohortFinderError):
    """The server refused what `--publish` sent; the run's outputs stand, the write-back did
    not finish."""


class BadRequest(CohortFinderError):
    """A request to the review app that cannot be served as asked (a run number that is not
    a number): answered 400, never a traceback."""

    exit_code = 2
