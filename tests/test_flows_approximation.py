"""Claims of chapter 2.1 (notebooks ch2/01 and ch2/02): approximation by flows, through mldyn_lite.flows.

Every set-up is the notebooks': the same data, seeds, model sizes and training budgets.
"""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import isotonic_regression as scipy_isotonic_regression
from torchdiffeq import odeint

import mldyn_lite as ml
from mldyn_lite import datasets, flows


def accuracy(model, x, labels):
    with torch.no_grad():
        return (model(x).argmax(dim=1) == labels).float().mean().item()


# --- the integrators agree with torchdiffeq (same method, same steps) ------------------------------------


def lecture_points(n=21, half_width=1.0):
    grid = torch.linspace(-half_width, half_width, n, dtype=torch.float64)
    return torch.cartesian_prod(grid, grid)


@pytest.mark.parametrize("method", ["rk4", "euler"])
def test_integrate_matches_torchdiffeq_forward_and_backward(method):
    x0, T, steps = lecture_points(), math.pi, 60
    times = torch.linspace(0.0, T, steps + 1, dtype=torch.float64)
    with torch.no_grad():
        ours = flows.integrate(flows.lecture_example_field, x0, T, steps, method, return_path=True)
        theirs = odeint(flows.lecture_example_field, x0, times, method=method)
        assert (ours - theirs).abs().max().item() < 1e-6
        # backward: from x(T) down to t = 0, on the reversed grid
        back = flows.integrate(flows.lecture_example_field, ours[-1], T, steps, method, backward=True, return_path=True)
        back_theirs = odeint(flows.lecture_example_field, ours[-1], times.flip(0), method=method)
        assert (back - back_theirs).abs().max().item() < 1e-6


def test_model_pieces_match_torchdiffeq_piece_by_piece():
    model = flows.ContinuousResNet(
        2, width=8, pieces=4, T=1.0, steps_per_piece=3, init_scale=1.0, seed=2, dtype=torch.float64
    )
    x0 = lecture_points(9)
    with torch.no_grad():
        path = model.features(x0, return_path=True)
        z = x0
        for k in range(model.pieces):
            grid = torch.linspace(k / 4, (k + 1) / 4, 4, dtype=torch.float64)
            z = odeint(model.piece_field(k), z, grid, method="rk4")[-1]
            assert (path[3 * (k + 1)] - z).abs().max().item() < 1e-6
        assert torch.equal(path[-1], model.features(x0))
        assert model.times().shape == (path.shape[0],)


def test_one_euler_step_per_piece_is_a_resnet():
    model = flows.ContinuousResNet(2, width=8, pieces=5, T=1.0, method="euler", init_scale=1.0, seed=1, dtype=torch.float64)
    x = lecture_points(7)
    with torch.no_grad():
        z = x
        for k in range(5):
            z = z + 0.2 * (torch.tanh(z @ model.W[k].T + model.b[k]) @ model.A[k].T)
        assert (model.features(x) - z).abs().max().item() < 1e-14


# --- the lecture's example ODE: blow-up region and pulled-back classifier (notebook 2.1) -------------------


def test_lecture_field_is_the_lecture_ode():
    x = torch.tensor([[0.3, -0.7], [1.2, 0.4]], dtype=torch.float64)
    t = 0.9
    expected = torch.tensor(
        [[-x2 * math.sin(t), -0.5 * (1 - x1**2) * x2 + x1 * math.cos(t)] for x1, x2 in x.tolist()], dtype=torch.float64
    )
    assert torch.allclose(flows.lecture_example_field(t, x), expected, atol=0, rtol=1e-15)


@pytest.mark.claim(
    "ch2-lecture-blow-up",
    page="notebooks/ch2/01_continuum_resnets",
    anchor="ch2-blow-up",
    statement=(
        "The lecture's example flow blows up in finite time: on a 41 x 41 grid of [-1, 1]^2 nothing "
        "escapes |x| = 1e3 before 1.5 pi, 3.6% escapes before 2 pi (the first at 1.63 pi), 37.6% before 4 "
        "pi; nothing of [-0.5, 0.5]^2 escapes"
    ),
    number="3.6",
    tolerance=(
        "none before 1.5 pi; 2% to 4% before 2 pi; 33% to 40% before 4 pi; first escape in (1.55 pi, 1.7 "
        "pi); inner grid never escapes"
    ),
)
def test_lecture_flow_blow_up_region():
    # notebook: on [-1, 1]^2 nothing escapes |x| = 1e3 before 1.5 pi; 3.6% of a 41 x 41 grid before 2 pi, 37.6%
    # before 4 pi, the first at t = 1.63 pi; on [-0.5, 0.5]^2 nothing escapes up to 4 pi
    # both grids in one batch: every point is integrated independently, so the times are the notebook's
    both = flows.escape_times(
        flows.lecture_example_field, torch.cat([lecture_points(41), lecture_points(41, 0.5)]), 4 * math.pi, 1600
    )
    escape, inner = both[: 41 * 41], both[41 * 41 :]
    assert (escape > 1.5 * math.pi).all()
    assert 0.02 < (escape < 2 * math.pi).double().mean().item() < 0.04
    assert 0.33 < (escape < 4 * math.pi).double().mean().item() < 0.40
    assert 1.55 * math.pi < escape.min().item() < 1.7 * math.pi
    assert torch.isinf(inner).all()
    # the flow map is odd (the field is): the pulled-back classifier is point-symmetric
    with torch.no_grad():
        x = lecture_points(11)
        xT = flows.rk4_flow(flows.lecture_example_field, x, 1.5 * math.pi, 300)
        assert (flows.rk4_flow(flows.lecture_example_field, -x, 1.5 * math.pi, 300) + xT).abs().max().item() < 1e-12
        assert xT.norm(dim=1).max().item() < 6  # bounded at 1.5 pi (largest 5.46, from a corner)


@pytest.mark.claim(
    "ch2-pulled-back-classifier",
    page="notebooks/ch2/01_continuum_resnets",
    anchor="ch2-pulled-back",
    statement=(
        "The linear classifier 1{x_T1 > 0} pulled back through the lecture's flow is curved but nearly a "
        "line: the best straight line agrees with it on 97.5%, 98.3% and 93.8% of the square at T = pi/2, "
        "pi, 3pi/2"
    ),
    number="93.8",
    tolerance="every agreement in (0.9, 0.995); the lowest at T = 1.5 pi",
)
def test_pulled_back_linear_classifier_is_curved_but_nearly_a_line():
    # notebook: the best straight line agrees with 1{x_T1 > 0} pulled back on 97.5%, 98.3%, 93.8% of [-1, 1]^2
    x = lecture_points(81)
    agreement = []
    for T in (0.5 * math.pi, math.pi, 1.5 * math.pi):
        with torch.no_grad():
            xT = flows.rk4_flow(flows.lecture_example_field, x, T, round(200 * T / math.pi))
        agreement.append(flows.best_linear_accuracy(x, (xT[:, 0] > 0).long())[0])
    assert all(0.9 < a < 0.995 for a in agreement)
    assert min(agreement) == agreement[2]


# --- backward integration inverts the flow map -------------------------------------------------------------


def test_backward_integration_recovers_inputs():
    x0 = lecture_points(15)
    with torch.no_grad():
        x_T = flows.rk4_flow(flows.lecture_example_field, x0, math.pi, 400)
        assert (flows.inverse_flow(flows.lecture_example_field, x_T, math.pi, 400) - x0).abs().max().item() < 1e-4
        # a random augmented model, float32 as in the notebooks
        model = flows.ContinuousResNet(2, width=16, pieces=8, augment=1, init_scale=1.0, seed=3, steps_per_piece=8)
        x = x0.float()
        z_T = model.features(x)
        recovered = model.inverse(z_T)
        assert (recovered[:, :2] - x).abs().max().item() < 1e-4
        assert recovered[:, 2].abs().max().item() < 1e-4  # back on the plane x_3 = 0


# --- a learned flow with a linear classifier (notebook 2.1) ------------------------------------------------


def train_flow_classifier(data, augment):
    """The notebook's model: 8 pieces of width-16 tanh fields on [0, 1], one RK4 step per piece, linear readout."""
    ml.set_seed(0)
    train_x, train_y = data(400, seed=0)
    test_x, test_y = data(2000, seed=1)
    model = flows.ContinuousResNet(2, width=16, pieces=8, T=1.0, augment=augment, readout="linear", out_features=2)
    flows.train_classifier(model, train_x, train_y, steps=200, lr=1e-2)
    return model, (train_x, train_y), (test_x, test_y)


@pytest.fixture(scope="module")
def rings_models():
    return {augment: train_flow_classifier(datasets.two_rings, augment) for augment in (0, 1)}


@pytest.mark.claim(
    "ch2-moons-separated",
    page="notebooks/ch2/01_continuum_resnets",
    anchor="ch2-learned-flow",
    statement=(
        "A learned flow (8 pieces, width 16) makes the two moons exactly linearly separable at t = T, "
        "where no line separates them at t = 0 (best line 91.5%); test accuracy 99.8%"
    ),
    number="91.5",
    tolerance=(
        "test accuracy >= 0.97; not separable at t = 0 (best line < 0.95) nor at t = T/2; separable at t "
        "= T with a perfect best line"
    ),
)
def test_learned_flow_separates_two_moons():
    model, (train_x, train_y), (test_x, test_y) = train_flow_classifier(datasets.two_moons, 0)
    assert accuracy(model, test_x, test_y) >= 0.97  # notebook: 99.8%
    with torch.no_grad():
        path = model.features(train_x, return_path=True)
    assert not flows.linearly_separable(path[0], train_y)  # the input
    assert flows.best_linear_accuracy(path[0], train_y)[0] < 0.95  # notebook: 91.5%
    assert not flows.linearly_separable(path[4], train_y)  # not yet halfway through
    assert flows.linearly_separable(path[-1], train_y)  # after the flow
    assert flows.best_linear_accuracy(path[-1], train_y)[0] == 1.0


@pytest.mark.claim(
    "ch2-augmented-rings",
    page="notebooks/ch2/01_continuum_resnets",
    anchor="ch2-rings",
    statement=(
        "With one augmented dimension the flow separates the nested rings (no line does before it, "
        "49.5%): test accuracy 100.00%"
    ),
    number="100.00",
    tolerance="test accuracy >= 0.97; rings not separable before (best line < 0.7), separable after the flow",
)
def test_augmented_flow_separates_nested_rings(rings_models):
    model, (train_x, train_y), (test_x, test_y) = rings_models[1]
    assert accuracy(model, test_x, test_y) >= 0.97  # notebook: 100%
    with torch.no_grad():
        features = model.features(train_x)
    assert not flows.linearly_separable(train_x, train_y)
    assert flows.best_linear_accuracy(train_x, train_y)[0] < 0.7
    assert flows.linearly_separable(features, train_y)


@pytest.mark.claim(
    "ch2-planar-channel",
    page="notebooks/ch2/01_continuum_resnets",
    anchor="ch2-rings",
    statement=(
        "A planar flow must cut a channel through the outer ring: it calls 2.00% of the circle r = 1 "
        "'inside' and 14 of its 15 test errors are outer-ring points, while the augmented flow calls none "
        "of it 'inside'; both flows invert to 1e-4"
    ),
    number="2.00",
    tolerance=(
        "planar: fraction of the circle called inside > 0, accuracy in [0.97, 1), > 80% of errors on the "
        "outer ring; augmented: exactly 0; backward integration recovers inputs to 1e-4"
    ),
)
@pytest.mark.claim(
    "ch2-augmented-lift",
    page="notebooks/ch2/01_continuum_resnets",
    anchor="ex-ch2-augmented-lift",
    statement=(
        "The augmented flow separates the rings by height in the extra coordinate: inner ring at x_T,3 = "
        "4.13 +- 0.47, outer ring at -2.46 +- 1.07"
    ),
    number="4.13",
    tolerance="every inner-ring height above every outer-ring height (2000 test points)",
)
def test_planar_flow_must_cut_a_channel_through_the_outer_ring(rings_models):
    """A homeomorphism of the plane pulls a half-plane back to a connected, unbounded set: if it holds the inner
    disc it must cross the outer ring. The 2-D model does this; the augmented one needs not."""
    angles = torch.linspace(0, 2 * math.pi, 3601)[:-1]
    circle = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # the outer ring's centre line
    inner_on_circle = {}
    for augment, (model, _, (test_x, _)) in rings_models.items():
        model.steps_per_piece = 16  # the flow of the trained field, integrated accurately
        with torch.no_grad():
            inner_on_circle[augment] = (model(circle).argmax(dim=1) == 0).float().mean().item()
            recovered = model.inverse(model.features(test_x))[:, :2]
        assert (recovered - test_x).abs().max().item() < 1e-4  # invertible: a homeomorphism
        model.steps_per_piece = 1
    assert inner_on_circle[0] > 0  # notebook: 2% of the circle is classified "inside"
    assert inner_on_circle[1] == 0
    # exercise: the augmented flow lifts the inner ring and lowers the outer one in the extra coordinate
    model, _, (test_x, test_y) = rings_models[1]
    with torch.no_grad():
        height = model.features(test_x)[:, 2]
    assert height[test_y == 0].min().item() > height[test_y == 1].max().item()  # notebook: 4.13 vs -2.46 on average
    model, (train_x, train_y), (test_x, test_y) = rings_models[0]
    assert 0.97 <= accuracy(model, test_x, test_y) < 1  # notebook: 99.25%, 14 of the 15 errors on the outer ring
    with torch.no_grad():
        wrong = model(test_x).argmax(dim=1) != test_y
    assert (test_y[wrong] == 1).float().mean().item() > 0.8


# --- the 1-D limitation (notebook 2.2) ----------------------------------------------------------------------


def minus_x_data():
    gen = torch.Generator().manual_seed(0)
    x = 2 * torch.rand(200, 1, generator=gen, dtype=torch.float64) - 1
    return x, -x


def train_1d(pieces=8, **options):
    """The notebook's 1-D model: width-16 tanh fields on 8 pieces of [0, 1], one RK4 step per piece, float64."""
    ml.set_seed(0)
    x, y = minus_x_data()
    model = flows.ContinuousResNet(1, width=16, pieces=pieces, T=1.0, dtype=torch.float64, **options)
    flows.train_regressor(model, x, y, steps=200, lr=1e-2)
    with torch.no_grad():
        return model, (model(x) - y).square().mean().item()


def test_isotonic_regression_matches_scipy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 200):
        y, w = rng.normal(size=n), rng.uniform(0.5, 2.0, size=n)
        assert np.allclose(flows.isotonic_regression(y), scipy_isotonic_regression(y).x, atol=1e-12)
        assert np.allclose(flows.isotonic_regression(y, w), scipy_isotonic_regression(y, weights=w).x, atol=1e-12)
    assert np.array_equal(flows.isotonic_regression([3.0, 1.0, 2.0]), [2.0, 2.0, 2.0])


@pytest.mark.claim(
    "ch2-isotonic-bound",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-one-dimension",
    statement=(
        "The isotonic-regression bound for fitting y = -x by an increasing map is the variance of y: "
        "0.3098 on the 200 points"
    ),
    number="0.3098",
    tolerance="bound = variance of y to 1e-12, |bound - 1/3| < 0.03",
)
def test_isotonic_error_of_minus_x_is_its_variance():
    x, y = minus_x_data()
    bound = flows.isotonic_error(x, y)
    # a non-decreasing fit to a decreasing target is a constant: the bound is the sample variance, about 1/3
    assert bound == pytest.approx(y.var(unbiased=False).item(), rel=1e-12)
    assert abs(bound - 1 / 3) < 0.03
    # ties are pooled: equal inputs must get equal predictions
    assert flows.isotonic_error([0.0, 0.0], [1.0, -1.0]) == pytest.approx(1.0)
    assert flows.isotonic_error([0.0, 1.0], [1.0, -1.0]) == pytest.approx(1.0)
    assert flows.isotonic_error([0.0, 1.0], [-1.0, 1.0]) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_random_1d_flows_preserve_order(seed):
    model = flows.ContinuousResNet(
        1, width=16, pieces=8, T=1.0, init_scale=3.0, seed=seed, steps_per_piece=8, dtype=torch.float64
    )
    x = torch.linspace(-3, 3, 2001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        assert flows.smallest_increment(model(x)) > 0


@pytest.mark.claim(
    "ch2-monotone-1d",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-one-dimension",
    statement=(
        "A trained one-dimensional flow cannot fit y = -x: its error 0.3109 stays above the isotonic "
        "bound 0.3098, its map stays increasing and squeezes [-1, 1] to length 0.0038"
    ),
    number="0.3109",
    tolerance=(
        "bound - 1e-6 <= error < 1.01 x bound; increasing; range < 0.01; 32 steps per piece change the error by < 1e-4"
    ),
)
def test_trained_1d_flow_stays_above_the_isotonic_bound():
    model, error = train_1d()
    x, y = minus_x_data()
    bound = flows.isotonic_error(x, y)
    assert error >= bound - 1e-6
    assert error < 1.01 * bound  # notebook: training nearly reaches the bound (0.3109 vs 0.3098)
    with torch.no_grad():
        values = model(torch.linspace(-1, 1, 2001, dtype=torch.float64)[:, None])
        assert flows.smallest_increment(values) > 0
        assert (values.max() - values.min()).item() < 0.01  # squeezed towards the mean (notebook: 0.0038)
        model.steps_per_piece = 32  # the discrete model is a resolved flow: finer steps change nothing
        assert abs((model(x) - y).square().mean().item() - error) < 1e-4


@pytest.mark.claim(
    "ch2-readout-or-augment",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-around-the-limit",
    statement=(
        "A linear readout or one augmented dimension removes the 1-D limit: mean square errors 6.2e-05 "
        "and 9.4e-05 against the bound 0.310"
    ),
    number="6.2e-05",
    tolerance="both errors < 1e-3; the augmented flow map x -> x_T,1 is decreasing",
)
def test_linear_readout_and_augmentation_remove_the_limit():
    _, with_readout = train_1d(readout="linear")
    assert with_readout < 1e-3  # notebook: 6.2e-5
    model, augmented = train_1d(augment=1)
    assert augmented < 1e-3  # notebook: 9.4e-5
    with torch.no_grad():  # the augmented flow map x -> x_T,1 is decreasing
        assert flows.smallest_increment(model(torch.linspace(-1, 1, 201, dtype=torch.float64)[:, None])) < 0


# --- the Euler artefact (notebook 2.2) ------------------------------------------------------------------------


def contracting_field(t, x):
    """f(x) = -3 tanh(2x): f' >= -6, with the minimum at x = 0."""
    return -3 * torch.tanh(2 * x)


@pytest.mark.claim(
    "ch2-euler-non-monotone",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-euler-artefact",
    statement=(
        "Euler steps with h f' < -1 are not monotone: for f = -3 tanh(2x) the Euler map has negative "
        "increments with L = 2 and 4 steps (-0.0019, -0.00018) and is increasing from L = 8 on, like the "
        "flow"
    ),
    number="-0.0019",
    tolerance="sign of the smallest increment: negative for L = 2, 4, 5; positive for L = 7, 8, 64 and RK4",
)
def test_euler_with_h_fprime_below_minus_one_breaks_monotonicity():
    x = torch.linspace(-2, 2, 4001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        flow_map = flows.rk4_flow(contracting_field, x, 1.0, 200)
        assert flows.smallest_increment(flow_map) > 0
        for steps, monotone in ((2, False), (4, False), (8, True), (64, True)):  # h f'(0) = -3, -1.5, -0.75, -0.09
            euler = flows.euler_flow(contracting_field, x, 1.0, steps)
            assert (flows.smallest_increment(euler) > 0) == monotone
        # one residual block with f(x) = -2x (h f' = -2) fits y = -x exactly, below the isotonic bound
        xs, ys = minus_x_data()
        one_block = flows.euler_flow(lambda t, z: -2 * z, xs, 1.0, 1)
        assert torch.equal(one_block, ys)
        assert (one_block - ys).square().mean().item() < flows.isotonic_error(xs, ys)
        # exercise: one Euler step of -a tanh(bx) is monotone iff h a b <= 1 (a = 3, b = 2: L >= 6 steps)
        assert flows.smallest_increment(flows.euler_flow(contracting_field, x, 1.0, 5)) < 0
        assert flows.smallest_increment(flows.euler_flow(contracting_field, x, 1.0, 7)) > 0


@pytest.mark.claim(
    "ch2-coarse-resnet",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-euler-artefact",
    statement=(
        "A trained 4-block Euler ResNet beats the flow bound on y = -x (0.0028 against 0.31), but the "
        "flow of its own field does not (0.320) and is increasing"
    ),
    number="0.0028",
    tolerance=(
        "ResNet error < bound / 50 and non-monotone; its field's RK4 flow has error >= bound - 1e-6 and is increasing"
    ),
)
def test_trained_coarse_resnet_beats_the_bound_but_its_flow_does_not():
    model, error = train_1d(pieces=4, method="euler")  # 4 residual blocks, h = 1/4
    x, y = minus_x_data()
    bound = flows.isotonic_error(x, y)
    grid = torch.linspace(-1, 1, 2001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        assert error < bound / 50  # notebook: 0.0028 against 0.31
        assert flows.smallest_increment(model(grid)) < 0
        model.method, model.steps_per_piece = "rk4", 64  # the same trained field, integrated accurately
        assert (model(x) - y).square().mean().item() >= bound - 1e-6  # notebook: 0.320
        assert flows.smallest_increment(model(grid)) > 0


def test_rotation_reverses_the_line_with_one_augmented_dimension():
    xs, ys = minus_x_data()
    lifted = torch.cat([xs, torch.zeros_like(xs)], dim=1)

    def rotation(t, z):
        return torch.stack([-z[:, 1], z[:, 0]], dim=1)

    rotated = flows.rk4_flow(rotation, lifted, math.pi, 100)
    assert (rotated[:, :1] - ys).abs().max().item() < 1e-7
    assert rotated[:, 1].abs().max().item() < 1e-7
    one_step = flows.euler_flow(rotation, lifted, math.pi, 1)
    assert torch.equal(one_step[:, :1], xs)  # one Euler step leaves z_1 = x unchanged


# --- sufficient conditions in d >= 2 (notebook 2.2) ------------------------------------------------------------


@pytest.mark.claim(
    "ch2-well-function",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-control-family",
    statement=(
        "The ReLU well function freezes the box [-1, 1]^2 and pulls every other point towards it: after T "
        "= 3 the outside points end within 0.031 of the box (from up to 0.63)"
    ),
    number="0.031",
    tolerance="points inside do not move at all; each outside point ends within 10% of its starting distance",
)
def test_well_function_vanishes_exactly_on_the_box_and_freezes_it():
    x = 3 * torch.rand(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 1.5
    h = flows.well_function(x)
    inside = (x.abs() <= 1).all(dim=1)
    assert (h[inside] == 0).all() and (h[~inside].norm(dim=1) > 0).all()
    with torch.no_grad():  # its flow (pointing into the well) leaves the box fixed and pulls the rest towards it
        moved = flows.rk4_flow(lambda t, z: -flows.well_function(z), x, 3.0, 60)
    assert torch.equal(moved[inside], x[inside])
    outside_distance = (x.abs() - 1).clamp(min=0).norm(dim=1)
    assert ((moved.abs() - 1).clamp(min=0).norm(dim=1)[~inside] < 0.1 * outside_distance[~inside]).all()


@pytest.mark.claim(
    "ch2-saddle-flow",
    page="notebooks/ch2/02_what_flows_can_and_cannot_do",
    anchor="ch2-saddle",
    statement=(
        "A planar flow of two-unit ReLU fields with the fixed readout g(z) = z_1 fits the saddle x_1 x_2 "
        "to 0.8% of its variance; any affine map leaves 99.9%"
    ),
    number="0.8",
    tolerance="relative test error < 3%; best affine fit leaves > 95% of the variance",
)
def test_planar_relu_flow_approximates_a_saddle_that_affine_maps_cannot():
    ml.set_seed(0)
    gen = torch.Generator().manual_seed(0)
    train_x = 2 * torch.rand(256, 2, generator=gen) - 1
    test_x = 2 * torch.rand(2000, 2, generator=gen) - 1

    def target(x):
        return x[:, :1] * x[:, 1:]

    model = flows.ContinuousResNet(2, width=2, pieces=8, T=2.0, out_features=1, activation="relu", init_scale=0.5)
    flows.train_regressor(model, train_x, target(train_x), steps=300, lr=2e-2)
    assert model.W.shape == (8, 2, 2)  # two ReLU ridge functions per piece
    with torch.no_grad():
        relative = ((model(test_x) - target(test_x)).square().mean() / target(test_x).var(unbiased=False)).item()
    assert relative < 0.03  # notebook: 0.8%
    # the readout g(x) = x_1 is fixed: the flow alone does the work
    assert model.readout is None and model.out_features == 1
    # affine fields have affine flow maps, so g o phi is affine: the best affine fit leaves ~100% of the variance
    features = torch.cat([test_x, torch.ones(2000, 1)], dim=1).double()
    coefficients = torch.linalg.lstsq(features, target(test_x).double()).solution
    affine_relative = ((features @ coefficients - target(test_x)).square().mean() / target(test_x).var()).item()
    assert affine_relative > 0.95


# --- inputs are validated, naming the argument -------------------------------------------------------------------


def test_bad_arguments_are_named():
    x = lecture_points(3)
    with pytest.raises(ValueError, match="T"):
        flows.integrate(flows.lecture_example_field, x, -1.0, 4)
    with pytest.raises(ValueError, match="steps"):
        flows.integrate(flows.lecture_example_field, x, 1.0, 0)
    with pytest.raises(ValueError, match="method"):
        flows.integrate(flows.lecture_example_field, x, 1.0, 4, method="rk45")
    with pytest.raises(TypeError, match="backward"):
        flows.integrate(flows.lecture_example_field, x, 1.0, 4, backward="yes")
    with pytest.raises(ValueError, match="x_T"):
        flows.inverse_flow(flows.lecture_example_field, x[:, 0], 1.0, 4)
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        flows.lecture_example_field(0.0, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="radius"):
        flows.escape_times(flows.lecture_example_field, x, 1.0, 4, radius=0.0)
    for bad in ({"T": 0.0}, {"pieces": 0}, {"steps_per_piece": 0}, {"width": 0}, {"augment": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            flows.ContinuousResNet(2, **bad)
    with pytest.raises(ValueError, match="readout"):
        flows.ContinuousResNet(2, readout="mlp")
    with pytest.raises(ValueError, match="activation"):
        flows.ContinuousResNet(2, activation="sigmoid")
    with pytest.raises(ValueError, match="out_features"):
        flows.ContinuousResNet(2, augment=1, out_features=4)
    model = flows.ContinuousResNet(2, augment=1)
    with pytest.raises(ValueError, match="x"):
        model(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="z"):
        model.inverse(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="steps_per_piece"):
        model.steps_per_piece = 0
    with pytest.raises(ValueError, match="method"):
        model.method = "rk45"
    with pytest.raises(ValueError, match="k"):
        model.piece_field(8)
    with pytest.raises(ValueError, match="labels"):
        flows.train_classifier(model, torch.zeros(5, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="y"):
        flows.train_regressor(model, torch.zeros(5, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="weights"):
        flows.isotonic_regression([1.0, 2.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="x and y"):
        flows.isotonic_error([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="two classes"):
        flows.linearly_separable(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="values"):
        flows.smallest_increment([1.0])


# --- the same numbers on a GPU -------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_continuous_resnet_on_cuda_agrees_with_cpu():
    x = lecture_points(9)
    results = {}
    for device in ("cpu", "cuda"):
        model = flows.ContinuousResNet(
            2,
            width=8,
            pieces=4,
            augment=1,
            readout="linear",
            out_features=2,
            init_scale=1.0,
            seed=0,
            dtype=torch.float64,
            device=device,
        )
        with torch.no_grad():
            z_T = model.features(x.to(device))
            results[device] = (model(x.to(device)), model.inverse(z_T))
        escape = flows.escape_times(flows.lecture_example_field, x.to(device), 2 * math.pi, 200)
        results[device] += (escape,)
    assert results["cuda"][0].device.type == "cuda"
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        assert torch.allclose(gpu.cpu(), cpu, atol=1e-10, rtol=0, equal_nan=True)
