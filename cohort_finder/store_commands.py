"""The run store's commands (contract §7): history, diff, review set/import/export.

Like cli.py: parse, call the store, print, exit. `--json` prints what scripts read; otherwise a
table for people. A store that cannot be used, or runs that cannot be compared, exit 2.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any

import click

from .cli_common import store_option
from .errors import UsageError
from .report import worklist
from .store import Store, db, decisions, runs
from .store.changes import Diff
from .store.queries import compare, trial_of
from .store.runs import RunInfo


def _store(path: Path | None) -> Store:
    if path is None:
        raise UsageError(
            "no run store: give --store PATH (a run writes OUT_DIR/history.sqlite) or set COHORT_FINDER_STORE"
        )
    if not path.is_file():
        raise UsageError(f"{path}: no run store there (a run creates it)")
    return Store.open(path)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- history ---------------------------------------------------------------------------------


def history_table(infos: list[RunInfo]) -> str:
    header = ["run", "trial", "state", "exit", "as-of", "started", "patients", "cand", "poss", "excl", "errors",
              "new", "drop", "chg", "source"]  # fmt: skip
    rows = []
    for i in infos:
        c, ch = i.counts, i.changes
        rows.append(
            [str(i.run), i.trial_id, i.state, "" if i.exit_status is None else str(i.exit_status), i.as_of,
             i.started_at.replace("T", " ").removesuffix("Z"),
             *("" if v is None else str(v) for v in (c["patients"], c["candidate"], c["possible"], c["excluded"],
                                                      c["errors"], ch["new"], ch["dropped"], ch["changed"])),
             i.source]
        )  # fmt: skip
    text = _table(header, rows)
    failed = [i for i in infos if i.state == "failed" and i.message]
    if failed:
        text += "\n\nfailed runs:\n" + "\n".join(f"  run {i.run}: {i.message}" for i in failed)
    return text


@click.command()
@store_option(default_text="COHORT_FINDER_STORE")
@click.option("--trial", default=None, help="Only this trial's runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of runs) for scripts.")
def history(store_path: Path | None, trial: str | None, as_json: bool) -> None:
    """Every run recorded in the store: state, exit status, counts, what changed."""
    store = _store(store_path)
    infos = runs.history(store.con, trial_of(store, trial) if trial else None)
    if as_json:
        _echo_json([i.as_json() for i in infos])
    elif infos:
        click.echo(history_table(infos))
    else:
        click.echo(f"{store.path}: no runs yet")


# -- diff ------------------------------------------------------------------------------------


def diff_text(d: Diff) -> str:
    lines = [
        f"{d.trial}: run {d.before.run} ({d.before.as_of}) -> run {d.after.run} ({d.after.as_of}): "
        f"{len(d.new)} new, {len(d.dropped)} dropped, {len(d.changed)} changed"
    ]
    for title, entries in (("new", d.new), ("dropped", d.dropped), ("changed", d.changed)):
        if entries:
            lines.append(f"\n{title}:")
            for e in entries:
                move = e.status if title == "new" else f"{e.before} -> {e.after}"
                because = f"  ({', '.join(e.criteria)})" if e.criteria else ""
                lines.append(f"  {e.id}  {move}{because}")
    return "\n".join(lines)


@click.command(name="diff")
@store_option(default_text="COHORT_FINDER_STORE")
@click.option("--trial", default=None, help="The trial [default: the store's only one].")
@click.option("--from", "from_run", type=int, default=None, help="The earlier run [default: the one before --to].")
@click.option("--to", "to_run", type=int, default=None, help="The later run [default: the trial's last complete one].")
@click.option("--json", "as_json", is_flag=True, help="Print the contract's JSON for scripts.")
def diff_command(
    store_path: Path | None, trial: str | None, from_run: int | None, to_run: int | None, as_json: bool
) -> None:
    """What changed between two complete runs of a trial: new, dropped and changed patients."""
    d = compare(_store(store_path), trial, from_run, to_run)
    if as_json:
        _echo_json(d.as_json())
    else:
        click.echo(diff_text(d))


# -- review ----------------------------------------------------------------------------------


def _reviewer(by: str | None) -> str | None:
    if by:
        return by
    try:
        return os.environ.get("COHORT_FINDER_REVIEWER") or getpass.getuser()
    except (KeyError, OSError):
        return None


@click.group()
def review() -> None:
    """Reviewer decisions: set one, import a filled-in worklist, export the worklist."""


@review.command(name="set")
@store_option(default_text="COHORT_FINDER_STORE")
@click.option("--trial", required=True)
@click.option("--patient", required=True, help="The patient's id (as in candidates.json).")
@click.option("--decision", required=True, type=click.Choice(decisions.DECISIONS))
@click.option("--note", default=None)
@click.option("--by", default=None, help="Who decided [default: COHORT_FINDER_REVIEWER, else the login name].")
def review_set(
    store_path: Path | None, trial: str, patient: str, decision: str, note: str | None, by: str | None
) -> None:
    """Record a decision for one patient (its history is kept)."""
    store = _store(store_path)
    with db.writer_lock(store.path):
        done = decisions.record(store.con, [decisions.Proposed(trial, patient, decision, note, _reviewer(by))])
    click.echo(f"{trial} {patient}: {decision}" if done else f"{trial} {patient}: already {decision}, unchanged")


@review.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@store_option(default_text="COHORT_FINDER_STORE")
@click.option("--by", default=None, help="Who decided [default: COHORT_FINDER_REVIEWER, else the login name].")
def review_import(file: Path, store_path: Path | None, by: str | None) -> None:
    """Record the decisions of a filled-in worklist (.csv or .xlsx): every row with a decision,
    or nothing at all when any row is wrong."""
    store = _store(store_path)
    proposed = worklist.read(file, _reviewer(by))
    with db.writer_lock(store.path):
        done = decisions.record(store.con, proposed)
    click.echo(f"{file.name}: {len(done)} decisions recorded ({len(proposed) - len(done)} unchanged)")


@review.command(name="export")
@store_option(default_text="COHORT_FINDER_STORE")
@click.option("--trial", default=None, help="The trial [default: the store's only one].")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The worklist to write: FILE.csv or FILE.xlsx (mode 0600: it holds PHI).")  # fmt: skip
def review_export(store_path: Path | None, trial: str | None, out_file: Path) -> None:
    """Write the coordinator's worklist: the candidates and possibles of the trial's last
    complete run, with key values, what is left to check, the last decision, and empty
    decision and note columns to fill in."""
    store = _store(store_path)
    trial_id = trial_of(store, trial)
    last = runs.last_complete(store.con, trial_id)
    if last is None:
        raise UsageError(f"{trial_id} has no complete run in {store.path}")
    texts = criteria_texts(store, last)
    rows = worklist.rows_from_store(
        store.con.execute(
            "SELECT trial_id, patient, name, identifier, status, detail FROM worklist WHERE trial_id = ?",
            (trial_id,),
        ),
        texts,
        decisions.latest(store.con, trial_id),
    )
    worklist.export(rows, out_file)
    click.echo(f"wrote {out_file}: {len(rows)} patients of {trial_id} (run {last.run}, as of {last.as_of})")


def criteria_texts(store: Store, info: RunInfo) -> dict[str, str]:
    return {cid: text for cid, _, text in info.criteria}
