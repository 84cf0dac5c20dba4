"""Structural properties of OnsagerNet for arbitrary weights, by property-based testing (hypothesis).

For any weights: the eigenvalues of M are >= alpha, W is antisymmetric,
V >= beta*|h|^2, and with g = 0 the potential never increases along the flow
(dV/dt = -grad V . M grad V <= -alpha |grad V|^2).
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchdiffeq import odeint

from mldyn_lite.onsager import OnsagerNet

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None)
SEEDS = st.integers(min_value=0, max_value=2**31 - 1)
DIMS = st.integers(min_value=1, max_value=5)
ALPHAS = st.floats(min_value=0.01, max_value=1.0)
BETAS = st.floats(min_value=0.01, max_value=1.0)
SCALES = st.floats(min_value=0.1, max_value=3.0)


def random_model(seed, dim, alpha, beta, scale, force="none"):
    torch.manual_seed(seed)
    model = OnsagerNet(dim, width=8, alpha=alpha, beta=beta, force=force).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn_like(p))
    points = 3.0 * torch.randn(64, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return model, points


@SETTINGS
@given(seed=SEEDS, dim=DIMS, alpha=ALPHAS, beta=BETAS, scale=SCALES)
def test_mobility_is_coercive_and_w_antisymmetric(seed, dim, alpha, beta, scale):
    model, h = random_model(seed, dim, alpha, beta, scale)
    M, W = model.matrices(h)
    assert torch.linalg.eigvalsh(M).min() >= alpha - 1e-9
    assert torch.allclose(W, -W.transpose(1, 2), atol=0)


@SETTINGS
@given(seed=SEEDS, dim=DIMS, alpha=ALPHAS, beta=BETAS, scale=SCALES)
def test_potential_bounded_below_by_quadratic(seed, dim, alpha, beta, scale):
    model, h = random_model(seed, dim, alpha, beta, scale)
    assert torch.all(model.potential(h) >= beta * (h**2).sum(-1) - 1e-12)


@SETTINGS
@given(seed=SEEDS, dim=DIMS, alpha=ALPHAS, beta=BETAS, scale=SCALES)
def test_potential_never_increases_without_force(seed, dim, alpha, beta, scale):
    model, h = random_model(seed, dim, alpha, beta, scale)
    with torch.no_grad():
        grad_V = model.grad_potential(h)
        rate = (grad_V * model(h)).sum(-1)  # dV/dt along the vector field
        assert torch.all(rate <= -alpha * (grad_V**2).sum(-1) + 1e-9)
        # and along trajectories integrated by an adaptive solver (to its tolerance)
        times = torch.linspace(0, 0.01, 6, dtype=torch.float64)
        path = odeint(lambda t, x: model(x), h[:16], times, rtol=1e-9, atol=1e-11, method="dopri5")
        V = model.potential(path.reshape(-1, dim)).reshape(len(times), -1)
        assert torch.all(V[1:] <= V[:-1] + 1e-7 * (1 + V[:-1].abs()))
