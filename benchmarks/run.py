"""Benchmarks against reference implementations; writes benchmarks/RESULTS.md.

    python3 benchmarks/run.py                       # every row (about 2-3 minutes of CPU, one torch thread)
    python3 benchmarks/run.py --rows flows sme      # selected rows
    python3 benchmarks/run.py --device cuda         # run the solver rows on a GPU
    python3 benchmarks/run.py --quick               # tiny sizes, to check that every row runs (prints only)

Each row compares an mldyn_lite solver with a reference in the same run — a
well-kept library (torchdiffeq, numpy), a reference solver (finite volumes,
scipy's DOP853, a backward-Kolmogorov solver, exact moments) or the
unstructured baseline model — and says plainly which is faster and by how much,
or how accurate the learned answer is against the reference and how long each
took. Short operations are timed as the median of ``--repeats`` runs after one
warm-up; training runs, too long to repeat, are timed once (the note says so).
Nothing here is asserted by the tests: speed is measured, not tested.

The GPU section of RESULTS.md is written by ``benchmarks/gpu.py``; this script
keeps it when it rewrites the file.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.notebook_times import machine_description  # noqa: E402

ROWS: dict[str, Callable] = {}

#: RESULTS.md keeps the section that benchmarks/gpu.py writes between these two lines.
GPU_SECTION_START = "<!-- benchmarks/gpu.py: start -->"
GPU_SECTION_END = "<!-- benchmarks/gpu.py: end -->"
GPU_SECTION_PLACEHOLDER = (
    "## GPU\n\n"
    "`benchmarks/gpu.py` (larger settings of each solver, CPU against GPU time) has not run on a GPU yet.\n"
)


def row(name: str):
    """Register ``fn(device, repeats, quick=False) -> list[dict]`` as the benchmark row ``name``."""

    def register(fn):
        ROWS[name] = fn
        return fn

    return register


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, object]:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run, and the last result."""
    result = fn()
    times = []
    for _ in range(max(repeats, 1)):
        _synchronize(device)
        start = time.perf_counter()
        result = fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    return measure(fn, repeats, device)[0]


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Wall time of a single run of ``fn()`` (for training runs, too long to repeat) and its result."""
    _synchronize(device)
    start = time.perf_counter()
    result = fn()
    _synchronize(device)
    return time.perf_counter() - start, result


def compare(ours: float, reference: float, name: str = "mldyn_lite") -> str:
    """Plain words: 'mldyn_lite 1.80× faster' or '… slower' (``name`` is the first of the two)."""
    if not (ours > 0 and reference > 0):
        raise ValueError(f"times must be positive, got {ours!r} and {reference!r}")
    if ours <= reference:
        return f"{name} {reference / ours:.2f}× faster"
    return f"{name} {ours / reference:.2f}× slower"


def entry(row_name: str, setting: str, ours: float | None, reference: float | None, reference_name: str,
          verdict: str, note: str = "") -> dict:
    """One line of the results table (times in seconds; ``None`` where there is nothing to time)."""
    return {"row": row_name, "setting": setting, "mldyn_lite": ours, "reference": reference,
            "reference_name": reference_name, "verdict": verdict, "note": note}


# ----------------------------------------------------------------------------------------------------
# Flows
# ----------------------------------------------------------------------------------------------------


@row("flows")
def flows_row(device: torch.device, repeats: int, quick: bool = False) -> list[dict]:
    """Fixed-step RK4 flow: mldyn_lite.flows.rk4_flow vs torchdiffeq.odeint(method='rk4'), same steps."""
    from torchdiffeq import odeint

    from mldyn_lite.flows import SmoothTanhField, rk4_flow

    results = []
    sizes = ((64, 16, 10),) if quick else ((256, 32, 50), (4096, 64, 100))
    for batch, width, steps in sizes:
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
        results.append(entry("Flows: RK4 forward", setting, t_ours, t_ref, "torchdiffeq odeint rk4",
                             compare(t_ours, t_ref), f"max abs difference {difference:.1e}"))
        results.append(entry("Flows: RK4 forward+backward", setting, b_ours, b_ref, "torchdiffeq odeint rk4",
                             compare(b_ours, b_ref)))
    return results


# ----------------------------------------------------------------------------------------------------
# Committor
# ----------------------------------------------------------------------------------------------------


@row("committor")
def committor_row(device: torch.device, repeats: int, quick: bool = False) -> list[dict]:
    """Committor of Mueller–Brown at kT = 10: FD refinement, the network against FD, the network in d = 10."""
    from mldyn_lite import committor as cm

    cpu = torch.device("cpu")  # the finite-volume solver is scipy.sparse: CPU only
    kT = 10.0
    sizes, finest = ((45,), 135) if quick else ((45, 81, 135), 405)
    steps = 40 if quick else 1500
    reference_n = sizes[-1]
    results = []

    # --- finite volumes as the grid is refined --------------------------------------------------------
    solves, seconds = {}, {}
    for n in (*sizes, finest):
        fd_repeats = repeats if n <= 135 else min(repeats, 3)
        seconds[n], solves[n] = measure(lambda n=n: cm.solve_committor_fv(cm.mueller_brown, kT, n), fd_repeats, cpu)
    fine = solves[finest]
    for n in (*sizes, finest):
        stride = finest // n
        if n != finest and finest % n == 0 and stride % 2 == 1:  # cell centres of the coarse grid lie on the fine one
            sampled = fine.q[stride // 2::stride, stride // 2::stride]
            gap = np.abs(solves[n].q - sampled)[solves[n].low_energy_mask()].max()
            accuracy = f"max |q_{n} − q_{finest}| = {gap:.2g} where V − V_min < 130; "
        else:
            accuracy = ""
        results.append(entry("Committor: FD solve as the grid is refined", f"Mueller–Brown, kT = 10, {n}×{n} cells",
                             seconds[n], None, "—", f"{n * n} unknowns in {seconds[n]:.3g} s",
                             f"{accuracy}rate ν_R = {solves[n].reaction_rate:.5g}"))
    growth = np.polyfit(np.log([n * n for n in (*sizes, finest)]), np.log([seconds[n] for n in (*sizes, finest)]), 1)[0]
    results.append(entry("Committor: FD cost growth", f"n = {', '.join(str(n) for n in (*sizes, finest))}", None, None,
                         "—", f"FD time ∝ (unknowns)^{growth:.2f}",
                         "sparse direct solve (scipy spsolve); in d dimensions the unknowns are n^d"))

    # --- the network against the grid, d = 2 ----------------------------------------------------------
    reference = solves[reference_n]
    sampler = cm.BoltzmannSampler(cm.mueller_brown, kT=kT, device=device)
    cm.fit_committor(sampler, seed=0, steps=5)  # warm-up: the first autograd calls are slow
    t_net, fit = timed(lambda: cm.fit_committor(sampler, seed=0, steps=steps), device)
    errors = cm.committor_errors(fit.net, reference)
    results.append(entry(
        "Committor: NN against FD, d = 2", f"Mueller–Brown, kT = 10; NN {steps} Adam steps, batch 500 (one run); "
        f"FD {reference_n}×{reference_n}", t_net, seconds[reference_n], f"FD {reference_n}×{reference_n} (spsolve)",
        compare(t_net, seconds[reference_n], "NN"),
        f"NN relative L2 error {errors['low_energy']:.3g} (low-energy region), {errors['transition']:.3g} "
        f"(0.3 < q < 0.7); rate ν_R NN/FD = {errors['reaction_rate'] / reference.reaction_rate:.3f}"))

    # --- the network in d = 10, where the grid cannot go ---------------------------------------------
    dim = 10
    sampler_10 = cm.BoltzmannSampler(cm.mueller_brown, kT=kT, dim=dim, device=device)
    t_10, fit_10 = timed(lambda: cm.fit_committor(sampler_10, seed=0, steps=steps), device)
    errors_10 = cm.committor_errors(fit_10.net, reference, dim=dim, seed=1)
    unknowns = float(reference_n) ** dim
    results.append(entry(
        "Committor: NN in d = 10", f"Mueller–Brown + 8 stiff harmonic coordinates, kT = 10; NN {steps} Adam steps, "
        "batch 500 (one run)", t_10, None, f"FD: {reference_n}^10 = {unknowns:.1g} unknowns, cannot run",
        f"NN relative L2 error {errors_10['low_energy']:.3g} (low-energy), {errors_10['transition']:.3g} (transition)",
        f"errors against the 2-D FD committor ({reference_n}×{reference_n}), which the exact 10-D committor equals; "
        f"NN in d = 10 took {t_10 / t_net:.2f}× the time of d = 2"))
    return results


# ----------------------------------------------------------------------------------------------------
# OnsagerNet
# ----------------------------------------------------------------------------------------------------


@row("onsager")
def onsager_row(device: torch.device, repeats: int, quick: bool = False) -> list[dict]:
    """OnsagerNet against the unstructured MLP ODE on Lorenz '63: time to a validation error, long-time stability."""
    from scipy.integrate import solve_ivp

    from mldyn_lite.onsager import MLPVectorField, OnsagerNet, integrate, lorenz63, lorenz63_data, train_vector_field

    scale = 10.0
    n_trajectories, n_snapshots, steps = (20, 30, 80) if quick else (100, 100, 1200)
    horizon, n_starts = (5.0, 4) if quick else (100.0, 20)
    thresholds = (5e-2, 1e-2)
    _, states, derivatives = lorenz63_data(n_trajectories=n_trajectories, t_final=3.0, n_snapshots=n_snapshots,
                                           r=28.0, seed=0)
    n_train = int(0.8 * n_trajectories)
    train_h, train_dh = states[:n_train] / scale, derivatives[:n_train] / scale
    test_h = torch.tensor(states[n_train:] / scale, dtype=torch.float32, device=device).reshape(-1, 3)
    test_dh = torch.tensor(derivatives[n_train:] / scale, dtype=torch.float32, device=device).reshape(-1, 3)
    models = {"OnsagerNet": lambda: OnsagerNet(3, hidden=24), "MLP ODE": lambda: MLPVectorField(3, hidden=28, depth=2)}
    trained, seconds, per_step, reached, test_error = {}, {}, {}, {}, {}
    for name, make in models.items():
        torch.manual_seed(0)
        model = make()
        seconds[name], history = timed(lambda: train_vector_field(
            model, train_h, train_dh, steps=steps, lr=1e-2, batch_size=512, eval_every=10, seed=0, device=device), device)
        per_step[name] = seconds[name] / history["steps"][-1]
        reached[name] = {}
        for threshold in thresholds:
            hits = [s for s, v in zip(history["steps"], history["validation"]) if v <= threshold]
            reached[name][threshold] = hits[0] if hits else None
        with torch.no_grad():
            test_error[name] = (((model(test_h) - test_dh) ** 2).sum() / (test_dh**2).sum()).item()
        trained[name] = model

    setting = (f"Lorenz '63 (r = 28), {n_train} trajectories × {n_snapshots} snapshots, batch 512, "
               f"{steps}-step cosine schedule (one run each)")
    results = []
    for threshold in thresholds:
        step_o, step_m = reached["OnsagerNet"][threshold], reached["MLP ODE"][threshold]
        t_o = None if step_o is None else per_step["OnsagerNet"] * step_o
        t_m = None if step_m is None else per_step["MLP ODE"] * step_m
        if t_o is not None and t_m is not None:
            verdict = compare(t_o, t_m, "OnsagerNet")
        elif t_o is not None:
            verdict = f"only OnsagerNet reached it (MLP ODE not within {steps} steps)"
        elif t_m is not None:
            verdict = f"only the MLP ODE reached it (OnsagerNet not within {steps} steps)"
        else:
            verdict = f"neither reached it within {steps} steps"
        results.append(entry(
            f"OnsagerNet vs MLP ODE: time to validation error ≤ {threshold:g}", setting, t_o, t_m, "MLP ODE (2×28 tanh)",
            verdict, f"steps to reach it: OnsagerNet {step_o or 'not reached'}, MLP ODE {step_m or 'not reached'}; "
            f"time = steps × mean time per step "
            f"({1e3 * per_step['OnsagerNet']:.2f} ms vs {1e3 * per_step['MLP ODE']:.2f} ms)"))
    results.append(entry(
        "OnsagerNet vs MLP ODE: whole training run", setting, seconds["OnsagerNet"], seconds["MLP ODE"],
        "MLP ODE (2×28 tanh)", compare(seconds["OnsagerNet"], seconds["MLP ODE"], "OnsagerNet"),
        f"derivative error on held-out trajectories: OnsagerNet {test_error['OnsagerNet']:.3g}, "
        f"MLP ODE {test_error['MLP ODE']:.3g}"))

    # --- long-time stability: starts inside the data box and far outside it ----------------------------
    rng = np.random.default_rng(1)
    inside = rng.uniform([-25, -25, -5], [25, 25, 30], size=(n_starts, 3))
    direction = rng.standard_normal((n_starts, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    far = np.array([0.0, 0.0, 25.0]) + direction * np.exp(rng.uniform(np.log(50), np.log(1000), size=(n_starts, 1)))
    starts = np.concatenate([inside, far])
    dt, save_every = 0.025, 8
    t_saved = np.arange(0, horizon + 1e-9, save_every * dt)
    late = t_saved >= horizon / 2

    def truth():
        return solve_ivp(lambda _t, y: lorenz63(y.reshape(-1, 3)).ravel(), (0, horizon), starts.ravel(), t_eval=t_saved,
                         method="DOP853", rtol=1e-8, atol=1e-8)

    t_truth, solution = timed(truth, torch.device("cpu"))
    z_true = solution.y.reshape(2 * n_starts, 3, -1).transpose(2, 0, 1)[late][:, :n_starts, 2]

    def is_back(x):
        return (np.abs(x[:, 0]) < 30) & (np.abs(x[:, 1]) < 30) & (x[:, 2] > 0) & (x[:, 2] < 60)

    long_seconds, summary = {}, {}
    h0 = torch.tensor(starts / scale, dtype=torch.float32, device=device)
    for name, model in trained.items():
        long_seconds[name], (path, escaped) = timed(lambda: integrate(
            model, h0, horizon, dt=dt, save_every=save_every, escape_radius=1e4 / scale), device)
        path = scale * path.cpu().numpy()
        back = is_back(path[-1])
        z = path[late][:, :n_starts, 2]
        summary[name] = (f"{name}: escaped {int(escaped.sum())}/{2 * n_starts}, back on the attractor "
                         f"{int(back[:n_starts].sum())}/{n_starts} inside + {int(back[n_starts:].sum())}/{n_starts} far, "
                         f"z {z.mean():.2f} ± {z.std():.2f}")
    results.append(entry(
        f"OnsagerNet vs MLP ODE: long-time stability, T = {horizon:g}",
        f"RK4, dt = {dt}, {n_starts} starts in the data box + {n_starts} at distance 50–1000",
        long_seconds["OnsagerNet"], long_seconds["MLP ODE"], "MLP ODE (2×28 tanh)",
        compare(long_seconds["OnsagerNet"], long_seconds["MLP ODE"], "OnsagerNet"),
        f"{summary['OnsagerNet']}; {summary['MLP ODE']}; truth (scipy DOP853, {t_truth:.2g} s): "
        f"z {z_true.mean():.2f} ± {z_true.std():.2f} for t ≥ {horizon / 2:g}"))
    return results


# ----------------------------------------------------------------------------------------------------
# SME
# ----------------------------------------------------------------------------------------------------


@row("sme")
def sme_row(device: torch.device, repeats: int, quick: bool = False) -> list[dict]:
    """SGD and its stochastic modified equations: weak-error slopes, time per simulated path-step."""
    from mldyn_lite import sme

    T = 2.0
    results = []

    # --- weak-error slopes from the exact moments -------------------------------------------------------
    lrs = 2.0 ** -np.arange(3, 10)
    for case, moments in (("multiplicative noise, φ = J", lambda lr: sme.multiplicative_noise_moments(lr, T, 1.0)),
                          ("additive noise, φ = x², x0 = 3", lambda lr: sme.additive_noise_moments(lr, T, 3.0))):
        table = [moments(lr) for lr in lrs]
        slopes = {m: sme.weak_error_slope(lrs, [abs(t["sgd"] - t[m]) for t in table]) for m in ("sme1", "sme2")}
        results.append(entry("SME: weak-error slope, exact moments", f"{case}, η = 2^-3 … 2^-9, T = 2", None, None,
                             "closed-form SGD moments", f"SME1 {slopes['sme1']:.2f} (theory 1), "
                             f"SME2 {slopes['sme2']:.2f} (theory 2)", "no sampling: exact expectations"))

    # --- weak-error slopes by Monte Carlo, against a backward-Kolmogorov solver --------------------------
    problem = sme.toy_problem("logcosh")
    x_start = torch.tensor([2.0], dtype=torch.float64)
    mc_lrs = 2.0 ** -np.arange(1, 4 if quick else 6)
    n_paths = 20_000 if quick else 400_000

    def phi(x):
        return x**2

    def kolmogorov(lr, order):
        return sme.sde_expectation_1d(problem.sme_drift(lr, order), problem.sme_diffusion(lr), phi, 2.0, T,
                                      domain=(-6.0, 8.0), n_grid=1401, time_steps=200)

    t_sgd = t_kolmogorov = 0.0
    sgd_mean, sgd_error, sme_values = [], [], []
    for i, lr in enumerate(mc_lrs):
        seconds, final = timed(lambda: sme.sgd_paths(problem.stochastic_gradient, x_start, lr, round(T / lr),
                                                     n_paths=n_paths, seed=10 + i, device=device), device)
        t_sgd += seconds
        mean, error = sme.monte_carlo_mean(phi(final[:, 0]).cpu().numpy())
        sgd_mean.append(mean)
        sgd_error.append(error)
        seconds, values = timed(lambda: (kolmogorov(lr, 1), kolmogorov(lr, 2)), torch.device("cpu"))
        t_kolmogorov += seconds
        sme_values.append(values)
    sgd_mean, sgd_error, sme_values = np.array(sgd_mean), np.array(sgd_error), np.array(sme_values)
    slopes = []
    for k, label in enumerate(("SME1", "SME2")):
        errors = np.abs(sgd_mean - sme_values[:, k])
        resolved = errors > 3 * sgd_error
        slope = sme.weak_error_slope(mc_lrs[resolved], errors[resolved]) if resolved.sum() >= 2 else float("nan")
        slopes.append(f"{label} {slope:.2f} ({int(resolved.sum())} of {len(mc_lrs)} points above 3 s.e.)")
    path_steps = n_paths * sum(round(T / lr) for lr in mc_lrs)
    results.append(entry(
        "SME: weak-error slope, Monte Carlo", f"log-cosh loss, x0 = 2, φ = x², η = 1/2 … 1/{round(1 / mc_lrs[-1])}, "
        f"{n_paths} SGD paths each", t_sgd, t_kolmogorov, "backward-Kolmogorov solver (Crank–Nicolson, 1401 points)",
        ", ".join(slopes) + " (theory 1 and 2)",
        f"SGD simulation {1e9 * t_sgd / path_steps:.3g} ns per path-step; reference time = SME1 + SME2 solves"))

    # --- time per simulated path-step, against the same scheme written with numpy -----------------------
    lr, steps = 0.25, 64
    paths = 5_000 if quick else 100_000
    drift, diffusion = problem.sme_drift(lr, 2), problem.sme_diffusion(lr)
    dt = T / steps

    def ours_euler():
        return sme.sde_paths(drift, diffusion, x_start, T, steps, n_paths=paths, scheme="euler", seed=3, device=device)

    def numpy_euler():
        rng = np.random.default_rng(3)
        x = np.full((paths, 1), 2.0)
        for _ in range(steps):
            x = x + drift(x) * dt + diffusion(x) * math.sqrt(dt) * rng.standard_normal(x.shape)
        return x

    t_ours, x_ours = measure(ours_euler, repeats, device)
    t_ref, x_ref = measure(numpy_euler, repeats, torch.device("cpu"))
    m_ours = sme.monte_carlo_mean(phi(x_ours[:, 0]).cpu().numpy())
    m_ref = sme.monte_carlo_mean(phi(x_ref[:, 0]))
    results.append(entry(
        "SME: time per path-step, Euler–Maruyama", f"SME2 of the log-cosh loss, η = 1/4, {paths} paths × {steps} steps",
        t_ours, t_ref, "numpy, same scheme", compare(t_ours, t_ref),
        f"{1e9 * t_ours / (paths * steps):.3g} ns vs {1e9 * t_ref / (paths * steps):.3g} ns per path-step; "
        f"E s_T² = {m_ours[0]:.4f} ± {m_ours[1]:.4f} vs {m_ref[0]:.4f} ± {m_ref[1]:.4f}"))

    sgd_steps = round(T / lr) * 8

    def ours_sgd():
        return sme.sgd_paths(problem.stochastic_gradient, x_start, lr / 8, sgd_steps, n_paths=paths, seed=4,
                             device=device)

    def numpy_sgd():
        rng = np.random.default_rng(4)
        x = np.full((paths, 1), 2.0)
        for _ in range(sgd_steps):
            x = x - lr / 8 * np.tanh(x - (2.0 * rng.integers(0, 2, size=x.shape) - 1.0))
        return x

    t_ours, _ = measure(ours_sgd, repeats, device)
    t_ref, _ = measure(numpy_sgd, repeats, torch.device("cpu"))
    results.append(entry(
        "SME: time per path-step, SGD simulation", f"log-cosh loss, η = 1/32, {paths} paths × {sgd_steps} steps",
        t_ours, t_ref, "numpy, same update", compare(t_ours, t_ref),
        f"{1e9 * t_ours / (paths * sgd_steps):.3g} ns vs {1e9 * t_ref / (paths * sgd_steps):.3g} ns per path-step"))

    def ours_weak2():
        return sme.sde_paths(drift, diffusion, x_start, T, steps, n_paths=paths, scheme="weak2", seed=3, device=device)

    t_weak2, x_weak2 = measure(ours_weak2, repeats, device)
    t_solver, exact = measure(lambda: kolmogorov(lr, 2), repeats, torch.device("cpu"))
    m_weak2 = sme.monte_carlo_mean(phi(x_weak2[:, 0]).cpu().numpy())
    results.append(entry(
        "SME: weak-order-2 Monte Carlo vs Kolmogorov solver", f"SME2 of the log-cosh loss, η = 1/4, E s_T², "
        f"{paths} paths × {steps} steps", t_weak2, t_solver, "backward-Kolmogorov solver (1401 points, 200 steps)",
        f"|MC − solver| = {abs(m_weak2[0] - exact):.2g} (MC standard error {m_weak2[1]:.2g}); "
        + compare(t_weak2, t_solver, "Monte Carlo"),
        f"MC {m_weak2[0]:.5f}, solver {exact:.5f}; {1e9 * t_weak2 / (paths * steps):.3g} ns per path-step"))
    return results


# ----------------------------------------------------------------------------------------------------
# Plateaus
# ----------------------------------------------------------------------------------------------------


@row("plateaus")
def plateaus_row(device: torch.device, repeats: int, quick: bool = False) -> list[dict]:
    """Training plateaus: escape iterations against memory; time per iteration, closed-form and sampled trainers."""
    from mldyn_lite.rnn import escape_iterations, train_diagonal_rnn, train_tanh_rnn

    results = []
    # --- escape iterations against memory, closed-form risk ----------------------------------------------
    sweeps = {
        "Adam (lr 0.01)": dict(memories=[2.0, 3.0] if quick else [2.0, 3.0, 4.0, 5.0], seeds=range(2 if quick else 5),
                               steps=400 if quick else 6000, optimizer="adam", lr=1e-2),
        "gradient descent (lr 0.02)": dict(memories=[1.5, 2.0] if quick else [1.5, 2.0, 2.5, 3.0, 3.5, 4.0],
                                           seeds=range(2 if quick else 3), steps=400 if quick else 3000,
                                           optimizer="gd", lr=0.02),
    }
    for name, sweep in sweeps.items():
        memories, seeds = sweep["memories"], list(sweep["seeds"])
        seconds, losses = timed(lambda: train_diagonal_rnn(memories, seeds=seeds, lr=sweep["lr"], m=16,
                                                           optimizer=sweep["optimizer"], steps=sweep["steps"],
                                                           stop_when_escaped=True, device=device), device)
        escape = escape_iterations(losses, memories)[:, 0]
        median = np.median(escape, axis=1)
        found = np.isfinite(median)
        rate = np.polyfit(np.array(memories)[found], np.log(median[found]), 1)[0] if found.sum() >= 2 else float("nan")
        listing = ", ".join(f"t0 = {t:g}: {'—' if not np.isfinite(v) else int(v)}" for t, v in zip(memories, median))
        results.append(entry(
            "Plateaus: escape iterations against memory", f"diagonal linear RNN, m = 16, closed-form risk, {name}, "
            f"{len(seeds)} seeds, at most {sweep['steps']} steps", seconds, None, "—",
            f"median escape step grows like exp({rate:.2f} t0)", f"median escape steps {listing}"))

    # --- time per iteration: closed form (one run and many at once) against sampled sequences -----------
    n_iterations = 200 if quick else 2000
    t_one = median_time(lambda: train_diagonal_rnn([3.0], seeds=[0], steps=n_iterations, device=device),
                        repeats, device) / n_iterations
    many = 4 if quick else 64
    t_many = median_time(lambda: train_diagonal_rnn([3.0], seeds=range(many), steps=n_iterations, device=device),
                         repeats, device) / n_iterations
    tanh_memories = [1.0] if quick else [1.0, 3.0, 5.0]
    tanh_steps = 40 if quick else 600
    t_tanh, reached = 0.0, []
    for memory in tanh_memories:
        seconds, history = timed(lambda: train_tanh_rnn(memory, hidden=16, steps=tanh_steps, lr=1e-2, seed=0,
                                                        device=device), device)
        t_tanh += seconds
        smooth = np.convolve(history, np.ones(20) / 20, mode="valid") if history.size >= 20 else history
        below = np.nonzero(smooth < 0.1)[0]
        reached.append(f"t0 = {memory:g}: {below[0] + min(20, history.size) if below.size else 'not'}")
    t_sampled = t_tanh / (len(tanh_memories) * tanh_steps)
    results.append(entry(
        "Plateaus: time per iteration, closed-form vs sampled trainer",
        "closed form: diagonal linear RNN, m = 16, one run; sampled: tanh RNN, 16 hidden, batch 32 × length 40",
        t_one, t_sampled, "sampled trainer (train_tanh_rnn)", compare(t_one, t_sampled, "closed form"),
        f"closed form with {many} runs at once: {1e6 * t_many:.3g} µs per step = {1e6 * t_many / many:.3g} µs per "
        f"run-step; sampled trainer: step at which the 20-step average loss first falls below 0.1 — "
        + ", ".join(reached) + f" (of {tanh_steps})"))
    return results


# ----------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------


def versions() -> str:
    names = ["mldyn_lite", "torch", "torchdiffeq", "numpy", "scipy"]
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def gpu_section(text: str) -> str | None:
    """The block between the GPU markers of an existing RESULTS.md (markers included), or ``None``."""
    start, end = text.find(GPU_SECTION_START), text.find(GPU_SECTION_END)
    if start < 0 or end < start:
        return None
    return text[start:end + len(GPU_SECTION_END)]


def replace_gpu_section(text: str, section: str) -> str:
    """``text`` with its GPU block replaced by ``section`` (given without markers), or with it appended."""
    block = f"{GPU_SECTION_START}\n{section.strip()}\n{GPU_SECTION_END}"
    old = gpu_section(text)
    if old is not None:
        return text.replace(old, block)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def render(results: list[dict], device: torch.device, repeats: int, quick: bool = False,
           previous: str | None = None) -> str:
    """RESULTS.md: machine, versions, date, the table; the GPU section of ``previous`` is kept."""
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    lines = [
        "# Benchmark results",
        "",
        f"Written {datetime.date.today().isoformat()} by `benchmarks/run.py` — short operations: median of {repeats} "
        "runs after a warm-up; training runs: one run. Times in seconds (wall clock).",
        "",
        f"- Machine: {machine_description()}",
        f"- Device: {device.type}{gpu}; torch threads: {torch.get_num_threads()}",
        f"- Packages: {versions()}; Python {platform.python_version()}",
        "",
        "| row | setting | mldyn_lite (s) | reference | reference (s) | verdict | note |",
        "|---|---|---:|---|---:|---|---|",
    ]
    if quick:
        lines.insert(2, "**Quick sizes (`--quick`): a check that every row runs, not results.**\n")
    for r in results:
        cells = [r["row"], r["setting"], _seconds(r["mldyn_lite"]), r["reference_name"], _seconds(r["reference"]),
                 r["verdict"], r["note"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    text = "\n".join(lines) + "\n"
    section = gpu_section(previous) if previous else None
    if section is None:
        return replace_gpu_section(text, GPU_SECTION_PLACEHOLDER)
    return text.rstrip("\n") + "\n\n" + section + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; prints the table and writes only to --output")
    parser.add_argument("--output", type=Path, default=None, help="default: benchmarks/RESULTS.md (none with --quick)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    from mldyn_lite import get_device, set_threads

    set_threads(args.threads)
    device = get_device(args.device)
    output = args.output if args.output is not None or args.quick else ROOT / "benchmarks" / "RESULTS.md"
    results = []
    for name in args.rows:
        print(f"running {name} …", flush=True)
        start = time.process_time()
        results.extend(ROWS[name](device, args.repeats, quick=args.quick))
        print(f"  {name}: {time.process_time() - start:.1f} s of CPU", flush=True)
    previous = output.read_text() if output is not None and output.exists() else None
    text = render(results, device, args.repeats, args.quick, previous)
    if output is not None:
        output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
