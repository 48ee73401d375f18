"""Run-store benchmark: a year of nightly runs, in bytes per run and seconds per diff.

    python bench/store.py --patients 200000 [--nights 365] [--churn 0.02] [--seed 42]

Simulates what `cohort-finder run` hands the store each night (store/runs.py): every patient's
status and one result letter per criterion of criteria/nct07183761.yaml (32), where a share of
the patients (`--churn`) change a result each night, a few leave and a few arrive. Prints the
file size after the first run, the bytes a night adds (mean over the base runs the store
writes every runs.SNAPSHOT_EVERY nights, and the nights between), the size after the year, and
the time to read one run's state and to compute `diff` between the last two runs. A script, not
a timed test; the numbers go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cohort_finder.criteria import load_trial  # noqa: E402
from cohort_finder.store import Store, runs  # noqa: E402
from cohort_finder.store.changes import PatientState, diff  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--churn", type=float, default=0.02, help="share of patients with a changed result a night")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    trial = load_trial(REPO / "criteria" / "nct07183761.yaml")
    width = len(trial.criteria)
    rng = random.Random(args.seed)

    def someone() -> PatientState:
        status = rng.choices(["candidate", "possible", "excluded"], [3, 1, 96])[0]
        return PatientState(status, "".join(rng.choices("mnux", [6, 20, 3, 3], k=width)))

    state = {f"{rng.getrandbits(128):032x}": someone() for _ in range(args.patients)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.sqlite"
        store = Store.open(path)
        sizes, started = [], time.monotonic()
        for night in range(args.nights):
            if night:
                for pid in rng.sample(sorted(state), int(args.patients * args.churn)):
                    state[pid] = someone()
                for pid in rng.sample(sorted(state), max(1, args.patients // 2000)):
                    del state[pid]
                for _ in range(max(1, args.patients // 2000)):
                    state[f"{rng.getrandbits(128):032x}"] = someone()
            run = runs.begin(store.con, trial, f"night {night}", "bench", "duckdb", ("x", "y"))
            info = runs.last_complete(store.con, trial.id, before=run)
            previous = runs.state(store.con, info) if info else None
            counts = {"patients": len(state), "candidate": 0, "possible": 0, "excluded": 0, "errors": 0}
            done = runs.Completed(dict(state), counts, [], {"new": 0, "dropped": 0, "changed": 0}, 0, {}, [])
            runs.complete(store.con, run, trial.id, previous, info.base_run if info else None, done)
            sizes.append(path.stat().st_size)
        year = time.monotonic() - started
        last, before = runs.last_complete(store.con, trial.id), None
        assert last is not None
        before = runs.last_complete(store.con, trial.id, before=last.run)
        assert before is not None
        t = time.monotonic()
        after_state = runs.state(store.con, last)
        read_s = time.monotonic() - t
        t = time.monotonic()
        d = diff(trial.id, runs.state(store.con, before), after_state)
        diff_s = time.monotonic() - t
        store.close()
    nightly = [b - a for a, b in itertools.pairwise(sizes)]
    print(f"patients {args.patients:,}, nights {args.nights}, churn {args.churn:.1%}, criteria {width}")
    print(f"after the first run: {sizes[0] / 1e6:.1f} MB ({sizes[0] / args.patients:.0f} bytes a patient)")
    print(f"a night adds on average: {sum(nightly) / len(nightly) / 1e6:.2f} MB (base runs included)")
    print(f"after {args.nights} nights: {sizes[-1] / 1e6:.1f} MB, written in {year:.0f} s")
    print(f"read one run's state: {read_s:.2f} s; diff of the last two runs (both read): {read_s + diff_s:.2f} s")
    print(f"that diff: {len(d.new)} new, {len(d.dropped)} dropped, {len(d.changed)} changed")


if __name__ == "__main__":
    main()
