"""What every command shares: the command group, which is the one place an error becomes an
exit status, and the `--store` option."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import CohortFinderError


class CommandGroup(click.Group):
    """Commands raise `CohortFinderError` or return an exit status; here, and only here, that
    becomes a message on stderr and the process's exit status (click exits after)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            status = super().invoke(ctx)
        except CohortFinderError as exc:
            click.echo(f"cohort-finder: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        if isinstance(status, int) and status:
            ctx.exit(status)
        return status


def store_option(default_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--store for every command, from COHORT_FINDER_STORE too."""
    return click.option(
        "--store",
        "store_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="COHORT_FINDER_STORE",
        default=None,
        help=f"The run store (SQLite file, mode 0600; env COHORT_FINDER_STORE) [default: {default_text}].",
    )
