"""Report benchmark: report.html at hospital size, its bytes and how long Chromium takes to show it.

    python bench/report.py --patients 20000 [--seed 42] [--runs 3] [--chromium /usr/bin/chromium]

Runs `cohort-finder run` on the benchmark data (bench/generate.py, cached under bench/.data/),
then opens OUT/report.html in headless Chromium (Debian's, through Playwright) `--runs` times,
each in a fresh browser, and prints:

- the size of report.html (budget: 25 MB) and of candidates.json beside it;
- load: from navigation start to the load event (HTML parsed, inline CSS and script run);
- render: from navigation start to the second animation frame after load, when the first
  screen has been laid out and painted (budget: 3 s);
- baseline: the same measure for a page of the same bytes as plain text (<pre>), in the same
  run: what parsing that many bytes costs Chromium before any layout of ours, so the ratio
  render/baseline says what our markup adds.

Median of the runs. A script, not a timed test: the numbers go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import html
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

sys.path.insert(0, str(REPO))

from generate import REFERENCE_DATE, ensure_data  # noqa: E402

from tests.chromium import FLAGS  # noqa: E402  (the browser tests' flags: one set for a closed network)

# navigation start -> the second frame after load: the first screen is laid out and painted
_RENDERED = """() => new Promise(done => {
  const finish = () => requestAnimationFrame(() => requestAnimationFrame(() => done({
    load: performance.getEntriesByType('navigation')[0].loadEventEnd,
    render: performance.now(),
  })));
  if (document.readyState === 'complete') finish(); else addEventListener('load', finish);
})"""


def measure(url: str, chromium: str, runs: int) -> tuple[float, float]:
    from playwright.sync_api import sync_playwright

    loads, renders = [], []
    with sync_playwright() as p:
        for _ in range(runs):
            browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url, wait_until="commit", timeout=120_000)
            times = page.evaluate(_RENDERED)
            loads.append(times["load"] / 1000)
            renders.append(times["render"] / 1000)
            browser.close()
    return statistics.median(loads), statistics.median(renders)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=None, help="keep the run's outputs here")
    args = parser.parse_args()
    data, _, _ = ensure_data(args.patients, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "out"
        done = subprocess.run(
            [sys.executable, "-m", "cohort_finder", "run", "--criteria", str(REPO / "criteria" / "nct07183761.yaml"),
             "--source", str(data), "--out", str(out), "--as-of", str(REFERENCE_DATE)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode not in (0, 1):
            sys.exit(f"cohort-finder run failed ({done.returncode}):\n{done.stderr[-2000:]}")
        report = out / "report.html"
        size = report.stat().st_size
        json_size = (out / "candidates.json").stat().st_size
        plain = Path(tmp) / "plain.html"
        text = report.read_text(encoding="utf-8")
        plain.write_text("<!DOCTYPE html><meta charset=utf-8><pre>" + html.escape(text)[: len(text)] + "</pre>")
        load, render = measure(report.as_uri(), args.chromium, args.runs)
        _, baseline = measure(plain.as_uri(), args.chromium, args.runs)
    summary = done.stderr.strip().splitlines()
    counts = next((line for line in summary if "patients" in line and "candidate" in line), "")
    print(f"patients={args.patients} ({counts.split(': ', 1)[-1] if counts else 'see the log'})")
    print(f"report_html_mb={size / 1e6:.1f} (budget 25)")
    print(f"candidates_json_mb={json_size / 1e6:.1f}")
    print(f"load_s={load:.2f}")
    print(f"render_s={render:.2f} (budget 3)")
    print(f"plain_text_same_bytes_render_s={baseline:.2f}")
    print(f"render_over_plain_text={render / baseline:.2f}")


if __name__ == "__main__":
    main()
