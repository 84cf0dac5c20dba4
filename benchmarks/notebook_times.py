"""Execute every notebook from scratch and record its wall time in NOTEBOOK_TIMES.md.

    python3 benchmarks/notebook_times.py              # all notebooks, 3 runs each, writes benchmarks/NOTEBOOK_TIMES.md
    python3 benchmarks/notebook_times.py --repeats 1  # one run each (the table says so)

Each notebook runs in a fresh kernel with the reader's settings (one torch
thread, seeded). The table gives the median [min–max] wall time of the runs
(wall time, because the budget is what a reader waits for), records the
machine, its load average before and after, the package versions and the
date, and flags notebooks whose median is over the 90 s budget. Run it inside the book's
environment (``.venv/bin/python benchmarks/notebook_times.py``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from execute_notebooks import execute  # noqa: E402

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


def versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per notebook; median [min–max] is reported")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "NOTEBOOK_TIMES.md")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    rows, total, load_start = [], 0.0, load_average()
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        runs = [execute(path) for _ in range(args.repeats)]
        seconds = statistics.median(runs)
        total += seconds
        status = "ok" if seconds <= BUDGET_PER_NOTEBOOK else f"**over {BUDGET_PER_NOTEBOOK:.0f} s**"
        spread = f" [{min(runs):.1f}–{max(runs):.1f}]" if len(runs) > 1 else " (one run)"
        rows.append(f"| `{path.relative_to(ROOT)}` | {seconds:.1f}{spread} | {status} |")
        print(f"{seconds:7.1f} s{spread}  {path.relative_to(ROOT)}", flush=True)

    book_status = "within" if total <= BUDGET_BOOK else "**over**"
    text = "\n".join(
        [
            "# Notebook execution times",
            "",
            f"Measured {datetime.date.today().isoformat()} by `benchmarks/notebook_times.py` "
            f"(median [min–max] of {args.repeats} run(s) per notebook, wall time, fresh kernel each, one torch thread).",
            "",
            f"- Machine: {machine_description()}",
            f"- Load average (1 / 5 / 15 min) before: {load_start}; after: {load_average()} (above the number of cores: "
            "the machine was shared and the times are inflated)",
            f"- Packages: {versions()}",
            "",
            "| notebook | wall time (s), median [min–max] | budget (90 s) |",
            "|---|---:|---|",
            *rows,
            f"| **total** (of the medians) | **{total:.1f}** | {book_status} the 600 s book budget |",
            "",
        ]
    )
    args.output.write_text(text)
    print(f"total {total:.1f} s; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
