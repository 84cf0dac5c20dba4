r"""Larger settings of each solver on the CPU and on a CUDA GPU: time per step and the speed-up.

    python3 benchmarks/gpu.py                        # on a machine with CUDA: writes GPU_RESULTS.md, updates RESULTS.md
    python3 benchmarks/gpu.py --dry-run --device cpu # tiny sizes on the CPU: checks the script, prints only
    python3 benchmarks/gpu.py --only committor_step  # selected workloads

Every workload runs the package's own solver, unchanged, once with ``device="cpu"``
(``--cpu-threads`` torch threads, default 2: the book's two-core reader) and once
with ``device="cuda"``. The time per step is the difference between an n-step and
a 1-step run divided by n − 1, so set-up costs (data transfer, initialisation)
drop out; a warm-up run comes first, and on CUDA the clock stops after
``torch.cuda.synchronize()``. Sizes are chosen so that one step is batched work
that a GPU can fill (the project's target is ≥ 30× on an H200 against two CPU
cores); one workload, the plateau sweep, is kept at the book's small size on
purpose, to show what a GPU does not speed up. After the table, GPU-only runs use
the speed for science: the committor in d = 50, a plateau sweep of 1792 runs up
to 30 000 steps, and weak-error slopes from 2^24 SGD paths.

One prepared command for the device machine (its image has python3 with torch+CUDA,
torchdiffeq, numpy, scipy and pytest, and no package registry, so nothing is
installed and requirements.txt is not used; the package runs from the checkout
through PYTHONPATH; test files that import plotly, ipywidgets or selenium fail to
collect there and are skipped by --continue-on-collection-errors). About 3–5
minutes; pass it with timeout_s=600:

    export PYTHONPATH=$PWD PYTHONUNBUFFERED=1; set -o pipefail; nvidia-smi -L; \
    python3 -m pytest -q -p no:cacheprovider --continue-on-collection-errors -k cuda tests/ 2>&1 | tee $OUT/gpu_tests.log; \
    python3 benchmarks/gpu.py 2>&1 | tee $OUT/gpu_bench.log; cp benchmarks/GPU_RESULTS.md benchmarks/RESULTS.md $OUT/

Status: written and checked on a CPU (``--dry-run --device cpu``); not yet run on a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import machine_description, replace_gpu_section, versions  # noqa: E402

TARGET_SPEEDUP = 30.0
NO_CUDA_MESSAGE = (
    "benchmarks/gpu.py: CUDA is not available on this machine (torch {version}, "
    "torch.cuda.is_available() is False).\n"
    "It compares CPU and GPU time, so it needs an NVIDIA GPU. To check the script on a CPU, run\n"
    "    python3 benchmarks/gpu.py --dry-run --device cpu"
)


@dataclass
class Workload:
    """A solver at a large setting: ``build(device, dry)`` returns ``(setting, run)``; ``run(n)`` takes n steps."""

    name: str
    solver: str
    build: Callable[[torch.device, bool], tuple[str, Callable[[int], object]]]
    max_steps: int = 400  # GPU side; bounded by memory where a run keeps its graph


WORKLOADS: dict[str, Workload] = {}


def workload(name: str, solver: str, max_steps: int = 400):
    def register(build):
        WORKLOADS[name] = Workload(name, solver, build, max_steps)
        return build

    return register


# ----------------------------------------------------------------------------------------------------
# The workloads (each uses only the public API of its module)
# ----------------------------------------------------------------------------------------------------


def _tanh_field(device, dry, batch):
    from mldyn_lite.flows import SmoothTanhField

    dim, width = (2, 16) if dry else (8, 256)
    field = SmoothTanhField(dim=dim, width=width, T=1.0, seed=0, dtype=torch.float32, device=device)
    x0 = torch.randn(batch, dim, generator=torch.Generator().manual_seed(0)).to(device)
    return field, x0, f"SmoothTanhField d = {dim}, width {width}, batch {batch}, float32"


@workload("flows_forward", "flows.rk4_flow (forward)")
def _flows_forward(device, dry):
    from mldyn_lite.flows import rk4_flow

    field, x0, setting = _tanh_field(device, dry, 256 if dry else 2**15)

    def run(n):
        with torch.no_grad():
            return rk4_flow(field, x0, 1.0, n)

    return setting + "; per RK4 step", run


@workload("flows_backward", "flows.rk4_flow (forward+backward)", max_steps=16)
def _flows_backward(device, dry):
    from mldyn_lite.flows import rk4_flow

    field, x0, setting = _tanh_field(device, dry, 256 if dry else 2**13)

    def run(n):
        field.zero_grad()
        rk4_flow(field, x0, 1.0, n).pow(2).sum().backward()

    return setting + "; per RK4 step, backward through the whole path", run


@workload("committor_step", "committor.fit_committor")
def _committor(device, dry):
    from mldyn_lite import committor as cm

    dim, batch, width = (10, 256, 16) if dry else (100, 8192, 256)
    sampler = cm.BoltzmannSampler(cm.mueller_brown, kT=10.0, dim=dim, device=device)

    def run(n):
        return cm.fit_committor(sampler, seed=0, steps=n, batch=batch, boundary_batch=batch // 8, width=width, depth=3)

    return f"Mueller–Brown in d = {dim}, batch {batch} (+2×{batch // 8} in A, B), 3×{width} tanh; per Adam step", run


_LORENZ = {}


def _lorenz_data(dry):
    from mldyn_lite.onsager import lorenz63_data

    if dry not in _LORENZ:
        trajectories, snapshots = (20, 50) if dry else (2000, 200)
        _, states, derivatives = lorenz63_data(n_trajectories=trajectories, t_final=3.0, n_snapshots=snapshots, seed=0)
        _LORENZ[dry] = (states / 10.0, derivatives / 10.0, trajectories * snapshots)
    return _LORENZ[dry]


@workload("onsager_train", "onsager.train_vector_field (OnsagerNet)")
def _onsager_train(device, dry):
    from mldyn_lite.onsager import OnsagerNet, train_vector_field

    states, derivatives, points = _lorenz_data(dry)
    hidden, batch = (16, 256) if dry else (128, 32768)
    torch.manual_seed(0)
    model = OnsagerNet(3, width=hidden)

    def run(n):
        return train_vector_field(
            model, states, derivatives, steps=n, batch_size=batch, eval_every=10**6, seed=0, device=device
        )

    return f"Lorenz '63, {points} points, OnsagerNet hidden {hidden}, batch {batch}; per AdamW step", run


@workload("onsager_integrate", "onsager.rollout (OnsagerNet, RK4)")
def _onsager_integrate(device, dry):
    from mldyn_lite.onsager import OnsagerNet, rollout

    hidden, batch = (16, 256) if dry else (128, 2**15)
    torch.manual_seed(0)
    model = OnsagerNet(3, width=hidden).to(device)
    h0 = (2 * torch.randn(batch, 3, generator=torch.Generator().manual_seed(1))).to(device)
    dt = 0.01

    def run(n):
        return rollout(model, h0, n * dt, dt=dt, save_every=10**9).path

    return f"OnsagerNet hidden {hidden}, {batch} trajectories; per RK4 step", run


@workload("sme_weak2", "sme.sde_paths (weak order 2)")
def _sme_weak2(device, dry):
    from mldyn_lite import sme

    problem = sme.toy_problem("logcosh")
    lr, dt = 0.25, 2.0 / 64
    paths = 4096 if dry else 2**20
    x0 = torch.tensor([2.0], dtype=torch.float64)

    def run(n):
        return sme.sde_paths(
            problem.sme_drift(lr, 2),
            problem.sme_diffusion(lr),
            x0,
            n * dt,
            n,
            n_paths=paths,
            scheme="weak2",
            seed=0,
            device=device,
        )

    return f"SME2 of the log-cosh loss, {paths} paths, float64; per step", run


@workload("sme_sgd_least_squares", "sme.sgd_paths (least-squares minibatches)")
def _sme_sgd(device, dry):
    from mldyn_lite import sme

    n, d, batch, paths = (256, 8, 8, 512) if dry else (8192, 64, 64, 2**13)
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=generator)
    y = X @ torch.randn(d, generator=generator) + 0.1 * torch.randn(n, generator=generator)
    oracle = sme.least_squares_oracle(X, y, batch)

    def run(steps):
        return sme.sgd_paths(oracle, torch.zeros(d), 0.01, steps, n_paths=paths, seed=0, device=device)

    return f"least squares n = {n}, d = {d}, minibatch {batch}, {paths} SGD paths, float32; per step", run


@workload("plateau_closed_form", "rnn.train_diagonal_rnn (closed-form risk)")
def _plateau_big(device, dry):
    from mldyn_lite.rnn import train_diagonal_rnn

    memories = list(np.linspace(2.0, 5.75, 4 if dry else 16))
    seeds, m = (range(8), 8) if dry else (range(256), 64)

    def run(n):
        return train_diagonal_rnn(memories, seeds=seeds, m=m, steps=n, device=device)

    return f"{len(memories) * len(seeds)} runs at once (memories × seeds), m = {m}, float64; per Adam step", run


@workload("plateau_sweep_small", "rnn.train_diagonal_rnn (book-sized sweep)")
def _plateau_small(device, dry):
    from mldyn_lite.rnn import train_diagonal_rnn

    memories, seeds = _SWEEP_MEMORIES, range(8 if dry else _SWEEP_SEEDS)

    def run(n):
        return train_diagonal_rnn(memories, seeds=seeds, m=16, steps=n, device=device)

    return (
        f"{len(memories) * len(seeds)} runs, m = 16 (the GPU-only sweep below); per Adam step — "
        "small tensors, launch-bound on a GPU",
        run,
    )


@workload("plateau_sampled", "rnn.train_tanh_rnn (sampled sequences)")
def _plateau_sampled(device, dry):
    from mldyn_lite.rnn import train_tanh_rnn

    hidden, batch, length = (8, 16, 20) if dry else (128, 1024, 100)

    def run(n):
        return train_tanh_rnn(3.0, width=hidden, steps=n, batch_size=batch, length=length, seed=0, device=device)

    return f"tanh RNN, {hidden} hidden, batch {batch} × length {length}, float32; per Adam step", run


_SWEEP_MEMORIES = [2.0 + 0.25 * k for k in range(14)]  # 2.0 … 5.25
_SWEEP_SEEDS = 128


# ----------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Wall time of ``fn()`` (after synchronising the GPU) and its result."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def _clock(fn: Callable[[], object], device: torch.device) -> float:
    return _timed(fn, device)[0]


def seconds_per_step(
    run: Callable[[int], object], device: torch.device, target_seconds: float, max_steps: int
) -> tuple[float, int]:
    """Time per step from a 1-step and an n-step run (set-up cancels); n is chosen to take about ``target_seconds``."""
    run(2 if device.type == "cuda" else 1)  # warm-up: first autograd calls; CUDA context, cuBLAS/cuDNN handles
    one = _clock(lambda: run(1), device)
    n, total = 2, None
    if one < target_seconds / 2 and max_steps > 4:
        n, total = 4, _clock(lambda: run(4), device)
        estimate = max((total - one) / 3, 1e-6)
        if target_seconds / estimate > 4:
            n, total = int(min(max_steps, target_seconds / estimate)), None
    if total is None:
        total = _clock(lambda: run(n), device)
    per_step = (total - one) / (n - 1)
    return (per_step if per_step > 0 else total / n), n


def _with_threads(threads: int, fn: Callable[[], object]):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------------------
# GPU-only runs: what the speed buys
# ----------------------------------------------------------------------------------------------------


def committor_high_dimension(device: torch.device, dry: bool) -> tuple[str, float, str]:
    from mldyn_lite import committor as cm

    dim, steps, batch = (6, 20, 256) if dry else (50, 1500, 4096)
    reference = cm.solve_committor_fv(cm.mueller_brown, 10.0, 135)
    sampler = cm.BoltzmannSampler(cm.mueller_brown, kT=10.0, dim=dim, device=device)
    seconds, fit = _timed(
        lambda: cm.fit_committor(sampler, seed=0, steps=steps, batch=batch, boundary_batch=batch // 5), device
    )
    errors = cm.committor_errors(fit.net, reference, dim=dim, seed=1)
    return (
        f"committor NN in d = {dim}: {steps} Adam steps, batch {batch}",
        seconds,
        f"relative L2 error against the 2-D FD committor (135×135): {errors['low_energy']:.3g} (low-energy), "
        f"{errors['transition']:.3g} (transition)",
    )


def plateau_sweep(device: torch.device, dry: bool) -> tuple[str, float, str]:
    from mldyn_lite.rnn import escape_iterations, train_diagonal_rnn

    memories, seeds, steps = (_SWEEP_MEMORIES[:3], range(4), 300) if dry else (_SWEEP_MEMORIES, range(_SWEEP_SEEDS), 30000)
    seconds, runs = _timed(
        lambda: train_diagonal_rnn(memories, seeds=seeds, m=16, steps=steps, stop_when_escaped=True, device=device), device
    )
    escape = escape_iterations(runs.losses, memories)[:, 0]
    escaped = np.isfinite(escape).mean(axis=1)
    median = np.median(np.where(np.isfinite(escape), escape, np.inf), axis=1)  # inf when half never escape
    listing = ", ".join(f"{t:g}: {int(v) if np.isfinite(v) else f'> {steps}'}" for t, v in zip(memories, median))
    finite = np.isfinite(median)
    rate = np.polyfit(np.array(memories)[finite], np.log(median[finite]), 1)[0] if finite.sum() >= 2 else float("nan")
    return (
        f"plateau sweep: diagonal RNN m = 16, Adam lr 0.01, {len(memories)} memories × {len(seeds)} seeds, "
        f"at most {steps} steps",
        seconds,
        f"median escape step by memory t0 — {listing}; fitted exp({rate:.2f} t0); "
        f"fraction escaped at the largest memory {escaped[-1]:.2f}",
    )


def sme_slopes(device: torch.device, dry: bool) -> tuple[str, float, str]:
    from mldyn_lite import sme

    problem = sme.toy_problem("logcosh")
    T, paths = 2.0, (2**12 if dry else 2**24)
    lrs = 2.0 ** -np.arange(1, 4 if dry else 7)
    x0 = torch.tensor([2.0], dtype=torch.float64)
    means, errors = [], []
    start = time.perf_counter()
    for i, lr in enumerate(lrs):
        final = sme.sgd_paths(problem.stochastic_gradient, x0, lr, round(T / lr), n_paths=paths, seed=10 + i, device=device)
        mean, error = sme.monte_carlo_mean((final[:, 0] ** 2).cpu().numpy())
        means.append(mean)
        errors.append(error)
    seconds = time.perf_counter() - start
    means, errors = np.array(means), np.array(errors)
    parts = []
    for order in (1, 2):
        exact = np.array(
            [
                sme.sde_expectation_1d(
                    problem.sme_drift(lr, order),
                    problem.sme_diffusion(lr),
                    lambda x: x**2,
                    2.0,
                    T,
                    domain=(-6.0, 8.0),
                    n_grid=1401,
                    time_steps=200,
                )
                for lr in lrs
            ]
        )
        gap = np.abs(means - exact)
        resolved = gap > 3 * errors
        slope = sme.weak_error_slope(lrs[resolved], gap[resolved]) if resolved.sum() >= 2 else float("nan")
        parts.append(f"SME{order} {slope:.2f} ({int(resolved.sum())} of {len(lrs)} points above 3 s.e.)")
    return (
        f"SME weak-error slopes: log-cosh loss, η = 1/2 … 1/{round(1 / lrs[-1])}, {paths} SGD paths each",
        seconds,
        ", ".join(parts) + f" (theory 1 and 2); standard error at η = 1/2: {errors[0]:.1g}; "
        "time = GPU simulation only (the Kolmogorov reference runs on the CPU)",
    )


GPU_ONLY = {"committor_d50": committor_high_dimension, "plateau_sweep": plateau_sweep, "sme_slopes": sme_slopes}


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------


def _threads(n: int) -> str:
    return f"{n} torch thread{'' if n == 1 else 's'}"


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (
            f"{torch.cuda.get_device_name(device)} ({props.multi_processor_count} SMs, "
            f"{props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
        )
    return f"CPU with {_threads(torch.get_num_threads())} (a check of the script, not a GPU)"


def render(rows: list[dict], extra: list[dict], device: torch.device, cpu_threads: int, dry: bool) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU check)"
    lines = [
        f"## GPU: {name}",
        "",
        f"Written {datetime.date.today().isoformat()} by `benchmarks/gpu.py`"
        + (" — **dry run at tiny sizes: a check of the script, not results**" if dry else "")
        + ".",
        "",
        f"- Accelerator: {device_description(device)}",
        f"- CPU side: {_threads(cpu_threads)} on {machine_description()}",
        f"- Packages: {versions()}; Python {platform.python_version()}",
        "- Time per step: (n-step run − 1-step run) / (n − 1), after a warm-up run; torch's default float32 "
        "precision settings.",
        "",
        f"| solver | setting | CPU, {_threads(cpu_threads)} (s/step) | {device.type.upper()} (s/step) | speed-up | "
        f"≥ {TARGET_SPEEDUP:g}× |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['solver']} | {r['setting']} | — | — | — | failed: {r['error']} |")
            continue
        speedup = r["cpu"] / r["gpu"]
        verdict = "yes" if speedup >= TARGET_SPEEDUP else "**no**"
        lines.append(
            f"| {r['solver']} | {r['setting']} | {r['cpu']:.3g} (n = {r['cpu_n']}) | "
            f"{r['gpu']:.3g} (n = {r['gpu_n']}) | {speedup:.1f}× | {verdict} |"
        )
    if extra:
        lines += ["", f"### Runs on the {device.type.upper()} only", "", "| run | time (s) | result |", "|---|---:|---|"]
        for r in extra:
            if "error" in r:
                lines.append(f"| {r['name']} | — | failed: {r['error']} |")
            else:
                lines.append(f"| {r['setting']} | {r['seconds']:.3g} | {r['result']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--device",
        default="cuda",
        help="the accelerated side: cuda (default), or cpu to check the "
        "script (both sides then run on the CPU with --cpu-threads)",
    )
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes; prints, writes only where told")
    parser.add_argument("--only", nargs="*", choices=sorted([*WORKLOADS, *GPU_ONLY]), default=None)
    parser.add_argument("--cpu-threads", type=int, default=2)
    parser.add_argument("--cpu-seconds", type=float, default=4.0, help="about how long each CPU measurement runs")
    parser.add_argument("--gpu-seconds", type=float, default=1.0, help="about how long each GPU measurement runs")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="RESULTS.md to update (default: benchmarks/RESULTS.md; none with --dry-run)",
    )
    parser.add_argument(
        "--section",
        type=Path,
        default=None,
        help="file for the GPU section alone (default: benchmarks/GPU_RESULTS.md; none with --dry-run)",
    )
    args = parser.parse_args(argv)
    if args.cpu_threads < 1:
        parser.error("--cpu-threads must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE.format(version=torch.__version__), file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    try:
        return _run(args, torch.device(args.device))
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, device: torch.device) -> int:
    if device.type == "cpu":  # a check of the script: both sides on the CPU, with the same threads
        torch.set_num_threads(args.cpu_threads)
    dry = args.dry_run
    results_path = args.results if args.results or dry else ROOT / "benchmarks" / "RESULTS.md"
    section_path = args.section if args.section or dry else ROOT / "benchmarks" / "GPU_RESULTS.md"
    selected = args.only if args.only is not None else [*WORKLOADS, *GPU_ONLY]
    cpu = torch.device("cpu")
    started = time.perf_counter()

    rows = []
    for name in [n for n in selected if n in WORKLOADS]:
        item = WORKLOADS[name]
        print(f"[{time.perf_counter() - started:6.1f} s] {name} …", flush=True)
        try:
            setting, run_cpu = _with_threads(args.cpu_threads, lambda: item.build(cpu, dry))
            cpu_time, cpu_n = _with_threads(args.cpu_threads, lambda: seconds_per_step(run_cpu, cpu, args.cpu_seconds, 8))
            _, run_gpu = item.build(device, dry)
            gpu_time, gpu_n = seconds_per_step(run_gpu, device, args.gpu_seconds, item.max_steps)
            rows.append(
                {"solver": item.solver, "setting": setting, "cpu": cpu_time, "cpu_n": cpu_n, "gpu": gpu_time, "gpu_n": gpu_n}
            )
            print(
                f"    CPU {cpu_time:.3g} s/step, {device.type} {gpu_time:.3g} s/step: {cpu_time / gpu_time:.1f}×", flush=True
            )
        except Exception as exc:  # keep the other rows; the table says what failed
            traceback.print_exc()
            rows.append({"solver": item.solver, "setting": name, "error": f"{type(exc).__name__}: {exc}"[:200]})
        if device.type == "cuda":
            torch.cuda.empty_cache()

    extra = []
    for name in [n for n in selected if n in GPU_ONLY]:
        print(f"[{time.perf_counter() - started:6.1f} s] {name} (GPU only) …", flush=True)
        try:
            setting, seconds, result = GPU_ONLY[name](device, dry)
            extra.append({"setting": setting, "seconds": seconds, "result": result})
            print(f"    {seconds:.3g} s: {result}", flush=True)
        except Exception as exc:
            traceback.print_exc()
            extra.append({"name": name, "error": f"{type(exc).__name__}: {exc}"[:200]})

    section = render(rows, extra, device, args.cpu_threads, dry)
    print()
    print(section)
    if section_path is not None:
        section_path.write_text(section)
    if results_path is not None:
        previous = results_path.read_text() if results_path.exists() else "# Benchmark results\n"
        results_path.write_text(replace_gpu_section(previous, section))
    print(f"total {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
