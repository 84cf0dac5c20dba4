"""Do the defaults of ``fit_committor`` reach the accuracy pages 4.3 and 4.4 promise? Writes COMMITTOR_DEFAULTS.md.

    python3 benchmarks/committor_defaults.py             # d = 2 and d = 10, seeds 0, 1, 2 (a few minutes of CPU)
    python3 benchmarks/committor_defaults.py --dims 2    # one setting
    python3 benchmarks/committor_defaults.py --seeds 0   # one seed (prints only unless --write)

For each setting (dimension d, all other options at their defaults, the reader's settings of the
pages) the network committor of Mueller–Brown at kT = 10 is trained once per seed and compared
with the finite-volume reference (135 × 135 cells; in d = 10 the exact committor equals the 2-D
one, see page 4.4). The FINAL (returned) model is measured, never the best one seen during
training. Reported: the median, min and max over the seeds of the relative L2 errors in the
low-energy region (V − V_min < 130) and the transition region (0.3 < q < 0.7), and of the
process CPU time of the training (``time.process_time``, one torch thread), which is not inflated
by other processes the way wall-clock time is. Targets (issue 19): median ≤ 0.5 % / 0.5 % in
d = 2 and ≤ 1 % / 2 % in d = 10, within 60 s of one core.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mldyn_lite import committor as cm  # noqa: E402

#: First line of COMMITTOR_DEFAULTS.md; tests compare it with this script's version.
SCHEMA = "committor-defaults/1"
OUTPUT = Path(__file__).with_name("COMMITTOR_DEFAULTS.md")
KT = 10.0
#: Targets (low-energy, transition) per dimension, and the CPU budget in seconds.
TARGETS = {2: (0.005, 0.005), 10: (0.01, 0.02)}
CPU_BUDGET = 60.0


def one_run(dim: int, seed: int) -> dict:
    """Train with the defaults and measure the final model (runs in a worker process: one torch thread)."""
    torch.set_num_threads(1)
    reference = cm.solve_committor_fv(cm.mueller_brown, KT, 135)
    sampler = cm.BoltzmannSampler(cm.mueller_brown, kT=KT, dim=dim, device="cpu")
    fit = cm.fit_committor(sampler, seed=seed)
    errors = cm.committor_errors(fit.net, reference, dim=dim, seed=1)
    print(f"d = {dim:2d}, seed {seed}: low-energy {errors['low_energy']:.4f}, transition {errors['transition']:.4f}, "
          f"CPU {fit.cpu_seconds:.1f} s", flush=True)
    return {"dim": dim, "seed": seed, "low_energy": errors["low_energy"], "transition": errors["transition"],
            "cpu": fit.cpu_seconds}


def run_all(dims: list[int], seeds: list[int], jobs: int) -> list[dict]:
    """One result per dimension; the runs go to ``jobs`` worker processes (CPU time is measured per run)."""
    tasks = [(dim, seed) for dim in dims for seed in seeds]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            runs = list(pool.map(one_run, *zip(*tasks)))
    else:
        runs = [one_run(dim, seed) for dim, seed in tasks]
    return [{"dim": dim, "runs": [r for r in runs if r["dim"] == dim], "options": cm.CommittorOptions()}
            for dim in dims]


def spread(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    med, low, high = statistics.median(values), min(values), max(values)
    return f"{med * scale:.{digits}g} ({low * scale:.{digits}g}–{high * scale:.{digits}g})"


def render(results: list[dict], seeds: list[int]) -> str:
    options = results[0]["options"]
    lines = [
        f"<!-- schema: {SCHEMA} -->",
        "# Committor: accuracy of the defaults",
        "",
        f"Written {datetime.date.today().isoformat()} by `benchmarks/committor_defaults.py` (schema `{SCHEMA}`). "
        f"Mueller–Brown at kT = {KT:g}, `fit_committor` with its defaults (`CommittorOptions()`: "
        f"{options.steps} steps, batch {options.batch_size}, learning rate {options.lr:g} → {options.final_lr:g}, "
        f"uniform weight average over the last {1 - options.average_from:.0%} of the steps), "
        f"seeds {', '.join(str(s) for s in seeds)}. Errors of the final model: relative L2 against the finite-volume "
        "committor (135 × 135), in %; median (min–max) over the seeds. CPU: process CPU time of the training "
        "(one torch thread), median (min–max).",
        "",
        f"- Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"torch {metadata.version('torch')}",
        "",
        "| d | low-energy error (%) | transition error (%) | target (%) | CPU (s) | budget (s) | verdict |",
        "|---:|---|---|---|---|---:|---|",
    ]
    for result in results:
        runs, dim = result["runs"], result["dim"]
        low = [r["low_energy"] for r in runs]
        band = [r["transition"] for r in runs]
        cpu = [r["cpu"] for r in runs]
        target_low, target_band = TARGETS.get(dim, (float("nan"), float("nan")))
        met = (statistics.median(low) <= target_low and statistics.median(band) <= target_band
               and statistics.median(cpu) <= CPU_BUDGET)
        target = f"≤ {target_low * 100:g} / ≤ {target_band * 100:g}"
        lines.append(f"| {dim} | {spread(low, 100)} | {spread(band, 100)} | {target} "
                     f"| {spread(cpu, 1.0)} | {CPU_BUDGET:g} | {'met' if met else 'NOT met'} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (each run is timed in CPU time)")
    parser.add_argument("--write", action="store_true", help="write COMMITTOR_DEFAULTS.md even for a partial run")
    args = parser.parse_args(argv)
    results = run_all(args.dims, args.seeds, args.jobs)
    text = render(results, args.seeds)
    print(text)
    if args.write or (args.dims == [2, 10] and args.seeds == [0, 1, 2]):
        OUTPUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
