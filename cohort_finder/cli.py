"""Command line: parse options, call the pipeline, print, exit. Nothing clinical lives here.

Every option can also come from the environment as COHORT_FINDER_<COMMAND>_<OPTION> (e.g.
COHORT_FINDER_RUN_AS_OF), which suits cron jobs; the run store is COHORT_FINDER_STORE for
every command. The run store's commands (history, diff, review) are in store_commands.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from pathlib import Path

import click

from . import __version__, logs, store_commands
from .cli_common import CommandGroup, store_option
from .criteria import load_trial
from .engines import ENGINES, get_engine
from .errors import CohortFinderError, UsageError
from .pipeline import run as run_pipeline
from .serve import command as serve_command
from .settings import load_settings
from .source_factory import ServerOptions, is_server, open_source, publish_cohort
from .store import DEFAULT_NAME, Store, db
from .store.recorder import Recorder


def _as_of(value: str | None) -> date:
    if not value:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"--as-of must be a date YYYY-MM-DD, not {value!r}") from exc


@click.group(
    cls=CommandGroup, context_settings={"auto_envvar_prefix": "COHORT_FINDER", "help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="cohort-finder")
@click.option("-v", "--verbose", count=True, help="More log lines (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors in the log.")
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    help="json: one JSON object a line, for log collectors (ids and counts only, like the text).",
)
def main(verbose: int, quiet: bool, log_format: str) -> None:
    """Find clinical-trial candidates in FHIR R4 data."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logs.configure(level, log_format)


mappings_option = click.option(
    "--mappings",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Value-set folder, overriding the criteria file's own `mappings:`.",
)


@main.command()
@click.option(
    "--criteria",
    "criteria_path",
    envvar="COHORT_FINDER_RUN_CRITERIA",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The trial's criteria file (YAML).",
)
@click.option(
    "--source", required=True, help="A folder of FHIR JSON/NDJSON files (searched recursively), or a FHIR R4 base URL."
)
@click.option(
    "--out",
    "out_dir",
    envvar="COHORT_FINDER_RUN_OUT",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for candidates.json, candidates.csv and report.html.",
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="GLOB",
    help="Folder source: skip files matching GLOB (path in the folder, or file name), e.g. a manifest. Repeatable.",
)
@click.option(
    "--as-of", "as_of", default=None, help="Reference date YYYY-MM-DD for ages and windows [default: today, UTC]."
)
@mappings_option
@click.option(
    "--config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="TOML settings for server sources (timeouts, retries, auth files); see docs/servers.md.",
)
@click.option(
    "--bulk/--rest",
    "bulk",
    default=None,
    help="For a server: Bulk Data $export or REST search [default: $export when the server offers it].",
)
@click.option(
    "--group",
    default=None,
    help="Bulk: export Group/ID/$export instead of Patient/$export. REST: the Group whose members are searched "
    "one by one when the server refuses searches across all patients.",
)
@click.option(
    "--patients-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="REST: patients (one id a line) to search one by one when the server refuses searches across all patients.",
)
@click.option(
    "--publish",
    is_flag=True,
    help="Server sources: write the ResearchStudy, a Group of the candidates and possibles, and their "
    "ResearchSubjects back to the server (contract §8).",
)
@click.option(
    "--crawl", is_flag=True, help="REST: search patient by patient from the start (needs --group or --patients-file)."
)
@click.option(
    "--concurrency", type=click.IntRange(1, 32), default=4, show_default=True, help="A crawl's patients at a time."
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=10,
    show_default=True,
    help="A crawl's requests per second (0: no limit).",
)
@click.option(
    "--max-retry-after",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds: the longest a server's Retry-After is waited for; longer asks wait this long "
    "[default: 300, or max_retry_after in --config].",
)
@click.option("--since", default=None, help="Bulk: only resources changed since this instant (_since).")
@click.option(
    "--cache",
    "cache_dir",
    envvar="COHORT_FINDER_RUN_CACHE",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Bulk: folder that keeps exports for re-runs [default: ~/.cache/cohort-finder/bulk].",
)
@click.option("--refresh", is_flag=True, help="Bulk: export everything now, not only what changed since the last run.")
@click.option(
    "--full-refresh-days",
    type=click.FloatRange(min=0),
    default=7,
    show_default=True,
    help="Bulk: a later run asks only for what changed since the last export; every this many days, for everything.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", *ENGINES]),
    default="auto",
    show_default=True,
    help="Who does the reduce step: duckdb (default for folders and Bulk caches), spark, or python.",
)
@click.option("--spark-master", default=None, help="Spark master URL for --engine spark [default: local[*]].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes that evaluate and render patients [default: one per core; runs under 4,000 patients use one].",
)
@store_option(default_text="OUT_DIR/history.sqlite")
@click.option(
    "--lock-wait",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to wait for another run on the same store to finish before refusing (exit 2).",
)
def run(
    criteria_path: Path,
    source: str,
    out_dir: Path,
    ignore: tuple[str, ...],
    as_of: str | None,
    mappings: Path | None,
    config: Path | None,
    bulk: bool | None,
    group: str | None,
    patients_file: Path | None,
    publish: bool,
    crawl: bool,
    concurrency: int,
    rate: float,
    max_retry_after: float | None,
    since: str | None,
    cache_dir: Path | None,
    refresh: bool,
    full_refresh_days: float,
    engine: str,
    spark_master: str | None,
    workers: int | None,
    store_path: Path | None,
    lock_wait: float,
) -> int:
    """Evaluate every patient in SOURCE against a trial's criteria, and record the run in the
    run store (OUT_DIR/history.sqlite unless --store).

    Exit status: 0 every patient evaluated; 1 finished, but some data could not be read
    (listed under errors), or the source could not be read at all (nothing written, the
    previous outputs stay); 2 bad usage, an invalid criteria file, or a store that cannot be
    used (not a store, from a newer release, in use by another run).
    """
    reference = _as_of(as_of)
    if publish and not is_server(source):
        raise UsageError("--publish writes to the FHIR server the run reads: give a server --source")
    trial = load_trial(criteria_path, mappings)
    server = None
    if is_server(source):
        settings = load_settings(config)
        if max_retry_after is not None:
            settings.http.max_retry_after = max_retry_after
        server = ServerOptions(
            settings,
            bulk,
            group,
            since,
            refresh=refresh,
            full_refresh_days=full_refresh_days,
            patients_file=patients_file,
            crawl=crawl,
            concurrency=concurrency,
            rate=rate,
            **({"cache": cache_dir} if cache_dir else {}),
        )
    chosen = engine if engine != "auto" else ("python" if is_server(source) and bulk is False else "duckdb")
    chosen_engine = get_engine(chosen, spark_master)
    path = store_path or Path(out_dir) / DEFAULT_NAME
    store = Store.open(path)
    with db.writer_lock(path, lock_wait):
        recorder = Recorder(store, trial, reference.isoformat(), source, chosen)
        try:
            opened = open_source(source, trial, reference, server, ignore)
        except CohortFinderError as exc:
            recorder.fail(exc.exit_code, str(exc))
            raise
        summary = run_pipeline(trial, opened, reference, out_dir, source, chosen_engine, workers, recorder)
        if publish:
            assert server is not None
            written = publish_cohort(source, server, store, trial)
    result, counts = summary.result, summary.counts
    changes = f"; {summary.changes_text}" if summary.since else ""
    click.echo(
        f"{result.trial_id} as of {result.as_of}: {summary.patients} patients: "
        f"{counts['candidate']} candidate, {counts['possible']} possible, {counts['excluded']} excluded; "
        f"{len(result.errors)} errors{changes} (run {recorder.run})"
    )
    for path in summary.outputs:
        click.echo(f"wrote {path}")
    if publish:
        click.echo(f"published {written} resources to {source}")
    return summary.exit_code


@main.command()
@click.argument("criteria_path", type=click.Path(dir_okay=False, path_type=Path))
@mappings_option
def validate(criteria_path: Path, mappings: Path | None) -> None:
    """Check a criteria file and the value sets it names, without running it."""
    trial = load_trial(criteria_path, mappings)
    computable = sum(1 for c in trial.criteria[1:] if c.rule is not None)
    manual = len(trial.criteria) - 1 - computable
    versions = ", ".join(f"{name} {v}" for name, v in sorted(trial.terminology.versions.items()))
    click.echo(
        f"{criteria_path}: {trial.id}: {len(trial.criteria) - 1} criteria ({computable} computable, {manual} manual) "
        f"plus built-in alive; value sets OK ({versions})"
    )


main.add_command(store_commands.history)
main.add_command(store_commands.diff_command)
main.add_command(store_commands.review)
main.add_command(serve_command.serve)
