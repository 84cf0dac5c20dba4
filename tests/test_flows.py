"""Claims of notebook 1.2 (composition is dynamics), asserted through mldyn_lite.flows.

The set-up is the notebook's: a SmoothTanhField (d = 2, width 16, seed 1) on [0, 1] in float64, 64
Gaussian points (seed 1), and torchdiffeq's dopri5 at rtol 1e-10 as the reference flow map.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchdiffeq import odeint

import mldyn_lite as ml
from mldyn_lite import datasets, flows

from notebook_cells import solution_function

T = 1.0
EULER_DEPTHS = [4, 8, 16, 32, 64, 128, 256, 512]
RK4_DEPTHS = [4, 8, 16, 32, 64]
MIDPOINT_DEPTHS = EULER_DEPTHS[:7]


def make_field(device="cpu"):
    return flows.SmoothTanhField(dim=2, width=16, T=T, scale=1.0, seed=1, device=device)


def make_points(device="cpu"):
    return torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)


def resnet_forward(f, x0, T, layers):
    """The notebook's explicit residual network."""
    delta = T / layers
    x = x0
    for n in range(layers):
        x = x + delta * f(n * delta, x)
    return x


midpoint_flow = solution_function("ch1/02_composition_is_dynamics.ipynb", "midpoint_flow")  # the exercise solution


@pytest.fixture(scope="module")
def experiment():
    """Errors of Euler, RK4 and midpoint against the reference flow map (the notebook's experiment)."""
    field, points = make_field(), make_points()
    with torch.no_grad():
        flow_map = flows.reference_flow(field, points, T)
        sharper = flows.reference_flow(field, points, T, rtol=1e-12, atol=1e-14)

        def max_error(x_T):
            return (x_T - flow_map).norm(dim=1).max().item()

        return {
            "reference_error": (flow_map - sharper).norm(dim=1).max().item(),
            "euler": [max_error(flows.euler_flow(field, points, T, steps=L)) for L in EULER_DEPTHS],
            "rk4": [max_error(flows.rk4_flow(field, points, T, steps=L)) for L in RK4_DEPTHS],
            "midpoint": [max_error(midpoint_flow(field, points, T, L)) for L in MIDPOINT_DEPTHS],
        }


def slope(depths, errors):
    return ml.loglog_slope(T / np.array(depths), errors)[0]


# --- a residual network is the Euler scheme --------------------------------------------------------


def test_euler_flow_is_exactly_the_explicit_residual_loop():
    field, points = make_field(), make_points()
    with torch.no_grad():
        for layers in (1, 7, 32):
            assert torch.equal(resnet_forward(field, points, T, layers), flows.euler_flow(field, points, T, layers))


@pytest.mark.parametrize("T_net, layers", [(1.0, 6), (0.3, 10), (1.5, 7), (2.0, 49)])
def test_layerwise_field_with_euler_is_a_handwritten_resnet(T_net, layers):
    # (0.3, 10) and (2.0, 49): n * delta / T * L rounds just below n, so the layer index must be robust
    block = flows.LayerwiseTanhField(dim=2, width=8, layers=layers, T=T_net, init_scale=0.5, seed=3, dtype=torch.float64)
    with torch.no_grad():
        block.b.normal_(generator=torch.Generator().manual_seed(4))
        x = make_points()
        delta = T_net / layers
        for n in range(layers):  # x_{n+1} = x_n + delta * A_n tanh(W_n x_n + b_n), each layer its own weights
            x = x + delta * (torch.tanh(x @ block.W[n].T + block.b[n]) @ block.A[n].T)
        assert torch.equal(flows.euler_flow(block, make_points(), T_net, layers), x)


def test_return_path_holds_every_layer():
    field, points = make_field(), make_points()
    with torch.no_grad():
        for flow in (flows.euler_flow, flows.rk4_flow):
            path = flow(field, points, T, 5, return_path=True)
            assert path.shape == (6, 64, 2)
            assert torch.equal(path[0], points)
            assert torch.equal(path[-1], flow(field, points, T, 5))


def test_classifier_features_are_the_euler_flow_of_its_field():
    model = flows.ResNetClassifier(dim=2, width=16, layers=16, T=1.0, seed=0)
    x, _ = datasets.two_moons(50, seed=0)
    with torch.no_grad():
        assert torch.equal(model.features(x), flows.euler_flow(model.field, x, 1.0, 16))
        assert torch.equal(model(x), model.readout(model.features(x)))


# --- depth -> infinity recovers the flow map, at first order -----------------------------------------


@pytest.mark.claim(
    "ch1-reference-flow-accuracy",
    page="notebooks/ch1/02_composition_is_dynamics",
    anchor="ch1-euler-order",
    statement="The dopri5 reference flow map is accurate to 3.24e-10, far below every measured error",
    number="3.24e-10",
    tolerance="reference error < 1e-9 and every measured error > 10 x it",
)
def test_reference_flow_map_is_accurate_enough(experiment):
    # notebook: the reference error (3.24e-10) is far below every measured error
    assert experiment["reference_error"] < 1e-9
    assert min(experiment["euler"] + experiment["rk4"]) > 10 * experiment["reference_error"]
    # ... and one more RK4 doubling (error / 16) would reach the reference's level
    assert experiment["rk4"][-1] / 16 < 10 * experiment["reference_error"]


@pytest.mark.claim(
    "ch1-resnet-first-order",
    page="notebooks/ch1/02_composition_is_dynamics",
    anchor="ch1-euler-order",
    statement=(
        "A residual network with L blocks is the Euler scheme of its flow: its error against the flow map "
        "is first order in delta = T/L (measured slope 0.99; L x error settles at 1.3)"
    ),
    number="0.99",
    tolerance=("0.9 <= slope <= 1.1; errors decreasing; L x error constant to 1% over the last doubling, in (1.2, 1.4)"),
)
def test_resnet_error_is_first_order_in_delta(experiment):
    errors = experiment["euler"]
    assert 0.9 <= slope(EULER_DEPTHS, errors) <= 1.1  # notebook: 0.99
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))
    # L x error settles to a constant (notebook: 1.3 for L >= 64)
    scaled = [L * e for L, e in zip(EULER_DEPTHS, errors)]
    assert abs(scaled[-1] - scaled[-2]) < 0.01 * scaled[-1]
    assert 1.2 < scaled[-1] < 1.4


@pytest.mark.claim(
    "ch1-rk4-fourth-order",
    page="notebooks/ch1/02_composition_is_dynamics",
    anchor="ch1-euler-order",
    statement=(
        "RK4 blocks are fourth order (slope 4.07, about sixteenfold per doubling), and 16 RK4 steps beat 512 Euler blocks"
    ),
    number="4.07",
    tolerance=("3.6 <= slope <= 4.4; each doubling divides the error by 14 to 19; RK4 with 16 steps < Euler with 512"),
)
def test_rk4_is_fourth_order_and_beats_deep_euler(experiment):
    errors = experiment["rk4"]
    assert 3.6 <= slope(RK4_DEPTHS, errors) <= 4.4  # notebook: 4.07
    ratios = [earlier / later for earlier, later in zip(errors, errors[1:])]
    assert all(14 < r < 19 for r in ratios)  # "about sixteenfold per doubling"
    # notebook: RK4 with 16 steps is more accurate than Euler with 512
    assert errors[RK4_DEPTHS.index(16)] < experiment["euler"][EULER_DEPTHS.index(512)]


@pytest.mark.claim(
    "ch1-midpoint-second-order",
    page="notebooks/ch1/02_composition_is_dynamics",
    anchor="ex-ch1-midpoint",
    statement=(
        "Midpoint blocks (the exercise's solution) are second order (slope 1.92), and L midpoint blocks "
        "beat 2L Euler blocks by a growing factor"
    ),
    number="1.92",
    tolerance="1.8 <= slope <= 2.2; advantage over 2L Euler blocks > 1 and increasing",
)
def test_midpoint_exercise_is_second_order(experiment):
    errors = experiment["midpoint"]
    assert 1.8 <= slope(MIDPOINT_DEPTHS, errors) <= 2.2  # notebook: 1.92
    # L midpoint blocks beat 2L Euler blocks, by a factor that grows as delta shrinks
    advantage = [experiment["euler"][EULER_DEPTHS.index(2 * L)] / e for L, e in zip(MIDPOINT_DEPTHS, errors)]
    assert all(a > 1 for a in advantage)
    assert all(later > earlier for earlier, later in zip(advantage, advantage[1:]))


# --- rk4_flow is torchdiffeq's rk4 --------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 10, 37])
def test_rk4_flow_matches_torchdiffeq_rk4(steps):
    field, points = make_field(), make_points()
    times = torch.linspace(0.0, T, steps + 1, dtype=torch.float64)
    with torch.no_grad():
        theirs = odeint(field, points, times, method="rk4")
        ours = flows.rk4_flow(field, points, T, steps, return_path=True)
        classic = flows.rk4_flow(field, points, T, steps, rule="classic")
    assert (ours - theirs).abs().max().item() < 1e-12
    # the classical tableau is a different (also fourth-order) method: not the same numbers, close for small steps
    difference = (classic - theirs[-1]).abs().max().item()
    assert difference > 1e-12
    if steps >= 10:
        assert difference < 1e-4


# --- a trained residual network untangles the two moons -----------------------------------------------


@pytest.mark.claim(
    "ch1-resnet-separates-moons",
    page="notebooks/ch1/02_composition_is_dynamics",
    anchor="ch1-moons-flow",
    statement=(
        "A trained 16-block residual network moves the two moons until a straight line separates them: "
        "91.5% at the input, 100.0% from layer 8 on; test accuracy 99.8%"
    ),
    number="91.5",
    tolerance=("test accuracy > 0.97; linear accuracy < 0.95 at layer 0, >= 0.98 at layer 4, = 1 at layers 8 and 16"),
)
def test_trained_resnet_classifier_separates_two_moons():
    ml.set_seed(0)
    train_x, train_y = datasets.two_moons(400, noise=0.1, seed=0)
    test_x, test_y = datasets.two_moons(2000, noise=0.1, seed=1)
    model = flows.ResNetClassifier(dim=2, width=16, layers=16, T=1.0, seed=0)
    ml.fit(model, lambda: F.cross_entropy(model(train_x), train_y), steps=300, lr=1e-2)
    with torch.no_grad():
        test_accuracy = (model(test_x).argmax(dim=1) == test_y).float().mean().item()
        path = model.features(train_x, return_path=True)
    assert test_accuracy > 0.97  # notebook: "more than 97%" (99.8%)
    accuracy = {n: flows.best_linear_accuracy(path[n], train_y)[0] for n in (0, 4, 8, 16)}
    assert accuracy[0] < 0.95  # notebook: about 90% (91.5%) at the input
    assert accuracy[4] >= 0.98  # almost every point a quarter of the way in (99.8%)
    assert accuracy[8] == accuracy[16] == 1.0  # separable from the middle on


# --- inputs are validated, naming the argument ---------------------------------------------------------


@pytest.mark.parametrize("flow", [flows.euler_flow, flows.rk4_flow])
def test_flows_reject_bad_arguments(flow):
    field, points = make_field(), make_points()
    with pytest.raises(ValueError, match="steps"):
        flow(field, points, T, 0)
    with pytest.raises(TypeError, match="steps"):
        flow(field, points, T, 2.5)
    with pytest.raises(TypeError, match="x0"):
        flow(field, points.numpy(), T, 4)
    with pytest.raises(ValueError, match="x0"):
        flow(field, points[:, 0], T, 4)
    with pytest.raises(ValueError, match="x0"):
        flow(field, torch.full((3, 2), float("nan"), dtype=torch.float64), T, 4)
    with pytest.raises(ValueError, match="T"):
        flow(field, points, 0.0, 4)
    with pytest.raises(TypeError, match="field"):
        flow("not a field", points, T, 4)
    with pytest.raises(ValueError, match="field"):  # a velocity of the wrong shape must not broadcast silently
        flow(lambda t, x: x.sum(dim=1, keepdim=True), points, T, 4)


def test_other_entry_points_reject_bad_arguments():
    field, points = make_field(), make_points()
    with pytest.raises(ValueError, match="rule"):
        flows.rk4_flow(field, points, T, 4, rule="rk5")
    with pytest.raises(ValueError, match="rtol"):
        flows.reference_flow(field, points, T, rtol=-1.0)
    with pytest.raises(TypeError, match="x0"):
        flows.reference_flow(field, [[0.0, 1.0]], T)
    with pytest.raises(ValueError, match="width"):
        flows.SmoothTanhField(dim=2, width=0)
    with pytest.raises(ValueError, match="layers"):
        flows.LayerwiseTanhField(dim=2, width=4, layers=0)
    model = flows.ResNetClassifier(dim=2, layers=4)
    with pytest.raises(ValueError, match="x"):
        model(torch.zeros(5, 3))


# --- the same numbers on a GPU -------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flows_on_cuda_agree_with_cpu():
    with torch.no_grad():
        for flow in (flows.euler_flow, flows.rk4_flow):
            on_cpu = flow(make_field(), make_points(), T, 64)
            on_gpu = flow(make_field("cuda"), make_points("cuda"), T, 64)
            assert on_gpu.device.type == "cuda"
            assert (on_gpu.cpu() - on_cpu).abs().max().item() < 1e-10
        reference_cpu = flows.reference_flow(make_field(), make_points(), T)
        reference_gpu = flows.reference_flow(make_field("cuda"), make_points("cuda"), T)
        assert (reference_gpu.cpu() - reference_cpu).abs().max().item() < 1e-8
