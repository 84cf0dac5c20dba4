"""Execute every notebook from scratch and record its wall time in NOTEBOOK_TIMES.md.

    python3 benchmarks/notebook_times.py              # all notebooks, 3 runs each, writes benchmarks/NOTEBOOK_TIMES.md
    python3 benchmarks/notebook_times.py --repeats 1  # one run each (the table says so)
    python3 benchmarks/notebook_times.py --repeats 1 --parallel 2  # and then the whole book, 2 notebooks at a time

Each notebook runs in a fresh kernel with the reader's settings (one torch
thread, seeded). The table gives the median [min–max] wall time of the runs
(wall time, because the budget is what a reader waits for), records the
machine, its load average before and after, the package versions and the
date, and flags notebooks whose median is over the 90 s budget. With ``--parallel N`` it then
executes the whole book once more as ``python3 dev.py book`` does (N = 2 there: N notebooks at a
time, each in its own kernel with one torch thread), and records that run's wall time from the first
start to the last finish, which is what the 10-minute book budget on a 2-core machine is checked
against. The table's sum adds up the one-at-a-time runs (one after another). Run it inside the book's
environment (``.venv/bin/python benchmarks/notebook_times.py``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from execute_notebooks import book_notebooks, execute, execute_all  # noqa: E402

BUDGET_PER_NOTEBOOK = 90.0
BUDGET_BOOK = 600.0
PACKAGES = ["torch", "numpy", "scipy", "matplotlib", "jupyter-book", "nbclient"]


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, {platform.system()}"


def load_average() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _one_minute_load(text: str) -> float:
    try:
        return float(text.split(" / ")[0])
    except ValueError:
        return 0.0


def versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def whole_book_wall_time(paths: list[Path], jobs: int) -> float:
    """Execute every notebook as the book build does (``execute_all``: ``jobs`` at a time, each in its own kernel,
    into a jupyter-cache, here a temporary one); the wall time from the first start to the last finish."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        failed = execute_all(paths, jobs, book_cache=Path(folder) / "cache")
        seconds = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"notebooks failed: {failed}")
    return seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per notebook; median [min–max] is reported")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "NOTEBOOK_TIMES.md")
    parser.add_argument("--parallel", type=int, default=0, help="then run the whole book N notebooks at a time")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.parallel < 0:
        parser.error("--parallel must be >= 0")

    rows, total, load_start = [], 0.0, load_average()
    paths = book_notebooks()
    for path in paths:
        runs = [execute(path) for _ in range(args.repeats)]
        seconds = statistics.median(runs)
        total += seconds
        status = "ok" if seconds <= BUDGET_PER_NOTEBOOK else f"**over {BUDGET_PER_NOTEBOOK:.0f} s**"
        spread = f" [{min(runs):.1f}–{max(runs):.1f}]" if len(runs) > 1 else " (one run)"
        rows.append(f"| `{path.relative_to(ROOT)}` | {seconds:.1f}{spread} | {status} |")
        print(f"{seconds:7.1f} s{spread}  {path.relative_to(ROOT)}", flush=True)

    load_end = load_average()
    if args.parallel:
        wall = whole_book_wall_time(paths, args.parallel)
        wall_status = "within" if wall <= BUDGET_BOOK else "**over**"
        parallel = [
            f"Whole book, executed as `python3 dev.py book` executes it ({args.parallel} notebooks at a time, each in "
            f"its own kernel with one torch thread), measured after the table: **{wall:.1f} s** wall time from the "
            f"first start to the last finish, {wall_status} the 600 s book budget. The sum above adds up the "
            "one-at-a-time runs: the time they take one after another.",
            "",
        ]
    else:
        parallel = [
            "The book budget (600 s on 2 cores) is checked with `--parallel 2`, which this run did not use.",
            "",
        ]
    # the 1-minute load averages before and after: above the number of cores, other work shared the machine
    busy = max(_one_minute_load(load_start), _one_minute_load(load_end))
    load_note = (
        " (above the number of cores: the machine was shared and the times are inflated)"
        if busy > (os.cpu_count() or 1)
        else ""
    )
    text = "\n".join(
        [
            "# Notebook execution times",
            "",
            f"Measured {datetime.date.today().isoformat()} by `benchmarks/notebook_times.py` "
            f"(median [min–max] of {args.repeats} run(s) per notebook, wall time, fresh kernel each, one torch thread).",
            "",
            f"- Machine: {machine_description()}",
            f"- Load average (1 / 5 / 15 min) before: {load_start}; after: {load_end}{load_note}",
            f"- Packages: {versions()}",
            "",
            "| notebook | wall time (s), median [min–max] | budget (90 s) |",
            "|---|---:|---|",
            *rows,
            f"| **sum** (of the medians: one after another) | **{total:.1f}** | |",
            "",
            *parallel,
        ]
    )
    args.output.write_text(text)
    print(f"total {total:.1f} s; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
