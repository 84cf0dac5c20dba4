"""Claims of notebook 1.3 (three kinds of interaction), asserted through the package."""

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from mldyn_lite.flows import rk4_flow
from mldyn_lite.memory import fit_exponential_sum
from mldyn_lite.vector_fields import (
    central_differences,
    evaluate_polynomial_vector_field,
    fit_polynomial_vector_field,
    monomial_library,
)


def wiggly_field(t, x):
    return torch.sin(3 * x) * np.cos(2 * t) + 0.5 * torch.sin(5 * x + t)


@pytest.mark.claim(
    "ch1-1d-flow-increasing",
    page="notebooks/ch1/03_three_interactions",
    anchor="ch1-via-flows",
    statement=(
        "A one-dimensional flow map preserves order: its smallest increment on the grid is 0.0002 > 0, so y ="
        " -x is out of reach"
    ),
    number="0.0002",
    tolerance="smallest increment > 1e-4; misfit to y = -x > 0.5",
)
def test_one_dimensional_flow_map_is_strictly_increasing():
    x0 = torch.linspace(-2, 2, 401, dtype=torch.float64)[:, None]
    flow_map = rk4_flow(wiggly_field, x0, T=1.5, steps=300)[:, 0]
    increments = torch.diff(flow_map)
    assert increments.min() > 1e-4  # notebook: smallest increment 2.0e-4
    # a decreasing target such as y = -x is therefore out of reach: the misfit stays large
    assert torch.mean((flow_map + x0[:, 0]) ** 2) > 0.5


LAGS = np.linspace(0, 20, 2001)


@pytest.mark.claim(
    "ch1-delayed-bump-fit",
    page="notebooks/ch1/03_three_interactions",
    anchor="ch1-for-memory",
    statement=(
        "Sums of decaying exponentials with fixed real rates: one unit represents e^{-s} exactly, while 16 "
        "log-spaced rates leave a relative error of 0.309 on the delayed bump e^{-(s-6)^2}"
    ),
    number="0.309",
    tolerance="exponential < 1e-6 with 16 rates; bump > 0.25 with 16; the bump error falls with m",
)
def test_exponential_kernel_needs_one_unit_and_a_delay_does_not_fit_with_sixteen():
    exponential, bump = np.exp(-LAGS), np.exp(-((LAGS - 6) ** 2))
    assert fit_exponential_sum(LAGS, exponential, [1.0])[2] < 1e-12
    sixteen = np.logspace(-1, 1, 16)
    assert fit_exponential_sum(LAGS, exponential, sixteen)[2] < 1e-6
    assert fit_exponential_sum(LAGS, bump, sixteen)[2] > 0.25
    errors = [fit_exponential_sum(LAGS, bump, np.logspace(-1, 1, m))[2] for m in (2, 4, 8, 16)]
    assert all(a > b for a, b in zip(errors, errors[1:]))  # more units help, slowly


def test_fit_exponential_sum_validates():
    with pytest.raises(ValueError, match="rates"):
        fit_exponential_sum(LAGS, np.exp(-LAGS), [-1.0])
    with pytest.raises(ValueError, match="same shape"):
        fit_exponential_sum(LAGS, np.exp(-LAGS[:-1]), [1.0])
    with pytest.raises(ValueError, match="NaN"):
        fit_exponential_sum(LAGS, np.full_like(LAGS, np.nan), [1.0])


@pytest.mark.claim(
    "ch1-linear-field",
    page="notebooks/ch1/03_three_interactions",
    anchor="ch1-of-fields",
    statement=(
        "A linear vector field is recovered from one trajectory by central differences and least squares, "
        "largest coefficient error 1.6e-05"
    ),
    number="1.6e-05",
    tolerance="largest coefficient error < 1e-4",
)
def test_linear_vector_field_is_recovered_from_one_trajectory():
    matrix = np.array([[0.0, 1.0], [-1.0, -0.2]])
    times = np.linspace(0, 20, 2001)
    trajectory = solve_ivp(lambda t, x: matrix @ x, (0, 20), [2.0, 0.0], t_eval=times, rtol=1e-11, atol=1e-12).y.T
    coefficients, names = fit_polynomial_vector_field(times, trajectory, degree=1)
    assert names == ["1", "x1", "x2"]
    assert np.abs(coefficients[1:].T - matrix).max() < 1e-4  # notebook: 1.6e-05
    assert np.abs(coefficients[0]).max() < 1e-10
    field = evaluate_polynomial_vector_field(coefficients, 1, trajectory[:5])
    assert field == pytest.approx(trajectory[:5] @ matrix.T, abs=1e-3)


def test_central_differences_are_second_order():
    errors = []
    for n in (101, 201, 401):
        t = np.linspace(0, 1, n)
        _, derivative = central_differences(t, np.sin(t)[:, None])
        errors.append(np.abs(derivative[:, 0] - np.cos(t[1:-1])).max())
    assert errors[0] / errors[1] == pytest.approx(4, rel=0.05)


def test_monomial_library_and_validation():
    features, names = monomial_library(np.array([[2.0, 3.0]]), 2)
    assert names == ["1", "x1", "x2", "x1*x1", "x1*x2", "x2*x2"]
    assert features[0].tolist() == [1, 2, 3, 4, 6, 9]
    with pytest.raises(ValueError, match="uniformly"):
        central_differences(np.array([0.0, 0.1, 0.3]), np.zeros((3, 1)))
    with pytest.raises(TypeError, match="degree"):
        monomial_library(np.zeros((2, 2)), 1.5)


# --- exercise solutions -------------------------------------------------------------------------------


def test_solution_two_real_rates_fit_a_difference_of_exponentials_exactly():
    """Notebook 1.3, ex-ch1-kernel: `fit_exponential_sum` with rates [1, 2] fits e^{-s} - e^{-2s} "to machine
    precision"; for s e^{-s}, two real distinct rates give "only an approximate" fit."""
    assert fit_exponential_sum(LAGS, np.exp(-LAGS) - np.exp(-2 * LAGS), [1.0, 2.0])[2] < 1e-12
    for rates in ([1.0, 2.0], [0.9, 1.1]):
        assert fit_exponential_sum(LAGS, LAGS * np.exp(-LAGS), rates)[2] > 1e-4


@pytest.mark.claim(
    "ch1-noisy-fit",
    page="notebooks/ch1/03_three_interactions",
    anchor="ex-ch1-noisy-fit",
    statement=(
        "With noise 1e-3 the largest coefficient error is 7.5e-05 sampling every 0.01 and 0.0018 every 0.1; "
        "differencing error dominates at the coarse step, noise at the fine one"
    ),
    number="7.5e-05",
    tolerance="errors in (5e-5, 1e-4) and (1.5e-3, 2.1e-3); noise-free error x100 for dt x10",
)
def test_solution_noisy_fit_error_and_its_two_sources():
    """Notebook 1.3, ex-ch1-noisy-fit: with noise 1e-3 (rng seed 1) the largest coefficient error is 7.5e-5 when
    sampling every 0.01 and 0.0018 every 0.1. The O(dt^2) differencing error (noise-free: 1.6e-5 -> 1.6e-3, a
    factor 100 for dt x 10) does not average out and dominates at dt = 0.1; the noise dominates at dt = 0.01."""
    matrix = np.array([[0.0, 1.0], [-1.0, -0.2]])
    times = np.linspace(0, 20, 2001)
    trajectory = solve_ivp(lambda t, x: matrix @ x, (0, 20), [2.0, 0.0], t_eval=times, rtol=1e-11, atol=1e-12).y.T
    rng = np.random.default_rng(1)
    noisy, clean = {}, {}
    for step in (1, 10):
        sub_times, sub_traj = times[::step], trajectory[::step]
        data = sub_traj + 1e-3 * rng.standard_normal(sub_traj.shape)
        noisy[step] = np.abs(fit_polynomial_vector_field(sub_times, data, degree=1)[0][1:].T - matrix).max()
        clean[step] = np.abs(fit_polynomial_vector_field(sub_times, sub_traj, degree=1)[0][1:].T - matrix).max()
    assert 5e-5 < noisy[1] < 1e-4 and 1.5e-3 < noisy[10] < 2.1e-3
    assert clean[10] / clean[1] == pytest.approx(100, rel=0.05)  # second order in dt
    assert clean[1] < 0.5 * noisy[1]  # dt = 0.01: the noise dominates
    assert clean[10] > 0.5 * noisy[10]  # dt = 0.1: the truncation error dominates
