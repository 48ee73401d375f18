"""Scale benchmark: cohort-finder end to end against the floor and the naive baseline.

    python bench/run.py --patients 20000 [--seed 42] [--engines duckdb,spark]
                        [--skip-baseline] [--baseline-sample K] [--json PATH]

On one data set (bench/generate.py, cached under bench/.data/), side by side:

- floor: DuckDB reading every NDJSON file, in one `read_ndjson([...files])` scan (faster than a
  query per file, so the stricter floor), with explicit columns (no schema inference) that
  cover every field cohort_finder/facts.py reads, every column forced to be materialised
  (a hash of each is aggregated, so nothing is pruned): best of 3 after one warm-up, timed
  inside a fresh child process (so its peak RSS is the scan's, not this script's), once
  before and once after the engines, the better kept (other load on the machine comes and
  goes; the 1-minute load average is printed);
- `cohort-finder run --criteria criteria/nct07183761.yaml --source DATA --as-of 2026-01-01
  --engine E` for each engine asked for: wall clock of the whole command (interpreter start
  included), best of 2, exit status 0 required;
- fhir.resources: every line parsed into its R4B model (`model_validate_json`), in a child
  process, after one untimed parse per model class (pydantic builds validators on first use);
  with --baseline-sample K only the first K lines per file, scaled up by bytes.

Peak memory is the child's own peak RSS (os.wait4) or, when it starts processes of its own
(Spark's JVM, cohort-finder's forked workers), the peak over its process tree of the summed
PSS (each page shared copy-on-write counted once, split between its sharers; plain RSS would
count it in every process), whichever is larger. PSS is sampled once a second: the kernel walks
a process's page tables to give it (about 10 ms per GB), so sampling more often would slow the
run being timed. The table's last two
lines are `speedup_vs_fhir_resources=X` (baseline seconds / first engine's seconds) and
`end_to_end_over_floor=R` (first engine's seconds / floor seconds). It is a script, not a
timed test: CI runs it at a small size only to prove it works.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from generate import REFERENCE_DATE, data_folder, ensure_data  # noqa: E402

from cohort_finder.engines.schema import COLUMNS  # noqa: E402

CRITERIA = REPO / "criteria" / "nct07183761.yaml"
# pipeline.py's timing of what follows the reduce (evaluation, rendering, writing)
AFTER_REDUCE = re.compile(r"evaluated and wrote (\d+) patients in ([\d.]+) s after the reduce")

# ------------------------------------------------------------------ the floor's columns
# Every field cohort_finder/facts.py (and the catalogue) reads, typed as FHIR R4 defines it.
# The floor scans exactly the columns the engines declare (every field facts.py reads), from
# the one definition they share, so the floor and the engines cannot drift apart.
FLOOR_COLUMNS: dict[str, str] = COLUMNS


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def floor_sql(files: list[Path]) -> str:
    """One scan of every file; a hash of each column is aggregated, so every column (and every
    field inside it) is parsed and nothing is pruned by projection pushdown."""
    columns = "{" + ", ".join(f"{_sql_str(k)}: {_sql_str(v)}" for k, v in FLOOR_COLUMNS.items()) + "}"
    listing = "[" + ", ".join(_sql_str(str(f)) for f in files) + "]"
    aggregates = ", ".join(f'bit_xor(hash("{name}"))' for name in FLOOR_COLUMNS)
    return (
        f"SELECT count(*), {aggregates} FROM read_ndjson({listing}, columns = {columns}, format = 'newline_delimited')"
    )


def child_floor(source: Path, runs: int) -> dict[str, Any]:
    import duckdb

    files = sorted(source.rglob("*.ndjson"))
    con = duckdb.connect()
    sql = floor_sql(files)
    first = con.execute(sql).fetchone()  # warm-up: page cache, DuckDB's first-query costs
    rows = first[0] if first else 0
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        con.execute(sql).fetchone()
        times.append(time.perf_counter() - started)
    return {"seconds": min(times), "runs": times, "rows": rows, "duckdb": duckdb.__version__}


def child_baseline(source: Path, sample: int | None) -> dict[str, Any]:
    import pydantic
    from fhir.resources import __version__ as fhir_version
    from fhir.resources.R4B import get_fhir_model_class

    total_seconds = 0.0
    parsed = errors = 0
    per_file = {}
    for path in sorted(source.rglob("*.ndjson")):
        size = path.stat().st_size
        with path.open("rb") as handle:  # streamed: one model at a time, as a naive reader would
            first = next((line for line in handle if line.strip()), None)
            if first is None:
                continue
            model = get_fhir_model_class(json.loads(first)["resourceType"])
            with contextlib.suppress(pydantic.ValidationError):  # untimed: a model's first use builds its validator
                model.model_validate_json(first)
            handle.seek(0)
            count = read = 0
            started = time.perf_counter()
            for line in handle:
                if not line.strip():
                    continue
                try:
                    model.model_validate_json(line)
                except pydantic.ValidationError:
                    errors += 1
                count += 1
                read += len(line)
                if sample is not None and count >= sample:
                    break
            seconds = time.perf_counter() - started
        scale = size / read if sample is not None else 1.0
        total_seconds += seconds * scale
        parsed += count
        per_file[path.name] = {"lines": count, "seconds": seconds, "scale": scale}
    return {
        "seconds": total_seconds,
        "parsed": parsed,
        "validation_errors": errors,
        "sample": sample,
        "files": per_file,
        "fhir_resources": fhir_version,
        "models": "R4B",
    }


# ------------------------------------------------------------------ measuring a child


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def _children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _memory_kb(pid: int) -> int:
    """The process's proportional set size (Linux 4.14+), else its RSS."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith(key):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return 0


@dataclass
class _TreeSampler:
    """Peak of the summed PSS of a process and all its descendants (Linux /proc)."""

    root: int
    peak_kb: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> _TreeSampler:
        if os.path.isdir("/proc"):
            threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            tree = _children_of()
            pids, todo = [], [self.root]
            while todo:
                pid = todo.pop()
                pids.append(pid)
                todo.extend(tree.get(pid, []))
            self.peak_kb = max(self.peak_kb, sum(_memory_kb(p) for p in pids))
            self._stop.wait(1.0)

    def stop(self) -> int:
        self._stop.set()
        return self.peak_kb


def measure(cmd: list[str], cwd: Path = REPO) -> Measured:
    """Run `cmd`, wall-clock it, and take its peak RSS (os.wait4 on exactly this child)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        sampler = _TreeSampler(proc.pid).start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        tree_kb = sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting
        out.seek(0)
        err.seek(0)
        peak_kb = max(usage.ru_maxrss, tree_kb)  # ru_maxrss is in KiB on Linux
        return Measured(
            seconds,
            peak_kb / 1024,
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


# ------------------------------------------------------------------ cohort-finder


def cohort_finder_bin() -> list[str]:
    exe = Path(sys.executable).parent / "cohort-finder"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cohort_finder"]


def engine_choices() -> list[str] | None:
    """The values `cohort-finder run --engine` takes, or None when it has no such option."""
    helptext = subprocess.run(
        [*cohort_finder_bin(), "run", "--help"], capture_output=True, text=True, cwd=REPO, check=False
    ).stdout
    if "--engine" not in helptext:
        return None
    match = re.search(r"--engine\s+\[([^\]]+)\]", helptext)
    return match.group(1).split("|") if match else []


def spark_unavailable() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed in this Python"
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and (Path(java_home) / "bin" / "java").exists()):
        return "no java on PATH or in JAVA_HOME"
    return None


def run_end_to_end(source: Path, engine: str | None, runs: int, as_of: str) -> tuple[Measured, list[float]]:
    best: Measured | None = None
    times: list[float] = []
    for _ in range(runs):
        out_dir = Path(tempfile.mkdtemp(prefix="cohort-bench-"))
        try:
            cmd = [
                *cohort_finder_bin(),
                "run",
                "--criteria",
                str(CRITERIA),
                "--source",
                str(source),
                "--out",
                str(out_dir),
                "--as-of",
                as_of,
            ]
            if engine is not None:
                cmd += ["--engine", engine]
            result = measure(cmd)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        if result.returncode != 0:
            return result, times
        times.append(result.seconds)
        if best is None or result.seconds < best.seconds:
            best = result
    assert best is not None
    return best, times


# ------------------------------------------------------------------ the table


@dataclass
class Row:
    label: str
    seconds: float | None = None
    peak_rss_mb: float | None = None
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def render(rows: list[Row], mb: float, resources: int, floor_s: float) -> list[str]:
    head = f"{'':34} {'seconds':>9} {'MB/s':>9} {'resources/s':>12} {'peak MB':>12} {'x floor':>8}"
    lines = [head, "-" * len(head)]
    for row in rows:
        if row.seconds is None:
            lines.append(f"{row.label:34} {row.note}")
            continue
        lines.append(
            f"{row.label:34} {row.seconds:9.3f} {mb / row.seconds:9.1f} {resources / row.seconds:12,.0f} "
            f"{row.peak_rss_mb or 0:12.0f} {row.seconds / floor_s:8.2f}" + (f"  {row.note}" if row.note else "")
        )
    return lines


def _floor(me: list[str], runs: int, resources: int) -> tuple[dict[str, Any] | None, float]:
    run = measure([*me, "--child", "floor", "--floor-runs", str(runs)])
    if run.returncode != 0:
        print(f"floor scan failed (exit {run.returncode}):\n{_tail(run.stderr)}", file=sys.stderr)
        return None, 0.0
    result: dict[str, Any] = json.loads(run.stdout)
    if result["rows"] != resources:
        print(f"floor scan read {result['rows']} rows, the manifest says {resources}", file=sys.stderr)
        return None, 0.0
    return result, run.peak_rss_mb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--engines", default="duckdb,spark", help="comma-separated; the first is the headline")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--dense", action="store_true", help="data where every patient has facts the trial's rules read"
    )
    parser.add_argument("--baseline-sample", type=int, default=None, metavar="K", help="parse K lines per file")
    parser.add_argument("--runs", type=int, default=2, help="cohort-finder runs per engine (best is kept)")
    parser.add_argument("--floor-runs", type=int, default=3, help="timed floor scans after one warm-up")
    parser.add_argument("--as-of", default=REFERENCE_DATE.isoformat())
    parser.add_argument("--workers", type=int, default=None, help="generator processes")
    parser.add_argument(
        "--data-root", type=Path, default=None, help="cache folder for generated data [default: bench/.data]"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--child", choices=("floor", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    if args.child == "floor":
        print(json.dumps(child_floor(args.source, args.floor_runs)))
        return 0
    if args.child == "baseline":
        print(json.dumps(child_baseline(args.source, args.baseline_sample)))
        return 0
    if args.patients is None or args.patients < 1:
        parser.error("--patients N (N >= 1) is required")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines:
        parser.error("--engines names no engine")

    gen_started = time.monotonic()
    out = args.data_root / data_folder(args.patients, args.seed, dense=args.dense).name if args.data_root else None
    source, manifest, reused = ensure_data(args.patients, args.seed, out, workers=args.workers, dense=args.dense)
    gen_seconds = time.monotonic() - gen_started
    resources, nbytes = manifest["resources"], manifest["bytes"]
    mb = nbytes / 1e6
    notes: list[str] = []
    failed = False

    # floor: measured before and after the engines (the best is kept), so that a burst of other
    # load on the machine during one of them does not set the ratio
    me = [sys.executable, str(Path(__file__).resolve()), "--source", str(source)]
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    floor, floor_rss = _floor(me, args.floor_runs, resources)
    if floor is None:
        return 1
    floor_row = Row("floor (DuckDB explicit-column scan)", floor["seconds"], floor_rss, detail={"before": floor})
    rows = [floor_row]

    # cohort-finder, per engine
    choices = engine_choices()
    if choices is None:
        notes.append("cohort-finder has no --engine option yet: ran it without one (its default engine)")
        engines = engines[:1]
    headline: Row | None = None
    for engine in engines:
        label = f"cohort-finder {engine}" if choices is not None else "cohort-finder (default engine)"
        if choices is not None and choices and engine not in choices:
            rows.append(Row(label, note=f"skipped (--engine takes {'|'.join(choices)})"))
            notes.append(f"{engine}: skipped (not an --engine choice)")
            continue
        if engine == "spark" and (why := spark_unavailable()):
            rows.append(Row(label, note=f"skipped ({why})"))
            notes.append(f"spark: skipped ({why})")
            continue
        result, times = run_end_to_end(source, engine if choices is not None else None, args.runs, args.as_of)
        if result.returncode != 0:
            failed = True
            rows.append(Row(label, note=f"FAILED (exit {result.returncode})"))
            print(f"{label} exited {result.returncode}:\n{_tail(result.stderr)}", file=sys.stderr)
            continue
        detail: dict[str, Any] = {"runs": times, "summary": result.stdout.strip()}
        after = AFTER_REDUCE.search(result.stderr)
        if after:
            detail["after_reduce"] = {"patients": int(after[1]), "seconds": float(after[2])}
        row = Row(label, result.seconds, result.peak_rss_mb, detail=detail)
        rows.append(row)
        if headline is None and engine == engines[0]:
            headline = row

    again, again_rss = _floor(me, args.floor_runs, resources)
    if again is None:
        return 1
    floor_row.detail["after"] = again
    floor_row.seconds = min(floor["seconds"], again["seconds"])
    floor_row.peak_rss_mb = max(floor_rss, again_rss)
    floor = {**floor, "seconds": floor_row.seconds}

    # fhir.resources
    baseline: Row | None = None
    if args.skip_baseline:
        rows.append(Row("fhir.resources baseline", note="skipped (--skip-baseline)"))
    elif importlib.util.find_spec("fhir") is None or importlib.util.find_spec("fhir.resources") is None:
        rows.append(Row("fhir.resources baseline", note="skipped (fhir.resources is not installed)"))
    else:
        cmd = [*me, "--child", "baseline"]
        if args.baseline_sample:
            cmd += ["--baseline-sample", str(args.baseline_sample)]
        base_run = measure(cmd)
        if base_run.returncode != 0:
            failed = True
            rows.append(Row("fhir.resources baseline", note=f"FAILED (exit {base_run.returncode})"))
            print(f"baseline exited {base_run.returncode}:\n{_tail(base_run.stderr)}", file=sys.stderr)
        else:
            detail = json.loads(base_run.stdout)
            sampled = args.baseline_sample is not None
            baseline = Row(
                "fhir.resources baseline" + (" *" if sampled else ""),
                detail["seconds"],
                base_run.peak_rss_mb,
                detail=detail,
            )
            rows.append(baseline)
            if sampled:
                notes.append(
                    f"* fhir.resources parsed the first {args.baseline_sample} lines of each file "
                    f"({detail['parsed']} resources); seconds scaled up by each file's bytes, peak RSS is the sample's"
                )
            if detail["validation_errors"]:
                notes.append(f"fhir.resources rejected {detail['validation_errors']} resources (time still counted)")

    # report
    cores = os.cpu_count() or 1
    patients = manifest["patients"]
    print(
        f"cohort-finder benchmark: {patients:,} patients (seed {manifest['seed']}), {resources:,} resources, "
        f"{mb:,.1f} MB in {len(manifest['files'])} NDJSON files, as-of {args.as_of}, {cores} cores"
    )
    print(
        f"data: {source} ({'reused' if reused else f'generated in {gen_seconds:.1f} s'}; "
        f"{resources / patients:.1f} resources and {nbytes / patients / 1000:.1f} kB per patient)"
    )
    print(
        f"floor: DuckDB {floor['duckdb']}, best of 2x{args.floor_runs} scans (before and after the engines, each after "
        f"a warm-up); cohort-finder: best of {args.runs} runs"
    )
    if load_before is not None:
        load_after = os.getloadavg()[0]
        print(
            f"1-minute load average: {load_before:.2f} at the start, {load_after:.2f} at the end "
            f"(on {cores} cores; other load on the machine makes the ratios noisy)"
        )
    print()
    for line in render(rows, mb, resources, floor["seconds"]):
        print(line)
    print()
    for note in notes:
        print(note)
    ratio = headline.seconds / floor["seconds"] if headline and headline.seconds else None
    after = headline.detail.get("after_reduce") if headline else None
    per_s = after["patients"] / after["seconds"] if after and after["seconds"] > 0 else None
    speedup = None
    if baseline and baseline.seconds and headline and headline.seconds:
        speedup = baseline.seconds / headline.seconds

    if args.json:
        payload = {
            "patients": manifest["patients"],
            "seed": manifest["seed"],
            "resources": resources,
            "bytes": nbytes,
            "files": manifest["files"],
            "data": str(source),
            "data_reused": reused,
            "generate_seconds": manifest["generate_seconds"],
            "as_of": args.as_of,
            "cores": cores,
            "load_average_start": load_before,
            "rows": [
                {
                    "label": r.label,
                    "seconds": r.seconds,
                    "mb_per_s": mb / r.seconds if r.seconds else None,
                    "resources_per_s": resources / r.seconds if r.seconds else None,
                    "peak_rss_mb": r.peak_rss_mb,
                    "ratio_to_floor": r.seconds / floor["seconds"] if r.seconds else None,
                    "note": r.note,
                    "detail": r.detail,
                }
                for r in rows
            ],
            "notes": notes,
            "speedup_vs_fhir_resources": speedup,
            "end_to_end_over_floor": ratio,
            "evaluate_patients_per_s": per_s,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    print(f"speedup_vs_fhir_resources={speedup:.1f}" if speedup else "speedup_vs_fhir_resources=n/a")
    print(f"end_to_end_over_floor={ratio:.2f}" if ratio else "end_to_end_over_floor=n/a")
    print(f"evaluate_patients_per_s={per_s:.0f}" if per_s else "evaluate_patients_per_s=n/a")
    return 1 if failed or ratio is None else 0


if __name__ == "__main__":
    raise SystemExit(main())
