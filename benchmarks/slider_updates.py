"""Time every update of every live ipywidgets panel of the book; write SLIDER_UPDATES.md.

    .venv/bin/python benchmarks/slider_updates.py              # 3 repeats, writes benchmarks/SLIDER_UPDATES.md
    .venv/bin/python benchmarks/slider_updates.py --repeats 5

What a reader waits for after moving a slider: the panel's function recomputes and draws its figure.
For each notebook with a panel (the same ones ``tests/test_live_sliders.py`` drives in JupyterLab),
a fresh kernel with the reader's settings (one torch thread, ``ml.setup``) runs the cells up to and
including the panel's cell (a panel depends only on the cells above it); then, for each control of the
panel, the benchmark sets the control to each of its other positions, one at a time from the panel's
starting values, exactly as the browser does: ``control.value = position`` makes ipywidgets call the
panel's function, which computes and shows its figure (matplotlib's inline backend draws it to PNG).
Each update is timed (wall clock and the kernel's CPU time) and every update is repeated ``--repeats``
times. The budget is 1 s of compute per update on a two-core machine, checked against the median CPU
time (wall time on a shared machine mostly measures the other processes); the table reports the
median, min and max of both per control, the machine and its load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

from notebook_times import load_average, machine_description, versions  # noqa: E402

__all__ = ["BUDGET", "panel_notebooks", "time_panels", "main"]

BUDGET = 1.0  # seconds of compute per panel update
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
BOOK_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}

# Runs in the kernel after the panel's cell: every ipywidgets `interactive` the cell made, each of its
# controls moved to each other position from the starting values, `repeats` times, timed.
PROBE = r"""
import json as _json, time as _time, resource as _resource
import ipywidgets as _w
from ipywidgets.widgets.widget import _instances as _all_widgets

def _cpu():
    usage = _resource.getrusage(_resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

def _positions(control):
    if hasattr(control, "_options_values"):  # SelectionSlider, ToggleButtons, ...
        return list(control._options_values)
    n = int(round((control.max - control.min) / control.step))  # FloatSlider, IntSlider
    return [control.min + i * control.step for i in range(n + 1)]

_panels = [w for w in list(_all_widgets.values()) if isinstance(w, _w.interactive)]
_results = []
for _panel in _panels:
    for _control in _panel.kwargs_widgets:
        _start = _control.value
        _others = [v for v in _positions(_control) if v != _start]
        _wall, _cpu_times = [], []
        for _ in range(REPEATS):
            for _value in _others:
                _t, _c = _time.perf_counter(), _cpu()
                _control.value = _value          # ipywidgets calls the panel's function, as a move in the browser
                _wall.append(_time.perf_counter() - _t)
                _cpu_times.append(_cpu() - _c)
                _control.value = _start          # back to the starting values (not timed)
        _results.append({"control": _control.description, "kind": type(_control).__name__,
                         "positions": len(_others), "wall": _wall, "cpu": _cpu_times})
print("SLIDER-TIMES " + _json.dumps(_results))
"""


def panel_notebooks() -> dict[Path, int]:
    """{notebook: index of its last panel cell}, from the stored outputs (as tests/test_live_sliders.py)."""
    found = {}
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        panels = [
            i
            for i, c in enumerate(cells)
            if c.cell_type == "code" and any(WIDGET_MIME in o.get("data", {}) for o in c.get("outputs", []))
        ]
        if panels:
            found[path] = max(panels)
    return found


def time_panels(path: Path, last_cell: int, repeats: int) -> list[dict]:
    """Run ``path`` up to ``last_cell`` in a fresh kernel, then the probe; return its records."""
    from nbclient import NotebookClient

    os.environ.update(BOOK_ENV)
    os.environ.pop("PLOTLY_RENDERER", None)
    nb = nbformat.read(path, as_version=4)
    nb.cells = nb.cells[: last_cell + 1] + [nbformat.v4.new_code_cell(PROBE.replace("REPEATS", str(repeats)))]
    client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    line = next(line for line in text.splitlines() if line.startswith("SLIDER-TIMES "))
    return json.loads(line.removeprefix("SLIDER-TIMES "))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="times each position is visited (>= 3)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "SLIDER_UPDATES.md")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    rows, worst, load_start = [], 0.0, load_average()
    for path, cell in panel_notebooks().items():
        records = time_panels(path, cell, args.repeats)
        if not records:
            raise RuntimeError(f"{path}: no ipywidgets.interactive found after cell {cell}")
        for record in records:
            wall, cpu = record["wall"], record["cpu"]
            median = statistics.median(cpu)  # the budget is compute: CPU time, which the machine's load hardly inflates
            worst = max(worst, median)
            status = "ok" if median <= BUDGET else f"**over {BUDGET:g} s**"
            rows.append(
                f"| `{path.relative_to(ROOT)}` | {record['control']} ({record['kind']}) | "
                f"{record['positions']} × {args.repeats} | {statistics.median(wall):.3f} "
                f"[{min(wall):.3f}–{max(wall):.3f}] | {median:.3f} [{min(cpu):.3f}–{max(cpu):.3f}] | {status} |"
            )
            print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# Live slider updates",
            "",
            f"Measured {datetime.date.today().isoformat()} by `benchmarks/slider_updates.py`: the time from setting a "
            "panel's control to a new position to its figure being drawn (the panel's function, run by ipywidgets, "
            "matplotlib's inline backend), in a fresh kernel with the reader's settings (one torch thread). Each control "
            f"is moved to each of its other positions from the panel's starting values, {args.repeats} times; "
            "median [min–max] over all those updates. CPU time is the kernel's (user + system, all threads); the "
            f"budget ({BUDGET:g} s of compute per update, on two cores) is checked against its median, because wall time "
            "on a shared machine mostly measures the other processes. "
            "On a quiet machine with one torch thread the two agree.",
            "",
            f"- Machine: {machine_description()}",
            f"- Load average (1 / 5 / 15 min) before: {load_start}; after: {load_average()} (above the number of cores: "
            "the machine was shared and wall times are inflated; CPU time is less affected)",
            f"- Packages: {versions()}",
            "",
            f"| notebook | control | positions × repeats | wall time (s) | CPU time (s) | budget ({BUDGET:g} s of CPU) |",
            "|---|---|---:|---:|---:|---|",
            *rows,
            "",
            f"Slowest median update: {worst:.3f} s of CPU time.",
            "",
        ]
    )
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
