"""The shared numerics: integrator against torchdiffeq and closed forms, MLP builder, generator, device rule."""

import math

import pytest
import torch
from torch import nn

from mldyn_lite import numerics as nm


def _linear(t, x):
    return -x


def test_integrate_agrees_with_exponential_at_fourth_order():
    x0 = torch.ones(3, 2, dtype=torch.float64)
    errors = [float((nm.integrate(_linear, x0, 1.0, n) - math.exp(-1.0)).abs().max()) for n in (8, 16, 32)]
    slopes = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(3.8 < s < 4.2 for s in slopes), slopes


def test_euler_is_first_order():
    x0 = torch.ones(1, 1, dtype=torch.float64)
    e1, e2 = (float((nm.integrate(_linear, x0, 1.0, n, "euler") - math.exp(-1.0)).abs()) for n in (100, 200))
    assert 0.9 < math.log2(e1 / e2) < 1.1


def test_rk4_rule_3_8_matches_torchdiffeq_step():
    torchdiffeq = pytest.importorskip("torchdiffeq")

    def field(t, x):
        return torch.sin(t + x) * x

    x0 = torch.linspace(-1, 1, 5, dtype=torch.float64)[:, None]
    times = torch.linspace(0, 1, 11, dtype=torch.float64)
    ref = torchdiffeq.odeint(field, x0, times, method="rk4")[-1]
    ours = nm.integrate(lambda t, x: field(torch.as_tensor(t, dtype=x.dtype), x), x0, 1.0, 10)
    assert torch.allclose(ours, ref, atol=1e-13)


def test_autonomous_field_and_module_are_accepted():
    x0 = torch.ones(2, 2, dtype=torch.float64)
    a = nm.integrate(lambda x: -x, x0, 1.0, 20)
    b = nm.integrate(_linear, x0, 1.0, 20)
    assert torch.equal(a, b)
    net = nm.mlp(2, 8, 1, 2, seed=0, dtype=torch.float64)
    c = nm.integrate(net, x0, 0.5, 5)
    d = nm.integrate(lambda t, x: net(x), x0, 0.5, 5)
    assert torch.equal(c, d)


def test_backward_inverts_forward_to_method_order():
    x0 = torch.randn(4, 2, generator=nm.generator(0), dtype=torch.float64)

    def field(t, x):
        return torch.tanh(x) * (1 + t)

    xT = nm.integrate(field, x0, 1.0, 50)
    back = nm.integrate(field, xT, 1.0, 50, backward=True)
    assert float((back - x0).abs().max()) < 1e-6


def test_path_shape_and_dtype_follow_input():
    x0 = torch.zeros(3, 2, dtype=torch.float32)
    path = nm.integrate(lambda t, x: torch.ones_like(x), x0, 2.0, 4, return_path=True)
    assert path.shape == (5, 3, 2) and path.dtype == torch.float32
    assert torch.allclose(path[-1], torch.full((3, 2), 2.0))


def test_integrate_rejects_bad_input():
    x0 = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="shape of x"):
        nm.integrate(lambda t, x: x[:, :1], x0, 1.0, 3)
    with pytest.raises(ValueError, match="steps"):
        nm.integrate(_linear, x0, 1.0, 0)
    with pytest.raises(ValueError, match="method"):
        nm.integrate(_linear, x0, 1.0, 2, method="midpoint")
    with pytest.raises(TypeError, match="field"):
        nm.integrate(lambda a, b, c: a, x0, 1.0, 2)
    with pytest.raises(TypeError, match="field"):
        nm.integrate(3, x0, 1.0, 2)


def test_mlp_shapes_seed_and_init_range():
    net = nm.mlp(3, 16, 2, 1, "relu", seed=1)
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert net(torch.zeros(5, 3)).shape == (5, 1)
    torch.manual_seed(123)
    again = nm.mlp(3, 16, 2, 1, "relu", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), again.parameters()))
    other = nm.mlp(3, 16, 2, 1, "relu", seed=2)
    assert not torch.equal(net[0].weight, other[0].weight)
    assert float(net[0].weight.abs().max()) <= 1 / math.sqrt(3)
    assert float(net[2].weight.abs().max()) <= 1 / math.sqrt(16)
    assert float(net[2].weight.abs().max()) > 0.8 / math.sqrt(16)
    assert len(nm.mlp(2, 5, 0, 1)) == 1
    with pytest.raises(ValueError, match="activation"):
        nm.mlp(2, 4, 1, 1, "swish")
    with pytest.raises(ValueError, match="width"):
        nm.mlp(2, 0, 1, 1)


def test_generator_and_device_rule():
    a = torch.randn(3, generator=nm.generator(5))
    b = torch.randn(3, generator=nm.generator(5))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="seed"):
        nm.generator(-1)
    assert nm.device_of(None, torch.zeros(1)) == torch.device("cpu")
    assert nm.device_of() == torch.device("cpu")
    assert nm.device_of(nn.Linear(1, 1)) == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_integrate_follows_cuda_input():
    x0 = torch.ones(2, 2, device="cuda")
    assert nm.integrate(lambda x: -x, x0, 1.0, 4).device.type == "cuda"
    assert nm.device_of(x0).type == "cuda"
