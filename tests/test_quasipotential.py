"""Claims of notebook 4.4 (quasipotentials), asserted through mldyn_lite.quasipotential."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from mldyn_lite import quasipotential as qp

S = np.linspace(0, 1, 61)


STRAIGHT = np.stack([-1 + S, 0 * S], 1)
BENT = np.stack([-1 + S, 0.3 * np.sin(np.pi * S)], 1)


def maier_stein_10(points):
    return qp.maier_stein_drift(points, 10.0)


@pytest.fixture(scope="module")
def known_fit():
    states, drift_samples = qp.simulate_increments(qp.rotating_double_well_drift, 5000, 10, dt=0.01, eps=1e-4, seed=0,
                                                   device="cpu")
    return states, drift_samples, qp.fit_decomposition(states, drift_samples, seed=0).model


def test_known_drift_has_the_stated_decomposition():
    x = qp.uniform_points(500, seed=1, device="cpu", dtype=torch.float64).requires_grad_(True)
    grad_u = torch.autograd.grad(qp.double_well_potential(x).sum(), x)[0]
    g = qp.rotating_double_well_drift(x, c=1.0) + grad_u
    assert torch.allclose(g, -torch.stack([grad_u[:, 1], -grad_u[:, 0]], 1))  # g = -c J grad U
    assert (grad_u * g).sum(1).abs().max() < 1e-12


def test_increment_noise_has_the_expected_size(known_fit):
    states, drift_samples, _ = known_fit
    noise = (drift_samples - qp.rotating_double_well_drift(states)).norm(dim=1).pow(2).mean().sqrt().item()
    assert noise == pytest.approx(math.sqrt(2 * 1e-4 / 0.01), rel=0.02)  # notebook: 0.142
    assert len(states) > 49_000


def test_decomposition_loss_matches_its_definition(known_fit):
    states, drift_samples, _ = known_fit
    torch.manual_seed(0)
    model = qp.DecompositionNet()
    x = states[:500].clone().requires_grad_(True)
    out = model.mlp(x)
    grad_u = torch.autograd.grad(out[:, 0].sum(), x)[0]
    g = out[:, 1:]
    scale = (grad_u**2).sum(1) + (g**2).sum(1) + 1e-2
    expected = (((drift_samples[:500] + grad_u - g) ** 2).sum(1).mean() + 3.0 * ((grad_u * g).sum(1) ** 2 / scale).mean()
                + 0.1 * (g**2).sum(1).mean())
    loss = qp.decomposition_loss(model, states[:500], drift_samples[:500], orthogonality=3.0, rotation=0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_learned_decomposition_of_the_known_system(known_fit):
    _, _, model = known_fit
    gx, gy = np.meshgrid(np.linspace(-1.5, 1.5, 61), np.linspace(-1, 1, 41))
    grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    assert qp.potential_error(model, grid, qp.double_well_potential(grid).numpy()) < 0.05  # notebook: 0.0238
    assert qp.orthogonality_residual(model, grid) < 0.05  # notebook: 0.0175
    with torch.no_grad():
        u = model.potential(torch.tensor([[-1.0, 0.0], [0.0, 0.0]])).numpy()
    assert 2 * (u[1] - u[0]) == pytest.approx(0.5, rel=0.05)  # notebook: 0.502

    # the escape path climbs along grad U + g: it follows the minimum action path
    def rhs(t, p):
        _, grad_u, g = model.parts(torch.tensor(p[None], dtype=torch.float32))
        return -(grad_u + g)[0].detach().numpy().astype(float)

    escape = solve_ivp(rhs, (0, 30.0), [-0.01, 0.0], rtol=1e-6, atol=1e-8, max_step=0.05).y.T[::-1]
    path, action = qp.minimum_action_path(qp.rotating_double_well_drift, STRAIGHT, rounds=20)
    assert action == pytest.approx(0.5, abs=1e-3)  # notebook: 0.5001 = 2 Delta U
    distance = np.min(np.linalg.norm(path[:, None] - escape[None], axis=2), axis=1).max()
    assert distance < 0.05  # notebook: 0.0194


def test_geometric_action_matches_its_definition():
    path = torch.tensor(STRAIGHT)
    step = path[1:] - path[:-1]
    force = qp.rotating_double_well_drift(0.5 * (path[1:] + path[:-1]))
    expected = (step.norm(dim=1) * force.norm(dim=1) - (step * force).sum(1)).sum()
    assert qp.geometric_action(qp.rotating_double_well_drift, path).item() == pytest.approx(expected.item())
    assert expected.item() == pytest.approx(0.6036, abs=1e-4)


def test_maier_stein_minimum_action_paths():
    gradient_case = qp.minimum_action_path(lambda p: qp.maier_stein_drift(p, 1.0), BENT, rounds=20)[1]
    assert gradient_case == pytest.approx(0.5, abs=1e-3)  # beta = 1: 2 Delta U of the potential
    path3, action3 = qp.minimum_action_path(lambda p: qp.maier_stein_drift(p, 3.0), BENT, rounds=20)
    assert action3 == pytest.approx(0.5, abs=1e-3) and np.abs(path3[:, 1]).max() < 1e-3  # notebook: on the axis
    path10, action10 = qp.minimum_action_path(maier_stein_10, BENT, rounds=20)
    assert action10 == pytest.approx(0.340, abs=0.002)  # notebook: 0.3402
    assert np.abs(path10[:, 1]).max() == pytest.approx(0.313, abs=0.01)


def test_maier_stein_decomposition_falls_short_at_this_budget():
    states, drift_samples = qp.simulate_increments(maier_stein_10, 5000, 10, dt=0.01, eps=1e-4, seed=0, device="cpu")
    model = qp.fit_decomposition(states, drift_samples, seed=0).model
    with torch.no_grad():
        u = model.potential(torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])).numpy()
    left, right = 2 * (u[1] - u[0]), 2 * (u[1] - u[2])
    assert 0.15 < left < 0.25  # notebook: 0.188, against the minimum action 0.340
    assert left < 0.8 * 0.340 and right < left  # notebook: right well 0.123
    assert qp.orthogonality_residual(model, qp.uniform_points(4000, seed=5, device="cpu")) < 0.05  # notebook: 0.0354


def test_validation():
    with pytest.raises(ValueError, match="points"):
        qp.double_well_potential(torch.zeros(3, 3))
    with pytest.raises(TypeError, match="points"):
        qp.maier_stein_drift(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="target"):
        qp.fit_decomposition(torch.zeros(10, 2), torch.zeros(9, 2))
    with pytest.raises(ValueError, match="steps"):
        qp.fit_decomposition(torch.zeros(10, 2), torch.zeros(10, 2), steps=0)
    with pytest.raises(ValueError, match="eps"):
        qp.simulate_increments(qp.rotating_double_well_drift, 10, 2, eps=-1.0)
    with pytest.raises(ValueError, match="box"):
        qp.uniform_points(10, box=((1.0, -1.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="initial_path"):
        qp.minimum_action_path(qp.rotating_double_well_drift, np.zeros((2, 2)))
    with pytest.raises(TypeError, match="model"):
        qp.potential_error("net", torch.zeros(3, 2), np.zeros(3))
    with pytest.raises(TypeError, match="drift"):
        qp.geometric_action(None, torch.zeros(3, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_agree():
    torch.manual_seed(0)
    model = qp.DecompositionNet()
    x = qp.uniform_points(400, seed=2, device="cpu")
    target = qp.rotating_double_well_drift(x)
    on_cpu = qp.decomposition_loss(model, x, target, rotation=0.1).item()
    on_gpu = qp.decomposition_loss(model.cuda(), x.cuda(), target.cuda(), rotation=0.1).item()
    assert on_gpu == pytest.approx(on_cpu, rel=1e-4)
    states, drift_samples = qp.simulate_increments(qp.rotating_double_well_drift, 5000, 10, seed=0, device="cuda")
    fit = qp.fit_decomposition(states, drift_samples, seed=0)
    grid = qp.uniform_points(2000, seed=3, device="cuda")
    assert qp.potential_error(fit.model, grid, qp.double_well_potential(grid).cpu().numpy()) < 0.05
    assert qp.orthogonality_residual(fit.model, grid) < 0.05
