"""Benchmarks against reference implementations; writes benchmarks/RESULTS.md.

    python3 benchmarks/run.py                 # every row
    python3 benchmarks/run.py --rows flows    # selected rows
    python3 benchmarks/run.py --device cuda   # run the solver rows on a GPU

Each row compares an mldyn_lite solver with a reference in the same run and
says plainly which is faster and by how much. Times are medians over
``--repeats`` runs (after one warm-up). Nothing here is asserted by the tests:
speed is measured, not tested.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.notebook_times import machine_description  # noqa: E402

ROWS: dict[str, Callable] = {}


def row(name: str):
    def register(fn):
        ROWS[name] = fn
        return fn

    return register


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(ours: float, reference: float) -> str:
    """Plain words: 'mldyn_lite 1.8× faster' or '… slower'."""
    if ours <= reference:
        return f"mldyn_lite {reference / ours:.2f}× faster"
    return f"mldyn_lite {ours / reference:.2f}× slower"


@row("flows")
def flows_row(device: torch.device, repeats: int) -> list[dict]:
    """Fixed-step RK4 flow: mldyn_lite.flows.rk4_flow vs torchdiffeq.odeint(method='rk4'), same steps."""
    from torchdiffeq import odeint

    from mldyn_lite.flows import SmoothTanhField, rk4_flow

    results = []
    for batch, width, steps in ((256, 32, 50), (4096, 64, 100)):
        field = SmoothTanhField(dim=2, width=width, T=1.0, seed=0, dtype=torch.float64, device=device)
        x0 = torch.randn(batch, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(device)
        grid = torch.linspace(0, 1, steps + 1, dtype=torch.float64, device=device)

        def ours():
            return rk4_flow(field, x0, 1.0, steps)

        def reference():
            return odeint(lambda t, x: field(float(t), x), x0, grid, method="rk4")[-1]

        def backward(fn):
            def run():
                field.zero_grad()
                fn().pow(2).sum().backward()

            return run

        difference = (ours() - reference()).abs().max().item()
        t_ours, t_ref = median_time(ours, repeats, device), median_time(reference, repeats, device)
        b_ours, b_ref = median_time(backward(ours), repeats, device), median_time(backward(reference), repeats, device)
        setting = f"batch {batch}, width {width}, {steps} steps, float64"
        results.append({"row": "Flows: RK4 forward", "setting": setting, "mldyn_lite": t_ours, "reference": t_ref,
                        "reference_name": "torchdiffeq odeint rk4", "verdict": compare(t_ours, t_ref),
                        "note": f"max abs difference {difference:.1e}"})
        results.append({"row": "Flows: RK4 forward+backward", "setting": setting, "mldyn_lite": b_ours,
                        "reference": b_ref, "reference_name": "torchdiffeq odeint rk4", "verdict": compare(b_ours, b_ref),
                        "note": ""})
    return results


def versions() -> str:
    names = ["mldyn_lite", "torch", "torchdiffeq", "numpy", "scipy"]
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def render(results: list[dict], device: torch.device, repeats: int) -> str:
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    lines = [
        "# Benchmark results",
        "",
        f"Written {datetime.date.today().isoformat()} by `benchmarks/run.py` — median of {repeats} runs after a warm-up.",
        "",
        f"- Machine: {machine_description()}",
        f"- Device: {device.type}{gpu}; torch threads: {torch.get_num_threads()}",
        f"- Packages: {versions()}; Python {platform.python_version()}",
        "",
        "| row | setting | mldyn_lite (s) | reference | reference (s) | verdict | note |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['row']} | {r['setting']} | {r['mldyn_lite']:.4g} | {r['reference_name']} | "
                     f"{r['reference']:.4g} | {r['verdict']} | {r['note']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", choices=sorted(ROWS), default=sorted(ROWS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    for name in args.rows:
        print(f"running {name} …", flush=True)
        results.extend(ROWS[name](device, args.repeats))
    args.output.write_text(render(results, device, args.repeats))
    print(args.output.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
