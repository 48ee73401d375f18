"""Questions every reader of the store asks (the CLI, the Python API, the review app): which
trial is meant, and what changed between two complete runs."""

from __future__ import annotations

from ..errors import UsageError
from . import Store, runs
from .changes import Diff, diff


def trial_of(store: Store, trial: str | None) -> str:
    """The trial asked for, or the store's only one."""
    known = [t for (t,) in store.con.execute("SELECT DISTINCT trial_id FROM runs ORDER BY trial_id")]
    if trial is not None:
        if trial not in known:
            raise UsageError(f"trial {trial!r} has no run in {store.path} (known: {', '.join(known) or 'none'})")
        return trial
    if len(known) == 1:
        return str(known[0])
    raise UsageError(f"{store.path} holds runs of several trials: give --trial ({', '.join(known)})")


def compare(store: Store, trial: str | None, from_run: int | None, to_run: int | None) -> Diff:
    """Two complete runs of one trial compared; by default its last two (UsageError, exit 2,
    when that cannot be done)."""
    if from_run is not None or to_run is not None:
        asked = [r for r in (from_run, to_run) if r is not None]
        infos = {r: runs.get(store.con, r) for r in asked}
        for r, info in infos.items():
            if info is None:
                raise UsageError(f"no run {r} in {store.path}")
            if info.state != "complete":
                raise UsageError(f"run {r} is {info.state}, not complete: only complete runs can be compared")
        trials = {i.trial_id for i in infos.values() if i is not None}
        if len(trials) > 1:
            raise UsageError(f"runs {from_run} and {to_run} are of different trials ({', '.join(sorted(trials))})")
        trial = trial or trials.pop()
        if trial not in {i.trial_id for i in infos.values() if i is not None}:
            raise UsageError(f"run {asked[0]} is not a run of {trial}")
    trial = trial_of(store, trial)
    after = runs.get(store.con, to_run) if to_run is not None else runs.last_complete(store.con, trial)
    before = runs.get(store.con, from_run) if from_run is not None else None
    if after is not None and before is None:
        before = runs.last_complete(store.con, trial, before=after.run)
    if after is None or before is None:
        done = len([i for i in runs.history(store.con, trial) if i.state == "complete"])
        if done < 2:
            raise UsageError(f"{trial} has {done} complete run{'' if done == 1 else 's'}: diff needs two")
        assert after is not None
        raise UsageError(f"run {after.run} is the first complete run of {trial}: nothing before it to compare with")
    return diff(trial, runs.state(store.con, before), runs.state(store.con, after))
