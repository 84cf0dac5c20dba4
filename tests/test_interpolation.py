"""mldyn_lite.interpolation: the rate of 1-D flows and universal interpolation by control (notebook ch2/02).

The claims use the notebook's set-ups (targets, sizes, seeds, families); the unit tests check the hinge
flows against their closed form and against numpy's piecewise linear interpolation.
"""

import math

import numpy as np
import pytest
import torch

from mldyn_lite import flows, interpolation

SIZES = [4, 8, 16, 32, 64]


def smooth_target(x):
    return x + 0.1 * torch.sin(2 * math.pi * x)


def rough_target(x):
    return x + (x - 1 / 3) * (x - 1 / 3).abs().sqrt()


# --- the construction --------------------------------------------------------------------------------------


def test_one_hinge_piece_is_its_closed_form():
    x = torch.linspace(-1, 2, 301, dtype=torch.float64)
    for rate, tau in [(1.0, 0.7), (-1.0, 1.3)]:
        controls = interpolation.HingeControls(
            torch.tensor([0.4], dtype=torch.float64),
            torch.tensor([rate], dtype=torch.float64),
            torch.tensor([tau], dtype=torch.float64),
            0.0,
        )
        exact = interpolation.hinge_map(x, 0.4, rate * tau)
        assert (interpolation.hinge_flow(controls, x) - exact).abs().max().item() < 1e-6  # RK4, steps <= 0.05
        assert controls.horizon == pytest.approx(tau)


def test_hinge_flow_is_the_piecewise_linear_interpolant():
    gen = torch.Generator().manual_seed(3)
    knots = torch.linspace(-0.5, 1.5, 7, dtype=torch.float64)
    values = torch.cumsum(0.2 + torch.rand(7, generator=gen, dtype=torch.float64), 0) - 1.0
    controls = interpolation.hinge_controls(knots, values)
    grid = torch.linspace(-0.5, 1.5, 1001, dtype=torch.float64)
    reference = np.interp(grid.numpy(), knots.numpy(), values.numpy())
    assert np.abs(interpolation.hinge_flow(controls, grid).numpy() - reference).max() < 1e-6
    assert controls.pieces == 6
    slopes = np.diff(values.numpy()) / np.diff(knots.numpy())
    expected_T = np.abs(np.diff(np.log(slopes))).sum() + abs(np.log(slopes[0])) + abs(values[0].item() + 0.5)
    assert controls.horizon == pytest.approx(expected_T)


def test_hinge_flow_follows_dtype_and_device_of_input():
    controls = interpolation.hinge_controls(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, 0.2, 1.0]))
    out = interpolation.hinge_flow(controls, torch.linspace(0, 1, 5))
    assert out.dtype == torch.float32 and out.device.type == "cpu"


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="values must be strictly increasing"):
        interpolation.hinge_controls(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="same length"):
        interpolation.hinge_controls(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="knots"):
        interpolation.hinge_controls([0.0, 1.0], torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="sizes"):
        interpolation.flow_rate(smooth_target, [8])
    with pytest.raises(TypeError, match="target"):
        interpolation.flow_rate(3.0, [4, 8])
    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="targets"):
        interpolation.steer(x, torch.zeros(3, 2, dtype=torch.float64), pieces=2)
    with pytest.raises(ValueError, match="optimizer"):
        interpolation.steer(x, x, pieces=2, optimizer="bfgs")
    with pytest.raises(ValueError, match="pieces"):
        interpolation.steer(x, x, pieces=0)


def test_control_family_size():
    assert interpolation.control_family_size(2, 8) == 18
    assert interpolation.control_family_size(3, 4) == 27
    assert interpolation.control_family_size(1, 8) == 9


# --- claims: the rate in one dimension --------------------------------------------------------------------


@pytest.mark.claim(
    "ch2-flow-rate-smooth",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-rate-1d",
    statement="Hinge flows with L pieces approximate the smooth increasing target x + 0.1 sin 2 pi x with sup "
    "error below ||F''|| L^-2 / 8 (no fitted constant); measured slope -1.88 over L = 4..64, predicted -2",
    number="-1.88",
    tolerance="error <= bound at every L, error >= bound / 2 for L >= 16, |slope + 2| <= 0.15",
)
def test_smooth_target_rate():
    rate = interpolation.flow_rate(smooth_target, SIZES)
    bound = [0.4 * math.pi**2 / (8 * L**2) for L in SIZES]
    assert all(e <= b for e, b in zip(rate.errors, bound))
    assert all(e >= b / 2 for e, b, L in zip(rate.errors, bound, SIZES) if L >= 16)
    assert abs(rate.slope + 2) <= 0.15


@pytest.mark.claim(
    "ch2-flow-rate-rough",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-rate-1d",
    statement="For x + (x - 1/3)|x - 1/3|^(1/2), whose derivative is 1/2-Hoelder, the hinge-flow error falls like "
    "L^-1.5: measured slope -1.5, predicted -1.5",
    number="-1.5",
    tolerance="|slope + 1.5| <= 0.1 over L = 4..64",
)
def test_rough_target_rate():
    assert abs(interpolation.flow_rate(rough_target, SIZES).slope + 1.5) <= 0.1


@pytest.mark.claim(
    "ch2-flow-horizon",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-rate-1d",
    statement="The time horizon of the hinge flows of the smooth target grows with L towards "
    "TV(log F*') + |log F*'(0)| = 3.44 and stays below it",
    number="3.44",
    tolerance="T increasing in L, T <= 3.44 + 1e-3 and T(L=64) >= 3.44 - 0.05",
)
def test_horizon_stays_bounded():
    horizons = interpolation.flow_rate(smooth_target, SIZES).horizons
    x = torch.linspace(0, 1, 100001, dtype=torch.float64)
    log_slope = torch.log(1 + 0.2 * math.pi * torch.cos(2 * math.pi * x))
    limit = (log_slope.diff().abs().sum() + log_slope[0].abs()).item()
    assert round(limit, 2) == 3.44
    assert all(a < b for a, b in zip(horizons, horizons[1:]))
    assert max(horizons) <= limit + 1e-3 and horizons[-1] >= limit - 0.05


@pytest.mark.claim(
    "ch2-flow-rate-exercise",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ex-ch2-rate-exponent",
    statement="With an alpha-Hoelder derivative, alpha = 1/4, the hinge-flow error falls like L^-(1 + alpha): "
    "measured slope -1.25",
    number="-1.25",
    tolerance="|slope + 1.25| <= 0.1 over L = 4..64",
)
def test_rate_follows_hoelder_exponent():
    rate = interpolation.flow_rate(lambda x: x + (x - 1 / 3) * (x - 1 / 3).abs() ** 0.25, SIZES)
    assert abs(rate.slope + 1.25) <= 0.1


# --- claims: interpolation by control ----------------------------------------------------------------------


def shuffled_grid(N, gen):
    u = torch.linspace(-1, 1, N, dtype=torch.float64)
    return torch.stack([u[torch.randperm(N, generator=gen)], u[torch.randperm(N, generator=gen)]], dim=1)


@pytest.mark.claim(
    "ch2-interpolation-2d",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-interpolation-demo",
    statement="In d = 2 one common piecewise constant control of 2N + 2 shear fields steers N = 4, 8, 16, 32 points "
    "to N targets in arbitrary order; largest distance to a target 4.7e-05 (N = 32), the same with RK4",
    number="4.7e-05",
    tolerance="max_i |x_T - y| < 1e-3 for every N, Euler and RK4 (16 steps per piece) alike",
)
def test_points_are_steered_to_targets_in_the_plane():
    gen = torch.Generator().manual_seed(0)
    for N in (4, 8, 16, 32):
        starts, targets = shuffled_grid(N, gen), shuffled_grid(N, gen)
        result = interpolation.steer(
            starts,
            targets,
            pieces=2,
            T=1.0,
            centers=np.linspace(-1, 1, N).tolist(),
            sharpness=(N - 1) / 2,
            method="euler",
            iterations=2,
        )
        fine = interpolation.steered_flow(result, starts, steps_per_piece=16, method="rk4")
        assert result.max_error < 1e-3
        assert (fine - targets).norm(dim=1).max().item() < 1e-3
        assert result.max_error < 0.01 * (starts - targets).norm(dim=1).max().item()


@pytest.mark.claim(
    "ch2-interpolation-1d",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-interpolation-1d",
    statement="In d = 1 the same controlled ODE cannot reverse 8 points: the optimised mean square error sits on "
    "the isotonic bound (ratio 1.0001) and never below it",
    number="1.0001",
    tolerance="bound <= mse <= 1.01 bound; bound > 0.4",
)
def test_reversal_is_out_of_reach_in_one_dimension():
    line = torch.linspace(-1, 1, 8, dtype=torch.float64)[:, None]
    result = interpolation.steer(
        line,
        -line,
        pieces=2,
        T=1.0,
        centers=np.linspace(-1, 1, 8).tolist(),
        sharpness=3.5,
        steps_per_piece=4,
        init="zero",
        iterations=6,
    )
    bound = flows.isotonic_error(line, -line)
    assert bound > 0.4
    assert bound * (1 - 1e-9) <= result.mse <= 1.01 * bound
    path = interpolation.steered_flow(result, line, return_path=True)[:, :, 0]
    assert bool((path.diff(dim=1) > 0).all())  # the trajectories never cross


def test_steering_path_shape_and_resolved_flow():
    gen = torch.Generator().manual_seed(5)
    starts, targets = shuffled_grid(6, gen), shuffled_grid(6, gen)
    result = interpolation.steer(
        starts,
        targets,
        pieces=3,
        T=1.5,
        centers=np.linspace(-1, 1, 6).tolist(),
        sharpness=2.5,
        method="euler",
        iterations=3,
        seed=1,
    )
    path = interpolation.steered_flow(result, starts, return_path=True)
    assert path.shape == (4, 6, 2)
    assert torch.allclose(path[-1], interpolation.steered_flow(result, starts))
    assert result.max_error < 1e-3
