"""Benchmarks against reference implementations; writes benchmarks/RESULTS.md.

    python3 benchmarks/run.py                       # every section (about 6 minutes of CPU, one torch thread)
    python3 benchmarks/run.py --rows flows sme      # selected sections; the others stay as they are in RESULTS.md
    python3 benchmarks/run.py --device cuda         # run the solver rows on a GPU
    python3 benchmarks/run.py --quick               # tiny sizes, to check that every row runs (prints only)

Each row compares an mldyn_lite solver with a reference in the same run — a
well-kept library (torchdiffeq, numpy), a reference solver (finite volumes,
scipy's DOP853, a backward-Kolmogorov solver, exact moments) or the
unstructured baseline model — and says plainly which is faster and by how much,
or how accurate the learned answer is against the reference and how long each
took. The scaling rows fit how the cost of a training step grows with the
dimension, the batch and the width.

How the times are taken (the file says it too):

* every time is the median, min and max of ``--repeats`` (≥ 3) runs after one
  warm-up run, in **process CPU time** (``time.process_time``) with one torch
  thread: other processes on a shared machine do not inflate it the way they
  inflate wall-clock time (on a GPU: wall time, synchronised);
* a ratio ("1.05× slower") divides the medians of two functions whose runs
  were interleaved in this process (A, B, B, A, …), so both saw the same load;
* a whole training run, too long to repeat, is timed once (CPU time) and
  marked "one run"; no ratio is taken from such single runs.

RESULTS.md has one section per row function (``--rows`` names), each stamped
with the schema version and a digest of that function's source;
``tests/test_benchmarks.py`` fails when a section is missing or was written by
other code, so stale numbers cannot stay. The GPU section of RESULTS.md is
written by ``benchmarks/gpu.py``; this script keeps it. Nothing here asserts a
speed: speed is measured, not tested.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.notebook_times import machine_description  # noqa: E402

#: Version of the layout and the timing rules of RESULTS.md; bump it when either changes.
SCHEMA = 2
SCHEMA_LINE = f"<!-- benchmarks/run.py schema {SCHEMA} -->"
SECTION_START = re.compile(r"<!-- section (?P<name>[a-z_]+) schema (?P<schema>\d+) code (?P<code>[0-9a-f]+) -->")
MIN_REPEATS = 3
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

ROWS: dict[str, Callable] = {}
#: Heading of each section in RESULTS.md.
TITLES = {
    "flows": "Flows: RK4 against torchdiffeq",
    "committor": "Committor: finite volumes and the network's cost",
    "onsager": "OnsagerNet against the MLP ODE",
    "sme": "SGD and its modified equations",
    "plateaus": "Training plateaus",
}

#: RESULTS.md keeps the section that benchmarks/gpu.py writes between these two lines.
GPU_SECTION_START = "<!-- benchmarks/gpu.py: start -->"
GPU_SECTION_END = "<!-- benchmarks/gpu.py: end -->"
GPU_SECTION_PLACEHOLDER = (
    "## GPU\n\n"
    "`benchmarks/gpu.py` (larger settings of each solver, CPU against GPU time) has not run on a GPU yet: "
    "no GPU machine was available to the sessions that wrote this file. The CUDA tests skip without one.\n"
)


def row(name: str):
    """Register ``fn(device, repeats, quick=False) -> list[dict]`` as the benchmark section ``name``."""

    def register(fn):
        ROWS[name] = fn
        return fn

    return register


def code_digest(name: str) -> str:
    """Digest of the source of section ``name``'s function and of the schema: what the test compares."""
    source = inspect.getsource(ROWS[name])
    return hashlib.sha256(f"{SCHEMA}\n{source}".encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Seconds of ``runs`` runs: ``median``, ``low`` (min), ``high`` (max); ``clock`` is ``"cpu"`` or ``"wall"``."""

    median: float
    low: float
    high: float
    runs: int
    clock: str

    @classmethod
    def of(cls, seconds: list[float], clock: str) -> Timing:
        if not seconds:
            raise ValueError("seconds must hold at least one time")
        return cls(statistics.median(seconds), min(seconds), max(seconds), len(seconds), clock)

    def scaled(self, factor: float) -> Timing:
        """The same timing times ``factor`` (per step, per path-step, …)."""
        return Timing(self.median * factor, self.low * factor, self.high * factor, self.runs, self.clock)

    def __str__(self) -> str:
        if self.runs == 1:
            return f"{self.median:.4g} (one run)"
        return f"{self.median:.4g} [{self.low:.3g}–{self.high:.3g}]"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device) -> tuple[Callable[[], float], str]:
    """Process CPU time on the CPU (not inflated by other processes); synchronised wall time on a GPU."""
    return (time.perf_counter, "wall") if device.type == "cuda" else (time.process_time, "cpu")


def _run_once(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    now, _ = _clock(device)
    _synchronize(device)
    start = now()
    result = fn()
    _synchronize(device)
    return now() - start, result


def measure(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[Timing, object]:
    """Median, min and max time of ``fn()`` over ``repeats`` runs after one warm-up run, and the last result."""
    result = fn()
    seconds = []
    for _ in range(max(repeats, 1)):
        elapsed, result = _run_once(fn, device)
        seconds.append(elapsed)
    return Timing.of(seconds, _clock(device)[1]), result


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median time of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    return measure(fn, repeats, device)[0].median


def measure_pair(
    first: Callable[[], object], second: Callable[[], object], repeats: int, device: torch.device
) -> tuple[Timing, Timing, object, object]:
    """Time two functions with interleaved runs (A B, B A, A B, …) after a warm-up of each: both see the same load."""
    results = [first(), second()]
    seconds: list[list[float]] = [[], []]
    for k in range(max(repeats, 1)):
        for i in (0, 1) if k % 2 == 0 else (1, 0):
            elapsed, results[i] = _run_once((first, second)[i], device)
            seconds[i].append(elapsed)
    clock = _clock(device)[1]
    return Timing.of(seconds[0], clock), Timing.of(seconds[1], clock), results[0], results[1]


def timed(fn: Callable[[], object], device: torch.device) -> tuple[Timing, object]:
    """One run of ``fn()`` (a whole training run, too long to repeat): its time and result."""
    elapsed, result = _run_once(fn, device)
    return Timing.of([elapsed], _clock(device)[1]), result


def _median(value: Timing | float) -> float:
    return value.median if isinstance(value, Timing) else float(value)


def compare(ours: Timing | float, reference: Timing | float, name: str = "mldyn_lite") -> str:
    """Plain words: 'mldyn_lite 1.80× faster' or '… slower' (``name`` is the first of the two); medians."""
    ours, reference = _median(ours), _median(reference)
    if not (ours > 0 and reference > 0):
        raise ValueError(f"times must be positive, got {ours!r} and {reference!r}")
    if ours <= reference:
        return f"{name} {reference / ours:.2f}× faster"
    return f"{name} {ours / reference:.2f}× slower"


def entry(
    row_name: str,
    setting: str,
    ours: Timing | None,
    reference: Timing | None,
    reference_name: str,
    verdict: str,
    note: str = "",
) -> dict:
    """One line of the results table (times in seconds; ``None`` where there is nothing to time)."""
    return {
        "row": row_name,
        "setting": setting,
        "mldyn_lite": ours,
        "reference": reference,
        "reference_name": reference_name,
        "verdict": verdict,
        "note": note,
    }


def fitted_exponent(values, seconds) -> float:
    """Slope of log(time) against log(value): time ∝ value^slope over the points measured."""
    return float(np.polyfit(np.log(np.asarray(values, dtype=float)), np.log(np.asarray(seconds, dtype=float)), 1)[0])


def scaling_entries(
    label: str,
    fixed: str,
    sweeps: dict[str, tuple[list, Callable[[object], Callable[[], object]]]],
    repeats: int,
    device: torch.device,
    steps_per_call: int = 1,
) -> list[dict]:
    """One row per swept quantity: time of a training step at each value (median [min–max]), fitted exponent.

    ``sweeps[quantity] = (values, make)``; ``make(value)`` returns a function that runs
    ``steps_per_call`` training steps.
    """
    results = []
    for quantity, (values, make) in sweeps.items():
        timings = [measure(make(value), repeats, device)[0].scaled(1 / steps_per_call) for value in values]
        exponent = fitted_exponent(values, [t.median for t in timings])
        last = fitted_exponent(values[-2:], [t.median for t in timings[-2:]])  # the trend at the large end
        points = "; ".join(
            f"{value}: {1e3 * t.median:.3g} ms [{1e3 * t.low:.3g}–{1e3 * t.high:.3g}]" for value, t in zip(values, timings)
        )
        ratio = timings[-1].median / timings[0].median
        results.append(
            entry(
                f"{label}: cost of a training step against {quantity}",
                f"{quantity} = {', '.join(str(v) for v in values)}; {fixed}",
                timings[0],
                timings[-1],
                f"same step at {quantity} = {values[-1]}",
                f"time per step ∝ {quantity}^{exponent:.2f} (fitted over {len(values)} points; between the two largest: "
                f"^{last:.2f})",
                f"per step — {points}; {values[-1]} vs {values[0]}: {ratio:.2f}× the time ({quantity} × "
                f"{values[-1] / values[0]:g})",
            )
        )
    return results


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
        t_ours, t_ref, _, _ = measure_pair(ours, reference, repeats, device)
        b_ours, b_ref, _, _ = measure_pair(backward(ours), backward(reference), repeats, device)
        setting = f"batch {batch}, width {width}, {steps} steps, float64"
        results.append(
            entry(
                "Flows: RK4 forward",
                setting,
                t_ours,
                t_ref,
                "torchdiffeq odeint rk4",
                compare(t_ours, t_ref),
                f"max abs difference {difference:.1e}",
            )
        )
        results.append(
            entry("Flows: RK4 forward+backward", setting, b_ours, b_ref, "torchdiffeq odeint rk4", compare(b_ours, b_ref))
        )
    return results


# ----------------------------------------------------------------------------------------------------
# Committor
# ----------------------------------------------------------------------------------------------------


@row("committor")
def committor_row(device: torch.device, repeats: int, quick: bool = False) -> list[dict]:
    """Committor of Mueller–Brown at kT = 10: FD refinement; cost of a network training step against d, batch, width.

    The accuracy of the trained network at the default settings (d = 2 and 10, three seeds) is
    measured by benchmarks/committor_defaults.py (COMMITTOR_DEFAULTS.md), not here.
    """
    from mldyn_lite import committor as cm

    cpu = torch.device("cpu")  # the finite-volume solver is scipy.sparse: CPU only
    kT = 10.0
    sizes, finest = ((45,), 135) if quick else ((45, 81, 135), 405)
    results = []

    # --- finite volumes as the grid is refined --------------------------------------------------------
    solves, timings = {}, {}
    for n in (*sizes, finest):
        timings[n], solves[n] = measure(lambda n=n: cm.solve_committor_fv(cm.mueller_brown, kT, n), repeats, cpu)
    fine = solves[finest]
    for n in (*sizes, finest):
        stride = finest // n
        if n != finest and finest % n == 0 and stride % 2 == 1:  # cell centres of the coarse grid lie on the fine one
            sampled = fine.q[stride // 2 :: stride, stride // 2 :: stride]
            gap = np.abs(solves[n].q - sampled)[solves[n].low_energy_mask()].max()
            accuracy = f"max |q_{n} − q_{finest}| = {gap:.2g} where V − V_min < 130; "
        else:
            accuracy = ""
        results.append(
            entry(
                "Committor: FD solve as the grid is refined",
                f"Mueller–Brown, kT = 10, {n}×{n} cells",
                timings[n],
                None,
                "—",
                f"{n * n} unknowns in {timings[n].median:.3g} s",
                f"{accuracy}rate ν_R = {solves[n].reaction_rate:.5g}",
            )
        )
    cells = [n * n for n in (*sizes, finest)]
    growth = fitted_exponent(cells, [timings[n].median for n in (*sizes, finest)])
    results.append(
        entry(
            "Committor: FD cost growth",
            f"n = {', '.join(str(n) for n in (*sizes, finest))}",
            None,
            None,
            "—",
            f"FD time ∝ (unknowns)^{growth:.2f}",
            "sparse direct solve (scipy spsolve); in d dimensions the unknowns are n^d",
        )
    )

    # --- the network: cost of a training step against dimension, batch and width ---------------------
    steps = 4 if quick else 40
    samplers, defaults = {}, cm.CommittorOptions()

    def fit(dim=2, batch_size=defaults.batch_size, width=defaults.width):
        if dim not in samplers:
            samplers[dim] = cm.BoltzmannSampler(cm.mueller_brown, kT=kT, dim=dim, device=device)
        return lambda: cm.fit_committor(
            samplers[dim], seed=0, steps=steps, batch_size=batch_size, width=width, polish_steps=0
        )  # the Adam steps only: the polish is a fixed cost

    sweeps = {
        "d": ([2, 5] if quick else [2, 5, 10, 20, 50], lambda d: fit(dim=d)),
        "batch": ([100, 200] if quick else [250, 500, 1000, 2000], lambda b: fit(batch_size=b)),
        "width": ([10, 20] if quick else [25, 50, 100, 200], lambda w: fit(width=w)),
    }
    fixed = (
        f"the other settings at the defaults (d = 2, batch {defaults.batch_size}, width {defaults.width}, "
        f"depth {defaults.depth}, {defaults.boundary_batch_size} boundary samples per state); time of a "
        f"{steps}-step fit_committor run / {steps} (sampling, Dirichlet gradient, Adam, weight averaging)"
    )
    results.extend(scaling_entries("Committor NN", fixed, sweeps, repeats, device, steps_per_call=steps))
    return results


# ----------------------------------------------------------------------------------------------------
# OnsagerNet
# ----------------------------------------------------------------------------------------------------


@row("onsager")
def onsager_row(device: torch.device, repeats: int, quick: bool = False) -> list[dict]:
    """OnsagerNet against the unstructured MLP ODE on Lorenz '63; cost of a step against dimension, batch, width."""
    import copy

    from scipy.integrate import solve_ivp

    from mldyn_lite.onsager import MLPVectorField, OnsagerNet, lorenz63, lorenz63_data, train_vector_field
    from mldyn_lite.onsager import rollout as simulate

    scale, batch_size = 10.0, 512
    n_trajectories, n_snapshots, steps = (20, 30, 80) if quick else (100, 100, 1200)
    horizon, n_starts = (5.0, 4) if quick else (100.0, 20)
    thresholds = (5e-2, 1e-2)
    _, states, derivatives = lorenz63_data(
        n_trajectories=n_trajectories, t_final=3.0, n_snapshots=n_snapshots, r=28.0, seed=0
    )
    n_train = int(0.8 * n_trajectories)
    train_h, train_dh = states[:n_train] / scale, derivatives[:n_train] / scale
    test_h = torch.tensor(states[n_train:] / scale, dtype=torch.float32, device=device).reshape(-1, 3)
    test_dh = torch.tensor(derivatives[n_train:] / scale, dtype=torch.float32, device=device).reshape(-1, 3)
    models = {
        "OnsagerNet": lambda: OnsagerNet(3, width=24, seed=0),
        "MLP ODE": lambda: MLPVectorField(3, width=28, depth=2, seed=0),
    }

    def training_steps(model, n, batch=batch_size, dim=3):
        """``n`` Adam steps of derivative matching on a fixed random batch: the cost of a training step."""
        model = copy.deepcopy(model).to(device)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, dim, generator=g).to(device)
        y = torch.randn(batch, dim, generator=g).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def run():
            for _ in range(n):
                optimizer.zero_grad()
                ((model(x) - y) ** 2).sum(-1).mean().backward()
                optimizer.step()

        return run

    # --- time per step, interleaved in this process ---------------------------------------------------
    n_timed = 10 if quick else 100
    step_o, step_m, _, _ = measure_pair(
        training_steps(models["OnsagerNet"](), n_timed), training_steps(models["MLP ODE"](), n_timed), repeats, device
    )
    step_o, step_m = step_o.scaled(1 / n_timed), step_m.scaled(1 / n_timed)

    # --- one training run each: steps to a validation error, accuracy ---------------------------------
    trained, seconds, reached, test_error = {}, {}, {}, {}
    for name, make in models.items():
        model = make()
        seconds[name], history = timed(
            lambda: train_vector_field(
                model, train_h, train_dh, steps=steps, lr=1e-2, batch_size=batch_size, eval_every=10, seed=0, device=device
            ),
            device,
        )
        reached[name] = {}
        for threshold in thresholds:
            hits = [s for s, v in zip(history["steps"], history["validation"]) if v <= threshold]
            reached[name][threshold] = hits[0] if hits else None
        with torch.no_grad():
            test_error[name] = (((model(test_h) - test_dh) ** 2).sum() / (test_dh**2).sum()).item()
        trained[name] = model

    setting = (
        f"Lorenz '63 (r = 28), {n_train} trajectories × {n_snapshots} snapshots, batch {batch_size}, "
        f"{steps}-step cosine schedule"
    )
    results = [
        entry(
            "OnsagerNet vs MLP ODE: time per training step",
            f"{setting}; {n_timed} Adam steps per run",
            step_o,
            step_m,
            "MLP ODE (2×28 tanh)",
            compare(step_o, step_m, "OnsagerNet"),
            "OnsagerNet: 3-D state, one tanh layer of 24 (the book's default), stable force",
        )
    ]
    for threshold in thresholds:
        s_o, s_m = reached["OnsagerNet"][threshold], reached["MLP ODE"][threshold]
        t_o = None if s_o is None else step_o.scaled(s_o)
        t_m = None if s_m is None else step_m.scaled(s_m)
        if t_o is not None and t_m is not None:
            verdict = compare(t_o, t_m, "OnsagerNet")
        elif t_o is not None:
            verdict = f"only OnsagerNet reached it (MLP ODE not within {steps} steps)"
        elif t_m is not None:
            verdict = f"only the MLP ODE reached it (OnsagerNet not within {steps} steps)"
        else:
            verdict = f"neither reached it within {steps} steps"
        results.append(
            entry(
                f"OnsagerNet vs MLP ODE: time to validation error ≤ {threshold:g}",
                setting,
                t_o,
                t_m,
                "MLP ODE (2×28 tanh)",
                verdict,
                f"steps to reach it (one training run each): OnsagerNet {s_o or 'not reached'}, MLP ODE "
                f"{s_m or 'not reached'}; time = steps × the time per step above",
            )
        )
    results.append(
        entry(
            "OnsagerNet vs MLP ODE: whole training run",
            setting,
            seconds["OnsagerNet"],
            seconds["MLP ODE"],
            "MLP ODE (2×28 tanh)",
            "one run each: no ratio taken (see the time per step)",
            f"includes validation every 10 steps; derivative error on held-out trajectories: OnsagerNet "
            f"{test_error['OnsagerNet']:.3g}, MLP ODE {test_error['MLP ODE']:.3g}",
        )
    )

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

    solution = solve_ivp(
        lambda _t, y: lorenz63(y.reshape(-1, 3)).ravel(),
        (0, horizon),
        starts.ravel(),
        t_eval=t_saved,
        method="DOP853",
        rtol=1e-8,
        atol=1e-8,
    )
    z_true = solution.y.reshape(2 * n_starts, 3, -1).transpose(2, 0, 1)[late][:, :n_starts, 2]

    def is_back(x):
        return (np.abs(x[:, 0]) < 30) & (np.abs(x[:, 1]) < 30) & (x[:, 2] > 0) & (x[:, 2] < 60)

    summary = {}
    h0 = torch.tensor(starts / scale, dtype=torch.float32, device=device)
    for name, model in trained.items():
        run = simulate(model, h0, horizon, dt=dt, save_every=save_every, escape_radius=1e4 / scale)
        path, escaped = scale * run.path.transpose(0, 1).cpu().numpy(), run.escaped
        back = is_back(path[-1])
        z = path[late][:, :n_starts, 2]
        summary[name] = (
            f"{name}: escaped {int(escaped.sum())}/{2 * n_starts}, back on the attractor "
            f"{int(back[:n_starts].sum())}/{n_starts} inside + {int(back[n_starts:].sum())}/{n_starts} far, "
            f"z {z.mean():.2f} ± {z.std():.2f}"
        )
    segment = horizon / 10

    def rollout(model):
        return lambda: simulate(model, h0, segment, dt=dt, save_every=save_every, escape_radius=1e4 / scale)

    long_o, long_m, _, _ = measure_pair(rollout(trained["OnsagerNet"]), rollout(trained["MLP ODE"]), repeats, device)
    results.append(
        entry(
            f"OnsagerNet vs MLP ODE: long-time stability, T = {horizon:g}",
            f"RK4, dt = {dt}, {n_starts} starts in the data box + {n_starts} at distance 50–1000; "
            f"times: a T = {segment:g} stretch",
            long_o,
            long_m,
            "MLP ODE (2×28 tanh)",
            compare(long_o, long_m, "OnsagerNet"),
            f"{summary['OnsagerNet']}; {summary['MLP ODE']}; truth (scipy DOP853): "
            f"z {z_true.mean():.2f} ± {z_true.std():.2f} for t ≥ {horizon / 2:g}",
        )
    )

    # --- cost of a training step against the dimension, the batch and the width ------------------------
    n_scaling = 5 if quick else 50
    sweeps = {
        "m": (
            [3, 6] if quick else [3, 6, 12, 24],
            lambda m: training_steps(OnsagerNet(m, width=24, seed=0), n_scaling, dim=m),
        ),
        "batch": (
            [128, 256] if quick else [128, 512, 2048, 8192],
            lambda b: training_steps(OnsagerNet(3, width=24, seed=0), n_scaling, batch=b),
        ),
        "width": (
            [8, 16] if quick else [16, 32, 64, 128],
            lambda w: training_steps(OnsagerNet(3, width=w, seed=0), n_scaling),
        ),
    }
    results.extend(
        scaling_entries(
            "OnsagerNet",
            f"the others at m = 3, batch {batch_size}, width 24 (one tanh layer, the book's default); "
            f"time of {n_scaling} Adam steps of derivative matching / {n_scaling}",
            sweeps,
            repeats,
            device,
            steps_per_call=n_scaling,
        )
    )
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
    for case, moments in (
        ("multiplicative noise, φ = J", lambda lr: sme.multiplicative_noise_moments(lr, T, 1.0)),
        ("additive noise, φ = x², x0 = 3", lambda lr: sme.additive_noise_moments(lr, T, 3.0)),
    ):
        table = [moments(lr) for lr in lrs]
        slopes = {m: sme.weak_error_slope(lrs, [abs(t["sgd"] - t[m]) for t in table]) for m in ("sme1", "sme2")}
        results.append(
            entry(
                "SME: weak-error slope, exact moments",
                f"{case}, η = 2^-3 … 2^-9, T = 2",
                None,
                None,
                "closed-form SGD moments",
                f"SME1 {slopes['sme1']:.2f} (theory 1), SME2 {slopes['sme2']:.2f} (theory 2)",
                "no sampling: exact expectations",
            )
        )

    # --- weak-error slopes by Monte Carlo, against a backward-Kolmogorov solver --------------------------
    problem = sme.toy_problem("logcosh")
    x_start = torch.tensor([2.0], dtype=torch.float64)
    mc_lrs = 2.0 ** -np.arange(1, 4 if quick else 6)
    n_paths = 20_000 if quick else 400_000

    def phi(x):
        return x**2

    def kolmogorov(lr, order):
        return sme.sde_expectation_1d(
            problem.sme_drift(lr, order),
            problem.sme_diffusion(lr),
            phi,
            2.0,
            T,
            domain=(-6.0, 8.0),
            n_grid=1401,
            time_steps=200,
        )

    def simulate():
        finals = [
            sme.sgd_paths(
                problem.stochastic_gradient, x_start, lr, round(T / lr), n_paths=n_paths, seed=10 + i, device=device
            )
            for i, lr in enumerate(mc_lrs)
        ]
        return [sme.monte_carlo_mean(phi(final[:, 0]).cpu().numpy()) for final in finals]

    t_sgd, moments = timed(simulate, device)
    t_kolmogorov, sme_values = timed(lambda: [(kolmogorov(lr, 1), kolmogorov(lr, 2)) for lr in mc_lrs], torch.device("cpu"))
    sgd_mean, sgd_error = [m for m, _ in moments], [e for _, e in moments]
    sgd_mean, sgd_error, sme_values = np.array(sgd_mean), np.array(sgd_error), np.array(sme_values)
    slopes = []
    for k, label in enumerate(("SME1", "SME2")):
        errors = np.abs(sgd_mean - sme_values[:, k])
        resolved = errors > 3 * sgd_error
        slope = sme.weak_error_slope(mc_lrs[resolved], errors[resolved]) if resolved.sum() >= 2 else float("nan")
        slopes.append(f"{label} {slope:.2f} ({int(resolved.sum())} of {len(mc_lrs)} points above 3 s.e.)")
    path_steps = n_paths * sum(round(T / lr) for lr in mc_lrs)
    results.append(
        entry(
            "SME: weak-error slope, Monte Carlo",
            f"log-cosh loss, x0 = 2, φ = x², η = 1/2 … 1/{round(1 / mc_lrs[-1])}, {n_paths} SGD paths each",
            t_sgd,
            t_kolmogorov,
            "backward-Kolmogorov solver (Crank–Nicolson, 1401 points)",
            ", ".join(slopes) + " (theory 1 and 2)",
            f"one run each; SGD simulation {1e9 * t_sgd.median / path_steps:.3g} ns per path-step; reference time = "
            "SME1 + SME2 solves",
        )
    )

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

    t_ours, t_ref, x_ours, x_ref = measure_pair(ours_euler, numpy_euler, repeats, device)
    m_ours = sme.monte_carlo_mean(phi(x_ours[:, 0]).cpu().numpy())
    m_ref = sme.monte_carlo_mean(phi(x_ref[:, 0]))
    results.append(
        entry(
            "SME: time per path-step, Euler–Maruyama",
            f"SME2 of the log-cosh loss, η = 1/4, {paths} paths × {steps} steps",
            t_ours,
            t_ref,
            "numpy, same scheme",
            compare(t_ours, t_ref),
            f"{1e9 * t_ours.median / (paths * steps):.3g} ns vs {1e9 * t_ref.median / (paths * steps):.3g} ns per "
            "path-step (the same drift and diffusion functions on both sides); "
            f"E s_T² = {m_ours[0]:.4f} ± {m_ours[1]:.4f} vs {m_ref[0]:.4f} ± {m_ref[1]:.4f}",
        )
    )

    sgd_steps = round(T / lr) * 8

    def ours_sgd():
        return sme.sgd_paths(problem.stochastic_gradient, x_start, lr / 8, sgd_steps, n_paths=paths, seed=4, device=device)

    def numpy_sgd():
        rng = np.random.default_rng(4)
        x = np.full((paths, 1), 2.0)
        for _ in range(sgd_steps):
            x = x - lr / 8 * np.tanh(x - (2.0 * rng.integers(0, 2, size=x.shape) - 1.0))
        return x

    t_ours, t_ref, _, _ = measure_pair(ours_sgd, numpy_sgd, repeats, device)
    results.append(
        entry(
            "SME: time per path-step, SGD simulation",
            f"log-cosh loss, η = 1/32, {paths} paths × {sgd_steps} steps",
            t_ours,
            t_ref,
            "numpy, same update",
            compare(t_ours, t_ref),
            f"{1e9 * t_ours.median / (paths * sgd_steps):.3g} ns vs {1e9 * t_ref.median / (paths * sgd_steps):.3g} ns "
            "per path-step",
        )
    )

    noise = torch.empty(paths, 1, dtype=torch.float64, device=device)
    noise_np, rng = np.empty((paths, 1)), np.random.default_rng(5)
    generator = torch.Generator(device=device).manual_seed(5)
    t_torch, t_numpy, _, _ = measure_pair(
        lambda: [noise.normal_(generator=generator) for _ in range(steps)],
        lambda: [rng.standard_normal(out=noise_np) for _ in range(steps)],
        repeats,
        device,
    )
    results.append(
        entry(
            "SME: the Gaussian increments alone",
            f"{paths} paths × {steps} steps, float64",
            t_torch,
            t_numpy,
            "numpy Generator.standard_normal",
            compare(t_torch, t_numpy, "torch.Tensor.normal_"),
            f"{1e9 * t_torch.median / (paths * steps):.3g} ns vs {1e9 * t_numpy.median / (paths * steps):.3g} ns per "
            "number: the part of an Euler–Maruyama step that the library cannot make faster without changing the "
            "random stream (and so every stored result); the rest of the step is the drift and diffusion",
        )
    )

    def ours_weak2():
        return sme.sde_paths(drift, diffusion, x_start, T, steps, n_paths=paths, scheme="weak2", seed=3, device=device)

    t_weak2, t_solver, x_weak2, exact = measure_pair(ours_weak2, lambda: kolmogorov(lr, 2), repeats, device)
    m_weak2 = sme.monte_carlo_mean(phi(x_weak2[:, 0]).cpu().numpy())
    results.append(
        entry(
            "SME: weak-order-2 Monte Carlo vs Kolmogorov solver",
            f"SME2 of the log-cosh loss, η = 1/4, E s_T², {paths} paths × {steps} steps",
            t_weak2,
            t_solver,
            "backward-Kolmogorov solver (1401 points, 200 steps)",
            f"|MC − solver| = {abs(m_weak2[0] - exact):.2g} (MC standard error {m_weak2[1]:.2g}); "
            + compare(t_weak2, t_solver, "Monte Carlo"),
            f"MC {m_weak2[0]:.5f}, solver {exact:.5f}; {1e9 * t_weak2.median / (paths * steps):.3g} ns per path-step",
        )
    )
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
        "Adam (lr 0.01)": dict(
            memories=[2.0, 3.0] if quick else [2.0, 3.0, 4.0, 5.0],
            seeds=range(2 if quick else 5),
            steps=400 if quick else 6000,
            optimizer="adam",
            lr=1e-2,
        ),
        "gradient descent (lr 0.02)": dict(
            memories=[1.5, 2.0] if quick else [1.5, 2.0, 2.5, 3.0, 3.5, 4.0],
            seeds=range(2 if quick else 3),
            steps=400 if quick else 3000,
            optimizer="gd",
            lr=0.02,
        ),
    }
    for name, sweep in sweeps.items():
        memories, seeds = sweep["memories"], list(sweep["seeds"])
        seconds, runs = timed(
            lambda: train_diagonal_rnn(
                memories,
                seeds=seeds,
                lr=sweep["lr"],
                m=16,
                optimizer=sweep["optimizer"],
                steps=sweep["steps"],
                stop_when_escaped=True,
                device=device,
            ),
            device,
        )
        escape = escape_iterations(runs.losses, memories)[:, 0]
        median = np.median(escape, axis=1)
        found = np.isfinite(median)
        rate = np.polyfit(np.array(memories)[found], np.log(median[found]), 1)[0] if found.sum() >= 2 else float("nan")
        listing = ", ".join(f"t0 = {t:g}: {'—' if not np.isfinite(v) else int(v)}" for t, v in zip(memories, median))
        results.append(
            entry(
                "Plateaus: escape iterations against memory",
                f"diagonal linear RNN, m = 16, closed-form risk, {name}, "
                f"{len(seeds)} seeds, at most {sweep['steps']} steps (one run)",
                seconds,
                None,
                "—",
                f"median escape step grows like exp({rate:.2f} t0)",
                f"median escape steps {listing}",
            )
        )

    # --- time per iteration: closed form (one run and many at once) against sampled sequences -----------
    n_iterations = 200 if quick else 2000
    n_sampled = 20 if quick else 200
    t_one, t_sampled, _, _ = measure_pair(
        lambda: train_diagonal_rnn([3.0], seeds=[0], steps=n_iterations, device=device),
        lambda: train_tanh_rnn(3.0, width=16, steps=n_sampled, lr=1e-2, seed=0, device=device),
        repeats,
        device,
    )
    t_one, t_sampled = t_one.scaled(1 / n_iterations), t_sampled.scaled(1 / n_sampled)
    many = 4 if quick else 64
    t_many = measure(
        lambda: train_diagonal_rnn([3.0], seeds=range(many), steps=n_iterations, device=device), repeats, device
    )[0].scaled(1 / n_iterations)
    tanh_memories = [1.0] if quick else [1.0, 3.0, 5.0]
    tanh_steps = 40 if quick else 600
    reached = []
    for memory in tanh_memories:
        history = train_tanh_rnn(memory, width=16, steps=tanh_steps, lr=1e-2, seed=0, device=device).history
        smooth = np.convolve(history, np.ones(20) / 20, mode="valid") if history.size >= 20 else history
        below = np.nonzero(smooth < 0.1)[0]
        reached.append(f"t0 = {memory:g}: {below[0] + min(20, history.size) if below.size else 'not'}")
    results.append(
        entry(
            "Plateaus: time per iteration, closed-form vs sampled trainer",
            "closed form: diagonal linear RNN, m = 16, one run; sampled: tanh RNN, 16 hidden, batch 32 × length 40",
            t_one,
            t_sampled,
            "sampled trainer (train_tanh_rnn)",
            compare(t_one, t_sampled, "closed form"),
            f"time per iteration; closed form with {many} runs at once: {1e6 * t_many.median:.3g} µs per step = "
            f"{1e6 * t_many.median / many:.3g} µs per run-step; sampled trainer timed on t0 = 3, {n_sampled} steps per "
            "run; one 600-step run each: step at which the 20-step average loss first falls below 0.1 — "
            + ", ".join(reached)
            + f" (of {tanh_steps})",
        )
    )
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


def _seconds(value: Timing | float | None) -> str:
    if value is None:
        return "—"
    return str(value) if isinstance(value, Timing) else f"{value:.4g}"


def gpu_section(text: str) -> str | None:
    """The block between the GPU markers of an existing RESULTS.md (markers included), or ``None``."""
    start, end = text.find(GPU_SECTION_START), text.find(GPU_SECTION_END)
    if start < 0 or end < start:
        return None
    return text[start : end + len(GPU_SECTION_END)]


def replace_gpu_section(text: str, section: str) -> str:
    """``text`` with its GPU block replaced by ``section`` (given without markers), or with it appended."""
    block = f"{GPU_SECTION_START}\n{section.strip()}\n{GPU_SECTION_END}"
    old = gpu_section(text)
    if old is not None:
        return text.replace(old, block)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def sections(text: str) -> dict[str, dict]:
    """The sections of a RESULTS.md: ``{name: {"schema": int, "code": str, "text": str}}`` (text with its markers)."""
    found = {}
    for match in SECTION_START.finditer(text):
        name = match["name"]
        end_marker = f"<!-- end section {name} -->"
        end = text.find(end_marker, match.end())
        if end < 0:
            continue
        found[name] = {
            "schema": int(match["schema"]),
            "code": match["code"],
            "text": text[match.start() : end + len(end_marker)],
        }
    return found


def load_average() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def render_section(
    name: str,
    results: list[dict],
    device: torch.device,
    repeats: int,
    load: tuple[str, str],
    cpu_seconds: float,
    quick: bool = False,
) -> str:
    """One section of RESULTS.md: its stamp, how and where it was measured, the table."""
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    clock = "wall time, synchronised" if device.type == "cuda" else "process CPU time (`time.process_time`)"
    cores = os.cpu_count() or 1
    lines = [
        f"<!-- section {name} schema {SCHEMA} code {code_digest(name)} -->",
        f"## {TITLES.get(name, name)}",
        "",
        f"Written {datetime.date.today().isoformat()} by `python3 benchmarks/run.py --rows {name}` "
        f"({cpu_seconds:.0f} s of CPU). Times in seconds: median [min–max] of {repeats} runs after a warm-up, "
        f'{clock}; "one run": a whole training or simulation run, timed once.',
        "",
        f"- Machine: {machine_description()}; device: {device.type}{gpu}; torch threads: {torch.get_num_threads()}",
        f"- Load average (1 / 5 / 15 min) at start: {load[0]}; at end: {load[1]} — with {cores} cores, a load above "
        f"{cores} means the machine was shared with other work while this section ran (CPU times are affected "
        "less than wall times, but not at all only on a quiet machine)",
        f"- Packages: {versions()}; Python {platform.python_version()}",
        "",
        "| row | setting | mldyn_lite (s) | reference | reference (s) | verdict | note |",
        "|---|---|---:|---|---:|---|---|",
    ]
    if quick:
        lines.insert(3, QUICK + "\n")
    for r in results:
        cells = [
            r["row"],
            r["setting"],
            _seconds(r["mldyn_lite"]),
            r["reference_name"],
            _seconds(r["reference"]),
            r["verdict"],
            r["note"],
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines.append(f"<!-- end section {name} -->")
    return "\n".join(lines)


QUICK = "**Quick sizes (`--quick`): a check that every row runs, not results.**"
HEADER = f"""# Benchmark results

{SCHEMA_LINE}
Written by `benchmarks/run.py` (schema {SCHEMA}), one section per `--rows` name; each section says when, where
and under what load it ran. How to read the times:

- **median [min–max]** of the stated number of runs (at least {MIN_REPEATS}) after one warm-up run, in **process
  CPU time** (`time.process_time`, one torch thread): other processes on a shared machine inflate it far less than
  wall-clock time. On a GPU: synchronised wall time.
- **Ratios** ("1.05× slower") divide the medians of two functions whose runs were **interleaved in the same
  process** (A B, B A, …), so both saw the same load.
- **"one run"**: a whole training or simulation run, too long to repeat, timed once in CPU time; no ratio is taken
  from such runs.
- **Scaling rows**: the time of one training step at four or more sizes, the mldyn_lite and reference columns
  holding the smallest and the largest; the fitted exponent is the least-squares slope of log(time) against
  log(size) over all points.

The accuracy of the committor network at its default settings (d = 2 and 10, three seeds, 60 s of CPU) is
measured by `benchmarks/committor_defaults.py` in `COMMITTOR_DEFAULTS.md`.
"""


def render(
    results: dict[str, list[dict]],
    device: torch.device,
    repeats: int,
    quick: bool = False,
    previous: str | None = None,
    loads: dict[str, tuple[str, str]] | None = None,
    cpu_seconds: dict[str, float] | None = None,
) -> str:
    """RESULTS.md: the header, every section (new ones from ``results``, the others kept from ``previous`` when
    they are current), the GPU section of ``previous``."""
    old = sections(previous) if previous else {}
    parts = [HEADER]
    if quick:
        parts.append(QUICK + "\n")
    for name in ROWS:
        if name in results:
            load = (loads or {}).get(name, ("unknown", "unknown"))
            parts.append(
                render_section(name, results[name], device, repeats, load, (cpu_seconds or {}).get(name, 0.0), quick) + "\n"
            )
        elif name in old and old[name]["schema"] == SCHEMA and old[name]["code"] == code_digest(name):
            parts.append(old[name]["text"] + "\n")
        elif name in old:
            parts.append(
                f"## {TITLES.get(name, name)}\n\nStale: written by other code; run "
                f"`python3 benchmarks/run.py --rows {name}`.\n"
            )
    text = "\n".join(parts)
    section = gpu_section(previous) if previous else None
    return replace_gpu_section(
        text, GPU_SECTION_PLACEHOLDER if section is None else section[len(GPU_SECTION_START) : -len(GPU_SECTION_END)]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; prints the table and writes only to --output")
    parser.add_argument("--output", type=Path, default=None, help="default: benchmarks/RESULTS.md (none with --quick)")
    args = parser.parse_args(argv)
    if args.repeats < (1 if args.quick else MIN_REPEATS):
        parser.error(f"--repeats must be >= {MIN_REPEATS} (>= 1 with --quick)")
    from mldyn_lite import get_device, set_threads

    set_threads(args.threads)
    device = get_device(args.device)
    output = args.output if args.output is not None or args.quick else RESULTS
    results, loads, cpu = {}, {}, {}
    for name in args.rows:
        print(f"running {name} … (load average {load_average()})", flush=True)
        start, load = time.process_time(), load_average()
        results[name] = ROWS[name](device, args.repeats, quick=args.quick)
        cpu[name] = time.process_time() - start
        loads[name] = (load, load_average())
        print(f"  {name}: {cpu[name]:.1f} s of CPU", flush=True)
    previous = output.read_text() if output is not None and output.exists() else None
    text = render(results, device, args.repeats, args.quick, previous, loads, cpu)
    if output is not None:
        output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
