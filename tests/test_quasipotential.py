"""Claims of notebook 4.6 (quasipotentials), asserted through mldyn_lite.quasipotential."""

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
    states, drift_samples = qp.simulate_increments(
        qp.rotating_double_well_drift, 5000, 10, dt=0.01, eps=1e-4, seed=0, device="cpu"
    )
    return states, drift_samples, qp.fit_decomposition(states, drift_samples, seed=0).model


def test_known_drift_has_the_stated_decomposition():
    x = qp.uniform_points(500, seed=1, device="cpu", dtype=torch.float64).requires_grad_(True)
    grad_u = torch.autograd.grad(qp.double_well_potential(x).sum(), x)[0]
    g = qp.rotating_double_well_drift(x, c=1.0) + grad_u
    assert torch.allclose(g, -torch.stack([grad_u[:, 1], -grad_u[:, 0]], 1))  # g = -c J grad U
    assert (grad_u * g).sum(1).abs().max() < 1e-12


@pytest.mark.claim(
    "ch4-increment-noise",
    page="notebooks/ch4/06_quasipotentials",
    anchor="ch4-quasipotentials",
    statement=("Finite-difference drift estimates carry noise of rms sqrt(2 eps / dt) = 0.142"),
    number="0.142",
    tolerance="within 2% of sqrt(2e-4 / 0.01)",
)
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
    expected = (
        ((drift_samples[:500] + grad_u - g) ** 2).sum(1).mean()
        + 3.0 * ((grad_u * g).sum(1) ** 2 / scale).mean()
        + 0.1 * (g**2).sum(1).mean()
    )
    loss = qp.decomposition_loss(model, states[:500], drift_samples[:500], orthogonality=3.0, rotation=0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.claim(
    "ch4-quasipotential-known",
    page="notebooks/ch4/06_quasipotentials",
    anchor="ch4-quasipotentials",
    statement=(
        "On the rotating double well the learned decomposition gives U within 3.3% (relative L2), "
        "orthogonality residual 0.0194, barrier 2 Delta U = 0.503 against 0.5, and an escape path within "
        "0.0235 of the minimum action path"
    ),
    number="0.503",
    tolerance=(
        "U error < 0.05; residual < 0.05; barrier within 5% of 0.5; minimum action within 1e-3 of 0.5; path distance < 0.05"
    ),
)
def test_learned_decomposition_of_the_known_system(known_fit):
    _, _, model = known_fit
    gx, gy = np.meshgrid(np.linspace(-1.5, 1.5, 61), np.linspace(-1, 1, 41))
    grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    assert qp.potential_error(model, grid, qp.double_well_potential(grid).numpy()) < 0.05  # notebook: 0.0331
    assert qp.orthogonality_residual(model, grid) < 0.05  # notebook: 0.0194
    with torch.no_grad():
        u = model.potential(torch.tensor([[-1.0, 0.0], [0.0, 0.0]])).numpy()
    assert 2 * (u[1] - u[0]) == pytest.approx(0.5, rel=0.05)  # notebook: 0.503

    # the escape path climbs along grad U + g: it follows the minimum action path
    def rhs(t, p):
        _, grad_u, g = model.parts(torch.tensor(p[None], dtype=torch.float32))
        return -(grad_u + g)[0].detach().numpy().astype(float)

    escape = solve_ivp(rhs, (0, 30.0), [-0.01, 0.0], rtol=1e-6, atol=1e-8, max_step=0.05).y.T[::-1]
    path, action = qp.minimum_action_path(qp.rotating_double_well_drift, STRAIGHT, rounds=20)
    assert action == pytest.approx(0.5, abs=1e-3)  # notebook: 0.5001 = 2 Delta U
    distance = np.min(np.linalg.norm(path[:, None] - escape[None], axis=2), axis=1).max()
    assert distance < 0.05  # notebook: 0.0235


@pytest.mark.claim(
    "ch4-gmam-straight-line",
    page="notebooks/ch4/06_quasipotentials",
    anchor="ch4-quasipotentials",
    statement=("The geometric action of the straight line from (-1, 0) to the saddle of the rotating double well is 0.6036"),
    number="0.6036",
    tolerance="|action - 0.6036| <= 1e-4",
)
def test_geometric_action_matches_its_definition():
    path = torch.tensor(STRAIGHT)
    step = path[1:] - path[:-1]
    force = qp.rotating_double_well_drift(0.5 * (path[1:] + path[:-1]))
    expected = (step.norm(dim=1) * force.norm(dim=1) - (step * force).sum(1)).sum()
    assert qp.geometric_action(qp.rotating_double_well_drift, path).item() == pytest.approx(expected.item())
    assert expected.item() == pytest.approx(0.6036, abs=1e-4)


@pytest.mark.claim(
    "ch4-maier-stein-map",
    page="notebooks/ch4/06_quasipotentials",
    anchor="ch4-maier-stein",
    statement=(
        "Minimum action from (-1, 0) to the saddle: 0.500 for beta = 1 and 3 (path on the axis), 0.3402 for "
        "beta = 10 (path bulging to |y| = 0.313)"
    ),
    number="0.3402",
    tolerance="|V - 0.5| <= 1e-3 (beta = 1, 3); |V - 0.340| <= 0.002 and max |y| within 0.01 of 0.313 (beta = 10)",
)
def test_maier_stein_minimum_action_paths():
    gradient_case = qp.minimum_action_path(lambda p: qp.maier_stein_drift(p, 1.0), BENT, rounds=20)[1]
    assert gradient_case == pytest.approx(0.5, abs=1e-3)  # beta = 1: 2 Delta U of the potential
    path3, action3 = qp.minimum_action_path(lambda p: qp.maier_stein_drift(p, 3.0), BENT, rounds=20)
    assert action3 == pytest.approx(0.5, abs=1e-3) and np.abs(path3[:, 1]).max() < 1e-3  # notebook: on the axis
    path10, action10 = qp.minimum_action_path(maier_stein_10, BENT, rounds=20)
    assert action10 == pytest.approx(0.340, abs=0.002)  # notebook: 0.3402
    assert np.abs(path10[:, 1]).max() == pytest.approx(0.313, abs=0.01)


@pytest.fixture(scope="module")
def maier_stein_data():
    return qp.simulate_increments(maier_stein_10, 5000, 10, dt=0.01, eps=1e-4, seed=0, device="cpu")


def _barriers(model):
    with torch.no_grad():
        u = model.potential(torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])).numpy()
    return 2 * (u[1] - u[0]), 2 * (u[1] - u[2])


@pytest.mark.claim(
    "ch4-maier-stein-learned",
    page="notebooks/ch4/06_quasipotentials",
    anchor="ch4-maier-stein",
    statement=(
        "On Maier-Stein (beta = 10) the learned barrier is 0.199 against the minimum action 0.340 (42% low): "
        "the 5% target is not met"
    ),
    number="0.199",
    tolerance="0.15 < barrier < 0.25; relative error > 5%; right well below left; orthogonality residual < 0.05",
)
def test_maier_stein_decomposition_falls_short_at_this_budget(maier_stein_data):
    model = qp.fit_decomposition(*maier_stein_data, seed=0).model
    left, right = _barriers(model)
    assert 0.15 < left < 0.25  # notebook: 0.199, against the minimum action 0.340
    assert abs(left / 0.340 - 1) > 0.05  # the 5% target is not met: the page says so
    assert left < 0.8 * 0.340 and right < left  # notebook: right well 0.143
    assert qp.orthogonality_residual(model, qp.uniform_points(4000, seed=5, device="cpu")) < 0.05  # notebook: 0.0385


@pytest.mark.claim(
    "ch4-maier-stein-remedies",
    page="notebooks/ch4/06_quasipotentials",
    anchor="ch4-maier-stein",
    statement=(
        "Neither remedy selects the quasipotential: a mirror-symmetric network gives 0.0587; a selection term"
        " gives 0.27 at kappa = 0.1 and 0.41 at kappa = 0.3, passing the reference 0.340 instead of levelling"
        " off, with orthogonality residuals 0.213 and 0.135"
    ),
    number="0.41",
    tolerance=(
        "mirror < 0.1; kappa = 0.1 below 0.95 x 0.340 and kappa = 0.3 above 1.05 x 0.340; difference > 0.1; residuals > 0.1"
    ),
)
def test_maier_stein_remedies_do_not_select_the_quasipotential(maier_stein_data):
    anchors = ((-1.0, 0.0), (1.0, 0.0))
    mirror = qp.fit_decomposition(*maier_stein_data, seed=0, mirror=True).model
    assert _barriers(mirror)[0] < 0.1  # notebook: 0.0587
    check = qp.uniform_points(4000, seed=5, device="cpu")
    results = {}
    for kappa in (0.1, 0.3):
        model = qp.fit_decomposition(*maier_stein_data, seed=0, selection=kappa, anchors=anchors, one_sided=True).model
        results[kappa] = (_barriers(model)[0], qp.orthogonality_residual(model, check))
    (low, low_residual), (high, high_residual) = results[0.1], results[0.3]
    assert low < 0.95 * 0.340 and high > 1.05 * 0.340  # notebook: 0.27 and 0.41: it passes the reference
    assert high - low > 0.1  # the barrier follows kappa instead of levelling off
    assert min(low_residual, high_residual) > 0.1  # notebook: 0.213, 0.135: far from orthogonal


def test_fit_decomposition_leaves_the_global_rng_alone_and_is_repeatable():
    x = qp.uniform_points(400, seed=2, device="cpu")
    target = qp.rotating_double_well_drift(x)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first = qp.fit_decomposition(x, target, seed=3, steps=5, batch_size=100)
    assert torch.equal(torch.rand(3), expected)
    again = qp.fit_decomposition(x, target, qp.DecompositionOptions(steps=5, batch_size=100), seed=3)
    generated = qp.fit_decomposition(x, target, generator=torch.Generator().manual_seed(3), steps=5, batch=100)
    with torch.no_grad():
        assert torch.equal(first.model.potential(x), again.model.potential(x))
        assert torch.equal(first.model.potential(x), generated.model.potential(x))
    assert first.options.steps == 5 and first.seed == 3 and generated.seed is None and first.cpu_seconds > 0
    assert first.history["step"] == [0, 4] and first.history["loss"] == first.losses
    with pytest.raises(TypeError, match="unexpected keyword"):
        qp.fit_decomposition(x, target, epochs=5)


def test_train_averaged_uniform_and_exponential_averages():
    """The shared loop of chapter 4 (mldyn_lite.training.train_averaged): the uniform average of the iterates
    from average_from on, or their exponential moving average, as fit_decomposition uses it."""
    from mldyn_lite.training import train_averaged

    def run(**kw):
        model = torch.nn.Linear(1, 1)
        with torch.no_grad():
            model.weight.fill_(1.0)
            model.bias.fill_(0.0)
        iterates = []

        def loss_at(step):
            if step > 0:
                iterates.append(model.weight.item())
            return (model.weight - 3.0).pow(2).sum()

        result = train_averaged(model, loss_at, steps=5, lr=0.1, final_lr=0.01, record_every=2, **kw)
        iterates.append(model.weight.item())
        return result, iterates

    uniform, iterates = run(average_from=0.6)
    assert uniform.model.weight.item() == pytest.approx(np.mean(iterates[3:]), rel=1e-6)
    assert uniform.history["step"] == [0, 2, 4] and len(uniform.history["loss"]) == 3
    ema, iterates = run(ema=0.5)
    expected = iterates[0]
    for value in iterates[1:]:
        expected = 0.5 * expected + 0.5 * value
    assert ema.model.weight.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(TypeError, match="model"):
        train_averaged("net", lambda step: None, steps=1, lr=0.1, final_lr=0.1)


def test_mirror_network_is_symmetric_and_may_have_a_kink_on_the_axis():
    model = qp.DecompositionNet(mirror=True, generator=torch.Generator().manual_seed(0))
    points = qp.uniform_points(200, seed=4, device="cpu")
    mirrored = points * torch.tensor([1.0, -1.0])
    u, grad_u, g = model.parts(points)
    u_m, grad_m, g_m = model.parts(mirrored)
    assert torch.allclose(u, u_m) and torch.allclose(g[:, 0], g_m[:, 0]) and torch.allclose(g[:, 1], -g_m[:, 1])
    assert torch.allclose(grad_u[:, 1], -grad_m[:, 1])
    # the y-derivative jumps across the axis (a smooth network in |y| has a kink at y = 0)
    above = model.parts(torch.tensor([[0.0, 1e-4]]))[1][0, 1]
    below = model.parts(torch.tensor([[0.0, -1e-4]]))[1][0, 1]
    assert abs(above.item() + below.item()) < 1e-5 and abs(above.item()) > 1e-4


def test_selection_term_matches_its_definition():
    x = qp.uniform_points(300, seed=6, device="cpu")
    target = qp.maier_stein_drift(x)
    model = qp.DecompositionNet(generator=torch.Generator().manual_seed(1))
    anchors = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    _, grad_u, g = model.parts(x)
    dot = torch.relu((grad_u * g).sum(1))
    scale = (grad_u**2).sum(1) + (g**2).sum(1) + 1e-2
    expected = (
        ((target + grad_u - g) ** 2).sum(1).mean()
        + 3.0 * (dot**2 / scale).mean()
        - 0.2 * (model.potential(x).mean() - model.potential(anchors).mean())
    )
    loss = qp.decomposition_loss(model, x, target, selection=0.2, anchors=anchors, one_sided=True)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="anchors"):
        qp.decomposition_loss(model, x, target, selection=0.2)
    with pytest.raises(ValueError, match="anchors"):
        qp.DecompositionOptions(selection=0.1)


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
