"""Graded problems of chapter 4 (see :mod:`mldyn_lite.coursework_problems`)."""

from __future__ import annotations

from . import Problem

__all__ = ["PROBLEMS"]

ONSAGER = Problem(
    label="ex-ch4-onsager-field",
    title="The OnsagerNet vector field",
    kind="derive and implement",
    book_notebook="notebooks/ch4/01_onsagernet_lorenz.ipynb",
    statement=r"""OnsagerNet writes a reduced model as $\dot h = f(h) = -\big[M(h) + W(h)\big]\nabla V(h) + g(h)$ with
$M = LL^\top + \alpha I$ symmetric positive definite and $W = U - U^\top$ antisymmetric, both built from one
matrix $R(h)$ of raw network outputs: $L$ is its lower triangle with the diagonal, $U$ its strict upper triangle.

1. Show that without the force $g$ the energy decays: $\frac{d}{dt}V(h_t) = -\nabla V^\top M \nabla V \le
   -\alpha |\nabla V|^2$. Which part of the field conserves $V$?
2. Write `onsager_field(R, potential, g, alpha, h)`: `h` is a tensor of shape `(batch, m)`; `R(h)` returns shape
   `(batch, m, m)`; `potential(h)` returns $V$, shape `(batch,)`; `g(h)` returns shape `(batch, m)`; `alpha` a
   number. Compute $\nabla V$ with `torch.autograd.grad`, **keeping the graph** so that the field can be
   trained, and return $f(h)$, shape `(batch, m)`, without modifying `h`.""",
    solution='''def onsager_field(R, potential, g, alpha, h):
    """f(h) = -(M + W) grad V(h) + g(h) with M = L L^T + alpha I, W = U - U^T from the raw matrices R(h)."""
    h = h if h.requires_grad else h.detach().requires_grad_(True)
    grad_V = torch.autograd.grad(potential(h).sum(), h, create_graph=True)[0]
    raw = R(h)
    L, U = torch.tril(raw), torch.triu(raw, diagonal=1)
    M = L @ L.transpose(1, 2) + alpha * torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
    W = U - U.transpose(1, 2)
    return -((M + W) @ grad_V.unsqueeze(-1)).squeeze(-1) + g(h)''',
    visible_tests="""from mldyn_lite.selfcheck import check_onsager_field

print(check_onsager_field(onsager_field))""",
    hidden_tests="""_raw = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
_Q = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
_scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
_h = torch.tensor([[0.4, -0.2], [1.0, 0.5], [-0.3, 0.8]], dtype=torch.float64)
_f = onsager_field(lambda h: _raw.expand(len(h), 2, 2), lambda h: _scale * 0.5 * ((h @ _Q) * h).sum(-1),
                   lambda h: torch.zeros_like(h), 0.1, _h)
_L, _U = torch.tril(_raw), torch.triu(_raw, 1)
_expected = -(_L @ _L.T + 0.1 * torch.eye(2, dtype=torch.float64) + _U - _U.T) @ (1.5 * _Q @ _h.T)
assert tuple(_f.shape) == (3, 2) and torch.allclose(_f, _expected.T.detach(), atol=1e-12), (
    "hidden case 'constant R = [[1, 2], [0.5, -1]], V = 1.5 h^T Q h / 2, g = 0, alpha = 0.1: f = -(M + W) 1.5 Q h' "
    f"failed: expected {_expected.T.detach().tolist()}, got {_f.detach().tolist()}")
_f.sum().backward()
assert _scale.grad is not None and abs(_scale.grad.item() - (_expected.sum() / 1.5).item()) < 1e-10, (
    "hidden case 'the field stays differentiable in the parameters of V (create_graph=True)' failed: "
    f"d(sum f)/d(scale) expected {(_expected.sum() / 1.5).item():.6f}, got {_scale.grad}")""",
    mistake='''def onsager_field(R, potential, g, alpha, h):
    """W = U^T - U: the antisymmetric part with the wrong sign."""
    h = h if h.requires_grad else h.detach().requires_grad_(True)
    grad_V = torch.autograd.grad(potential(h).sum(), h, create_graph=True)[0]
    raw = R(h)
    L, U = torch.tril(raw), torch.triu(raw, diagonal=1)
    M = L @ L.transpose(1, 2) + alpha * torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
    W = U.transpose(1, 2) - U
    return -((M + W) @ grad_V.unsqueeze(-1)).squeeze(-1) + g(h)''',
    mistake_name="W = Uᵀ - U",
)

COMMITTOR = Problem(
    label="ex-ch4-committor-1d",
    title="The committor in one dimension",
    kind="derive and implement",
    book_notebook="notebooks/ch4/04_committor_functions.ipynb",
    statement=r"""For $dX = -V'(X)\,dt + \sqrt{2kT}\,dW$ on the line with $A = (-\infty, a]$ and $B = [b, \infty)$ the
committor $q(x)$ (probability to reach $B$ before $A$) solves $kT\,q'' - V' q' = 0$, $q(a) = 0$, $q(b) = 1$.

1. Solve it: $q(x) = \int_a^x e^{V(s)/kT}\,ds \big/ \int_a^b e^{V(s)/kT}\,ds$.
2. Write `committor_1d(V, a, b, kT, x)`: `V` a vectorised potential (numpy array in, array of the same shape out),
   numbers `a < b` and `kT > 0`, `x` a 1-D numpy array of points in $[a, b]$ in any order, which you must not
   modify. Return a numpy array of the shape of `x` with $q(x_i)$, accurate to $10^{-4}$ — also for high
   barriers, where $e^{V/kT}$ overflows unless you are careful.""",
    solution='''def committor_1d(V, a, b, kT, x):
    """q(x) = int_a^x e^{V/kT} / int_a^b e^{V/kT}: trapezoidal rule on 4001 points, then linear interpolation."""
    grid = np.linspace(a, b, 4001)
    exponent = V(grid) / kT
    density = np.exp(exponent - exponent.max())  # the factor e^{max V/kT} cancels in the ratio: no overflow
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    return np.interp(x, grid, cumulative / cumulative[-1])''',
    visible_tests="""from mldyn_lite.selfcheck import check_committor

print(check_committor(committor_1d))""",
    hidden_tests="""_x = np.array([0.5, -0.5, 0.9, 0.0, -0.9])
_c, _kT = 1.5, 0.4
_expected = (np.exp(_c * _x / _kT) - np.exp(-_c / _kT)) / (np.exp(_c / _kT) - np.exp(-_c / _kT))
_q = np.asarray(committor_1d(lambda s: _c * s, -1.0, 1.0, _kT, _x))
assert _q.shape == (5,) and np.abs(_q - _expected).max() < 1e-4, (
    "hidden case 'linear potential V = 1.5 x on [-1, 1], kT = 0.4, points in any order' failed: "
    f"expected {np.round(_expected, 5).tolist()}, got {np.round(_q, 5).tolist()}")
with np.errstate(over="ignore", invalid="ignore"):
    _q = np.asarray(committor_1d(lambda s: 100 * (s**2 - 1) ** 2, -1.0, 1.0, 0.1, np.array([0.0, -0.5, 0.5])))
assert np.all(np.isfinite(_q)) and abs(_q[0] - 0.5) < 1e-4 and abs(_q[1] + _q[2] - 1) < 1e-4, (
    "hidden case 'a barrier V/kT = 1000 on [-1, 1] (symmetric, so q(0) = 1/2 and q(-x) + q(x) = 1)' failed: "
    f"got q(0), q(-0.5), q(0.5) = {_q.tolist()} (does exp overflow?)")""",
    mistake='''def committor_1d(V, a, b, kT, x):
    """e^{-V/kT}: the Boltzmann weight instead of its inverse."""
    grid = np.linspace(a, b, 4001)
    exponent = -V(grid) / kT
    density = np.exp(exponent - exponent.max())
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    return np.interp(x, grid, cumulative / cumulative[-1])''',
    mistake_name="e^{-V/kT} instead of e^{V/kT}",
)

MFPT = Problem(
    label="cw-ch4-mean-first-passage",
    title="How long a transition takes: the mean first passage time",
    kind="derive and implement",
    statement=r"""For the same diffusion $dX = -V'(X)\,dt + \sqrt{2kT}\,dW$, let $\tau(x)$ be the mean time to reach $b$
from $x \in [a, b]$ when $a$ is a *reflecting* wall. Like the committor, it solves a backward equation:
$kT\,\tau'' - V'\tau' = -1$ with $\tau'(a) = 0$ and $\tau(b) = 0$.

1. Derive (integrating factor $e^{-V/kT}$, twice) that
   $\tau(x) = \frac{1}{kT}\int_x^b e^{V(y)/kT} \int_a^y e^{-V(z)/kT}\,dz\,dy$, and check it on free diffusion
   $V = 0$: $\tau(x) = \big((b - a)^2 - (x - a)^2\big)/(2kT)$.
2. Write `mean_first_passage_time_1d(V, a, b, kT, x)`: arguments as for `committor_1d` (a vectorised `V`,
   numbers `a < b`, `kT > 0`, a 1-D numpy array `x` of points in $[a, b]$, in any order); return a numpy array of
   the shape of `x` with $\tau(x_i)$ to a relative accuracy of $10^{-4}$.
3. For a double well with barrier $\Delta V$, how should $\tau$ grow as $kT \to 0$ (Arrhenius/Kramers)?""",
    solution='''def mean_first_passage_time_1d(V, a, b, kT, x):
    """tau(x) = (1/kT) int_x^b e^{V(y)/kT} int_a^y e^{-V(z)/kT} dz dy, by cumulative trapezoidal rules on 4001 points."""
    grid = np.linspace(a, b, 4001)
    potential = V(grid) / kT
    step = np.diff(grid)
    inner = np.concatenate([[0.0], np.cumsum(0.5 * (np.exp(-potential[1:]) + np.exp(-potential[:-1])) * step)])
    outer_density = np.exp(potential) * inner
    outer = np.concatenate([[0.0], np.cumsum(0.5 * (outer_density[1:] + outer_density[:-1]) * step)])
    return np.interp(x, grid, (outer[-1] - outer) / kT)''',
    visible_tests="""_x = np.array([0.0, 0.5, 1.0, 2.0])
_tau = np.asarray(mean_first_passage_time_1d(lambda s: 0 * s, 0.0, 2.0, 0.5, _x))
_expected = (4.0 - _x**2) / (2 * 0.5)
assert _tau.shape == (4,) and np.allclose(_tau, _expected, rtol=1e-4, atol=1e-8), (
    f"free diffusion on [0, 2], kT = 0.5: expected ((b-a)^2 - (x-a)^2) / (2 kT) = {_expected.tolist()}, "
    f"got {np.round(_tau, 5).tolist()}")""",
    hidden_tests="""_c, _kT, _a, _b = 2.0, 0.5, -1.0, 1.0
_x = np.array([0.7, -1.0, 0.0, -0.4])
_expected = ((_kT / _c) * (np.exp(_c * (_b - _a) / _kT) - np.exp(_c * (_x - _a) / _kT)) - (_b - _x)) / _c
_tau = np.asarray(mean_first_passage_time_1d(lambda s: _c * s, _a, _b, _kT, _x))
assert _tau.shape == (4,) and np.allclose(_tau, _expected, rtol=1e-4), (
    "hidden case 'uphill to b: V = 2x on [-1, 1], kT = 0.5, points in any order' failed: "
    f"expected {np.round(_expected, 4).tolist()}, got {np.round(_tau, 4).tolist()}")
_expected = ((_kT / -_c) * (np.exp(-_c * (_b - _a) / _kT) - np.exp(-_c * (_x - _a) / _kT)) - (_b - _x)) / -_c
_tau = np.asarray(mean_first_passage_time_1d(lambda s: -_c * s, _a, _b, _kT, _x))
assert np.allclose(_tau, _expected, rtol=1e-4), (
    "hidden case 'downhill to b: V = -2x on [-1, 1], kT = 0.5' failed: "
    f"expected {np.round(_expected, 4).tolist()}, got {np.round(_tau, 4).tolist()}")""",
    mistake='''def mean_first_passage_time_1d(V, a, b, kT, x):
    """The signs of the two exponents swapped."""
    grid = np.linspace(a, b, 4001)
    potential = V(grid) / kT
    step = np.diff(grid)
    inner = np.concatenate([[0.0], np.cumsum(0.5 * (np.exp(potential[1:]) + np.exp(potential[:-1])) * step)])
    outer_density = np.exp(-potential) * inner
    outer = np.concatenate([[0.0], np.cumsum(0.5 * (outer_density[1:] + outer_density[:-1]) * step)])
    return np.interp(x, grid, (outer[-1] - outer) / kT)''',
    mistake_name="swapped signs of the exponents",
)

PROBLEMS = [ONSAGER, COMMITTOR, MFPT]
