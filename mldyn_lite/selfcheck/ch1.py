r"""Self-checks of chapter 1.

* :func:`check_midpoint_flow` — ex-ch1-midpoint (notebook 1.2): the explicit midpoint residual
  network :math:`x_{n+1} = x_n + \delta f(t_n + \delta/2,\ x_n + \tfrac{\delta}{2} f(t_n, x_n))`;
* :func:`check_linear_field_fit` — ex-ch1-noisy-fit (notebook 1.3): least-squares fit of
  :math:`\dot x \approx \Xi^\top (1, x)` from central differences.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_callable
from ..numerics import generator as seeded_generator
from ._framework import CaseFailed, CheckResult, describe, diagnose, exercise_check, run_cases

__all__ = ["check_linear_field_fit", "check_midpoint_flow"]


# --- chapter 1 · notebook 1.2: the midpoint residual network -----------------------------------


def _midpoint(f, x0, T, steps):
    delta, x = T / steps, x0
    for n in range(steps):
        t = n * delta
        x = x + delta * f(t + delta / 2, x + delta / 2 * f(t, x))
    return x


def _midpoint_mistakes(f, x0, T, steps) -> list[tuple[torch.Tensor, str]]:
    """What the typical wrong midpoint networks return, with the hint for each."""
    delta = T / steps

    def loop(step):
        x = x0
        for n in range(steps):
            x = step(n * delta, x)
        return x

    return [
        (
            loop(lambda t, x: x + delta * f(t, x)),
            "this is forward Euler, x + δ f(t_n, x_n): evaluate f a second time, at the half step "
            "x_n + (δ/2) f(t_n, x_n), and use that slope for the full step",
        ),
        (
            loop(lambda t, x: x + delta * f(t + delta / 2, x + delta * f(t, x))),
            "the predictor goes a full step: the midpoint is x_n + (δ/2) f(t_n, x_n), half a step",
        ),
        (
            loop(lambda t, x: x + delta / 2 * f(t + delta / 2, x + delta / 2 * f(t, x))),
            "the update uses δ/2: the corrector moves a full step, x_{n+1} = x_n + δ f(midpoint)",
        ),
        (
            loop(lambda t, x: x + delta / 2 * (f(t, x) + f(t + delta, x + delta * f(t, x)))),
            "this is Heun's method (the trapezoidal rule), also second order but not the midpoint rule "
            "the exercise asks for: take one slope, at the half step",
        ),
        (
            loop(lambda t, x: x + delta * f(t, x + delta / 2 * f(t, x))),
            "the second evaluation of f uses the time t_n: the midpoint is at time t_n + δ/2",
        ),
        (
            loop(lambda t, x: x + delta * f(t + delta / 2, x + delta / 2 * f(t + delta / 2, x))),
            "the first evaluation of f is at time t_n + δ/2: the slope that predicts the midpoint is f(t_n, x_n)",
        ),
        (
            loop(lambda t, x: x + delta * f(t / delta + 0.5, x + delta / 2 * f(t / delta, x))),
            "f is evaluated at the layer index n instead of the time t_n = n δ",
        ),
    ]


def _check_midpoint_case(midpoint_flow, f, x0, T, steps):
    reference = _midpoint(f, x0, T, steps)
    original = x0.clone()
    got = midpoint_flow(f, x0, T, steps)
    if not torch.equal(x0, original):
        raise CaseFailed(
            "x0 unchanged",
            "x0 was modified in place",
            "write x = x + ... (a new tensor), not x += ..., so the caller's x0 stays as it was",
        )
    if not isinstance(got, torch.Tensor):
        raise CaseFailed(
            f"a torch.Tensor of shape {tuple(x0.shape)}",
            describe(got),
            "return the final state x_L as a tensor, like resnet_forward",
        )
    if got.shape != x0.shape:
        hint = (
            "return only the final state x_L, not the whole path"
            if got.ndim == x0.ndim + 1
            else "apply f to the whole batch: x has shape (batch, d), and so does x_L"
        )
        raise CaseFailed(f"shape {tuple(x0.shape)} (same as x0)", f"shape {tuple(got.shape)}", hint)
    if not torch.allclose(got, reference, rtol=1e-6, atol=1e-9):
        hint = diagnose(
            got,
            _midpoint_mistakes(f, x0, T, steps),
            "compare one step by hand: x_1 = x_0 + δ f(δ/2, x_0 + (δ/2) f(0, x_0)), with δ = T / steps",
        )
        raise CaseFailed(describe(reference), describe(got), hint)


@exercise_check("ex-ch1-midpoint")
def check_midpoint_flow(midpoint_flow) -> CheckResult:
    """Check ``midpoint_flow(f, x0, T, steps)``, the explicit midpoint residual network of notebook 1.2.

    ``f(t, x)`` takes a time and a batch ``x`` of shape ``(batch, d)``; the result is the final state,
    of the shape of ``x0``. Cases: one step and three steps on fresh random fields (autonomous, then
    time-dependent), and the order of convergence on a linear ODE with a known flow, which must be 2.
    """
    check_callable("midpoint_flow", midpoint_flow)
    generator = seeded_generator(2024)
    d = 3
    A = torch.randn(d, d, generator=generator, dtype=torch.float64) / np.sqrt(d)
    W = torch.randn(d, d, generator=generator, dtype=torch.float64)
    b = torch.randn(d, generator=generator, dtype=torch.float64)
    x0 = torch.randn(5, d, generator=generator, dtype=torch.float64)

    def autonomous(t, x):
        return torch.tanh(x @ W.T) @ A.T

    def time_dependent(t, x):
        return np.cos(2.0 * t) * torch.tanh(x @ W.T) @ A.T + np.sin(3.0 * t) * b

    def order_of_convergence():
        rotation = torch.tensor([[-0.3, 1.0, 0.0], [-1.0, -0.3, 0.0], [0.0, 0.0, -0.5]], dtype=torch.float64)
        exact = x0 @ torch.linalg.matrix_exp(2.0 * rotation).T  # flow of dx/dt = M x at T = 2
        steps = [8, 16, 32, 64]
        errors = []
        for n in steps:
            got = midpoint_flow(lambda t, x: x @ rotation.T, x0, 2.0, n)
            errors.append(float((torch.as_tensor(got) - exact).norm(dim=-1).max()))
        if not all(np.isfinite(errors)) or min(errors) <= 0:
            raise CaseFailed("finite, nonzero errors", f"errors {errors}", "check that the loop runs `steps` times")
        slope = float(np.polyfit(np.log(2.0 / np.array(steps)), np.log(errors), 1)[0])
        if abs(slope - 2.0) > 0.25:
            raise CaseFailed(
                "slope 2 (second order) on a log-log plot of error against δ",
                f"slope {slope:.2f} (errors {', '.join(f'{e:.2g}' for e in errors)})",
                "a slope near 1 means a first-order scheme: is the slope taken at the midpoint, and is δ = T / steps?",
            )

    return run_cases(
        "ex-ch1-midpoint",
        midpoint_flow,
        [
            (
                "one step (steps=1, T=0.4) of an autonomous field on a batch of 5 points in R^3",
                lambda: _check_midpoint_case(midpoint_flow, autonomous, x0, 0.4, 1),
            ),
            (
                "three steps (T=0.9) of a time-dependent field f(t, x) = cos(2t) A tanh(Wx) + sin(3t) b",
                lambda: _check_midpoint_case(midpoint_flow, time_dependent, x0, 0.9, 3),
            ),
            (
                "order of convergence on dx/dt = Mx, T=2, steps 8 to 64, against the exact flow e^{TM} x0",
                order_of_convergence,
            ),
        ],
    )


# --- chapter 1 · notebook 1.3: learning a linear vector field ----------------------------------


def _linear_system(d: int, seed: int, dt: float, n: int):
    """A stable linear system dx/dt = A x + b, its exact trajectory on a uniform grid, and Ξ = [b; Aᵀ]."""
    from scipy.linalg import expm

    rng = np.random.default_rng(seed)
    skew = rng.standard_normal((d, d))
    A = -0.3 * np.eye(d) + 0.8 * (skew - skew.T) / np.sqrt(d) + 0.2 * rng.standard_normal((d, d)) / np.sqrt(d)
    b = rng.standard_normal(d)
    generator = np.zeros((d + 1, d + 1))
    generator[:d, :d], generator[:d, d] = A, b
    z0 = np.append(rng.standard_normal(d), 1.0)
    times = dt * np.arange(n)
    step = expm(dt * generator)
    states = [z0]
    for _ in range(n - 1):
        states.append(step @ states[-1])
    trajectory = np.array(states)[:, :d]
    return times, trajectory, np.vstack([b, A.T])


def _fit_mistakes(times, trajectory) -> list[tuple[np.ndarray, str]]:
    dt = times[1] - times[0]

    def lstsq(states, derivatives, constant=True):
        features = np.column_stack([np.ones(len(states)), states]) if constant else states
        return np.linalg.lstsq(features, derivatives, rcond=None)[0]

    central = (trajectory[2:] - trajectory[:-2]) / (2 * dt)
    return [
        (
            lstsq(trajectory[:-1], np.diff(trajectory, axis=0) / dt),
            "these are forward differences (x_{k+1} - x_k)/Δt, first order in Δt: use central differences "
            "(x_{k+1} - x_{k-1})/(2Δt) at the interior snapshots",
        ),
        (
            lstsq(trajectory[1:], np.diff(trajectory, axis=0) / dt),
            "these are backward differences (x_k - x_{k-1})/Δt, first order in Δt: use central differences "
            "(x_{k+1} - x_{k-1})/(2Δt)",
        ),
        (lstsq(trajectory[1:-1], central * 2), "the central difference divides by 2Δt, not Δt: (x_{k+1} - x_{k-1})/(2Δt)"),
        (
            lstsq(trajectory[:-2], central),
            "the derivative at t_k is paired with the state x_{k-1}: pair it with x_k = trajectory[1:-1]",
        ),
        (
            lstsq(trajectory[2:], central),
            "the derivative at t_k is paired with the state x_{k+1}: pair it with x_k = trajectory[1:-1]",
        ),
        (
            lstsq(trajectory[1:-1], central * dt / 0.01),
            "the coefficients are scaled as if Δt were 0.01, the time step of the notebook: take "
            "Δt = times[1] - times[0] from the data",
        ),
    ]


def _check_fit_case(fit, times, trajectory, truth, tolerance):
    d = trajectory.shape[1]
    times_in, trajectory_in = times.copy(), trajectory.copy()
    got = fit(times_in, trajectory_in)
    if not (np.array_equal(times_in, times) and np.array_equal(trajectory_in, trajectory)):
        raise CaseFailed(
            "the inputs unchanged",
            "times or trajectory modified in place",
            "compute new arrays instead of writing into the inputs",
        )
    if isinstance(got, tuple) and len(got) == 2 and not isinstance(got[0], (int, float)):
        got = got[0]  # (coefficients, names), like fit_polynomial_vector_field, is fine
    try:
        got = np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got, dtype=float)
    except (TypeError, ValueError):
        raise CaseFailed(f"an array of shape {(d + 1, d)}", describe(got), "return the coefficient matrix Ξ") from None
    if got.shape != (d + 1, d):
        if got.shape == (d, d + 1):
            hint = "transposed: row i of Ξ belongs to feature i of (1, x_1, …, x_d), column j to dx_j/dt"
        elif got.shape == (d, d):
            hint = "the constant feature is missing: the features are (1, x_1, …, x_d)"
        else:
            hint = "Ξ has one row per feature (1, x_1, …, x_d) and one column per component of dx/dt"
        raise CaseFailed(f"shape {(d + 1, d)}", f"shape {got.shape}", hint)
    error = float(np.abs(got - truth).max())
    if not error <= tolerance:
        hint = diagnose(
            got,
            _fit_mistakes(times, trajectory),
            "estimate dx/dt by central differences at the interior snapshots, then solve the least-squares "
            "problem  min ‖Ψ Ξ - dx/dt‖ with Ψ = (1, x) at the same snapshots (np.linalg.lstsq)",
        )
        raise CaseFailed(
            f"Ξ = [b; Aᵀ] within {tolerance:g}: {describe(truth)}", f"largest error {error:.3g}: {describe(got)}", hint
        )


@exercise_check("ex-ch1-noisy-fit")
def check_linear_field_fit(fit_linear_field) -> CheckResult:
    """Check ``fit_linear_field(times, trajectory)`` of notebook 1.3.

    It must return the least-squares coefficients ``Ξ`` of shape ``(1 + d, d)`` of
    :math:`\\dot x \\approx \\Xi^\\top (1, x_1, \\dots, x_d)`, with derivatives from central differences
    (second order in Δt). Cases: fresh linear systems :math:`\\dot x = Ax + b` sampled exactly, in
    three dimensions with Δt = 0.025 and in one dimension with Δt = 0.05; the coefficients must match
    :math:`[b; A^\\top]` to the accuracy of central differences.
    """
    check_callable("fit_linear_field", fit_linear_field)
    times_3, trajectory_3, truth_3 = _linear_system(3, seed=11, dt=0.025, n=400)
    times_1, trajectory_1, truth_1 = _linear_system(1, seed=5, dt=0.05, n=200)
    return run_cases(
        "ex-ch1-noisy-fit",
        fit_linear_field,
        [
            (
                "a linear system dx/dt = Ax + b in R^3, 400 exact snapshots with Δt = 0.025",
                lambda: _check_fit_case(fit_linear_field, times_3, trajectory_3, truth_3, tolerance=2e-3),
            ),
            (
                "a scalar system dx/dt = ax + b (trajectory of shape (200, 1)), Δt = 0.05",
                lambda: _check_fit_case(fit_linear_field, times_1, trajectory_1, truth_1, tolerance=2e-3),
            ),
        ],
    )
