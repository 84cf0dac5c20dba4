"""Graded problems of chapter 2 (see :mod:`mldyn_lite.coursework_problems`)."""

from __future__ import annotations

from . import Problem

__all__ = ["PROBLEMS"]

COSTATE = Problem(
    label="ex-ch2-costate",
    title="The backward pass of a ResNet as a costate recursion",
    kind="derive and implement",
    book_notebook="notebooks/ch2/04_msa_training.ipynb",
    statement=r"""The ResNet $x_{n+1} = x_n + \delta \tanh(W_n x_n + b_n)$, $n = 0, \dots, N-1$, maps each sample
$x_0^i \in \mathbb R^d$ to $x_N^i$; the loss is $J = \frac1S \sum_i (\mathbf 1^\top x_N^i - y^i)^2$. In the
method of successive approximations the costates $p_n^i = -\partial J / \partial x_n^i$ run backwards.

1. Derive the terminal costate $p_N^i = -\frac1S \nabla\Phi(x_N^i, y^i)$ for this loss, and the recursion
   $p_n = p_{n+1} + \delta\, W_n^\top\big((1 - \tanh^2(W_n x_n + b_n)) \odot p_{n+1}\big)$.
2. Write `costate_pass(states, weights, biases, y, delta)`: `states` has shape `(N+1, S, d)` (the states
   $x_0, \dots, x_N$), `weights` `(N, d, d)`, `biases` `(N, d)`, `y` `(S,)`, `delta` a float; return all costates
   as one tensor of shape `(N+1, S, d)`, with `p[n]` $= p_n$.""",
    solution='''def costate_pass(states, weights, biases, y, delta):
    """Costates p_0, ..., p_N of J = mean_i (1^T x_N^i - y^i)^2, by the backward recursion; shape (N+1, S, d)."""
    S = states.shape[1]
    p = [None] * len(states)
    residual = states[-1].sum(dim=1) - y                                        # 1^T x_N^i - y^i, shape (S,)
    p[-1] = -2 / S * residual[:, None] * torch.ones_like(states[-1])            # p_N = -(1/S) grad Phi
    for n in reversed(range(len(weights))):
        slope = 1 - torch.tanh(states[n] @ weights[n].T + biases[n]) ** 2       # tanh' at layer n, at x_n
        p[n] = p[n + 1] + delta * (slope * p[n + 1]) @ weights[n]               # p_{n+1} + delta W_n^T (slope * p_{n+1})
    return torch.stack(p)''',
    visible_tests="""from mldyn_lite.selfcheck import check_costate

print(check_costate(costate_pass))""",
    hidden_tests="""_g = torch.Generator().manual_seed(123)
_N, _S, _d, _delta = 3, 4, 2, 0.1
_W = torch.randn(_N, _d, _d, generator=_g, dtype=torch.float64)
_b = torch.randn(_N, _d, generator=_g, dtype=torch.float64)
_y = torch.randn(_S, generator=_g, dtype=torch.float64)
_xs = [torch.randn(_S, _d, generator=_g, dtype=torch.float64).requires_grad_(True)]
for _n in range(_N):
    _xs.append(_xs[-1] + _delta * torch.tanh(_xs[-1] @ _W[_n].T + _b[_n]))
    _xs[-1].retain_grad()
((_xs[-1].sum(dim=1) - _y) ** 2).mean().backward()
_expected = -torch.stack([x.grad for x in _xs])
_got = costate_pass(torch.stack([x.detach() for x in _xs]), _W, _b, _y, _delta)
assert tuple(_got.shape) == (_N + 1, _S, _d) and torch.allclose(_got, _expected, atol=1e-12), (
    "hidden case 'N = 3 layers, S = 4 samples in R^2, delta = 0.1: costates against -dJ/dx_n by autograd' failed: "
    f"largest difference {(_got - _expected).abs().max().item():.3g} (p_N expected {_expected[-1].tolist()}, "
    f"got {_got[-1].tolist()})")
_p0 = costate_pass(torch.stack([x.detach() for x in _xs[:1]]), _W[:0], _b[:0], _y, _delta)
assert tuple(_p0.shape) == (1, _S, _d) and torch.allclose(_p0[0], -2 / _S * (_xs[0].detach().sum(1) - _y)[:, None]
                                                           * torch.ones(_S, _d, dtype=torch.float64)), (
    "hidden case 'a network with no layers (N = 0): only the terminal costate' failed")""",
    mistake='''def costate_pass(states, weights, biases, y, delta):
    """The terminal costate without the factor 2 of the squared loss."""
    S = states.shape[1]
    p = [None] * len(states)
    p[-1] = -1 / S * (states[-1].sum(dim=1) - y)[:, None] * torch.ones_like(states[-1])
    for n in reversed(range(len(weights))):
        slope = 1 - torch.tanh(states[n] @ weights[n].T + biases[n]) ** 2
        p[n] = p[n + 1] + delta * (slope * p[n + 1]) @ weights[n]
    return torch.stack(p)''',
    mistake_name="terminal costate without the factor 2",
)

NOISE_COVARIANCE = Problem(
    label="ex-ch2-mlp-covariance",
    title="The gradient-noise covariance of a network",
    kind="derive and implement",
    book_notebook="notebooks/ch2/06_sgd_as_sde.ipynb",
    statement=r"""SGD with batches of $B$ samples drawn with replacement from $n$ samples has gradient noise of
covariance $\Sigma(\theta) = \frac1B \cdot \frac1n \sum_i (g_i - \bar g)(g_i - \bar g)^\top$, where $g_i$ is the
gradient of the per-sample loss $\frac12(\mathrm{net}(x_i) - y_i)^2$ in all $P$ parameters and $\bar g$ their mean.

1. Derive this formula from the variance of one sampled gradient (why $1/B$?).
2. Write `gradient_noise_covariance(net, X, y, batch_size)`: `net` is a `torch.nn.Module` with one output,
   `X` has shape `(n, d_in)` and `y` `(n,)`; return $\Sigma$ of shape `(P, P)`, with the gradients flattened in
   the order of `net.parameters()`. Do not change the network's parameters.""",
    solution='''from torch.func import functional_call, grad, vmap


def gradient_noise_covariance(net, X, y, batch_size):
    """Sigma(theta) of section 4 for the losses (net(x_i) - y_i)^2 / 2, over all P parameters of net; shape (P, P)."""
    params = {name: p.detach() for name, p in net.named_parameters()}

    def sample_loss(p, xi, yi):
        return 0.5 * (functional_call(net, p, (xi[None, :],))[0, 0] - yi) ** 2

    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, X, y)        # one gradient per sample
    flat = torch.cat([g.reshape(len(X), -1) for g in grads.values()], dim=1)    # rows g_i, shape (n, P)
    centred = flat - flat.mean(dim=0)                                          # g_i - grad J
    return centred.T @ centred / (len(X) * batch_size)''',
    visible_tests="""from mldyn_lite.selfcheck import check_gradient_noise_covariance

print(check_gradient_noise_covariance(gradient_noise_covariance))""",
    hidden_tests="""_g = torch.Generator().manual_seed(77)
_net = torch.nn.Sequential(torch.nn.Linear(2, 3, bias=False), torch.nn.Tanh(), torch.nn.Linear(3, 1, bias=False)).double()
with torch.no_grad():
    for _p in _net.parameters():
        _p.copy_(torch.randn(_p.shape, generator=_g, dtype=torch.float64))
_X = torch.randn(12, 2, generator=_g, dtype=torch.float64)
_y = torch.randn(12, generator=_g, dtype=torch.float64)
_rows = []
for _i in range(12):
    _loss = 0.5 * (_net(_X[_i:_i + 1])[0, 0] - _y[_i]) ** 2
    _rows.append(torch.cat([q.reshape(-1) for q in torch.autograd.grad(_loss, list(_net.parameters()))]))
_G = torch.stack(_rows) - torch.stack(_rows).mean(0)
_expected = _G.T @ _G / (12 * 4)
_got = torch.as_tensor(gradient_noise_covariance(_net, _X, _y, 4)).detach()
assert tuple(_got.shape) == (9, 9) and torch.allclose(_got, _expected, rtol=1e-8, atol=1e-12), (
    "hidden case 'tanh network 2-3-1 without biases (P = 9), n = 12, B = 4' failed: largest difference "
    f"{(_got - _expected).abs().max().item() if _got.shape == _expected.shape else _got.shape}; trace expected "
    f"{_expected.trace().item():.4g}, got {_got.trace().item():.4g}")""",
    mistake='''from torch.func import functional_call, grad, vmap


def gradient_noise_covariance(net, X, y, batch_size):
    """The covariance of one sampled gradient: the 1/B of a batch is missing."""
    params = {name: p.detach() for name, p in net.named_parameters()}

    def sample_loss(p, xi, yi):
        return 0.5 * (functional_call(net, p, (xi[None, :],))[0, 0] - yi) ** 2

    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, X, y)
    flat = torch.cat([g.reshape(len(X), -1) for g in grads.values()], dim=1)
    centred = flat - flat.mean(dim=0)
    return centred.T @ centred / len(X)''',
    mistake_name="covariance without the factor 1/B",
)

STATIONARY = Problem(
    label="cw-ch2-sgd-stationary-covariance",
    title="Where SGD settles on a quadratic, exactly, and where the SDE is wrong",
    kind="derive and implement",
    statement=r"""On the quadratic loss $J(x) = \frac12 x^\top H x$ ($H$ symmetric positive definite) SGD with learning
rate $\eta$ is $x_{k+1} = x_k - \eta(Hx_k + \xi_k)$, with i.i.d. noise $\xi_k$ of mean 0 and covariance $\Sigma$.

1. Show that the covariance $C_k$ of $x_k$ obeys $C_{k+1} = (I - \eta H) C_k (I - \eta H)^\top + \eta^2 \Sigma$,
   so a stationary covariance solves the *discrete Lyapunov equation* $C = (I - \eta H) C (I - \eta H)^\top +
   \eta^2\Sigma$, and that it exists exactly when every eigenvalue $h$ of $H$ has $0 < \eta h < 2$. For scalars,
   $C = \eta\sigma^2 / \big(h(2 - \eta h)\big)$.
2. The SDE approximation (chapter 2, SME) predicts instead $HC + CH = \eta\Sigma$, i.e. $\eta\sigma^2/(2h)$ for
   scalars. By which factor is it wrong, and when does that matter?
3. Write `sgd_stationary_covariance(H, Sigma, eta)`: numpy arrays `H` and `Sigma` of shape `(d, d)`, a float `eta`;
   return the exact stationary covariance $C$ (shape `(d, d)`, symmetric). When no stationary covariance exists,
   raise `ValueError` with a message naming `eta`. (`scipy.linalg.solve_discrete_lyapunov` may help.)""",
    solution='''from scipy.linalg import solve_discrete_lyapunov


def sgd_stationary_covariance(H, Sigma, eta):
    """C = (I - eta H) C (I - eta H)^T + eta^2 Sigma, the stationary covariance of SGD on a quadratic."""
    H, Sigma = np.asarray(H, dtype=float), np.asarray(Sigma, dtype=float)
    step = np.eye(len(H)) - eta * H
    if np.abs(np.linalg.eigvals(step)).max() >= 1:
        raise ValueError(f"eta = {eta}: I - eta H has an eigenvalue of modulus >= 1, SGD has no stationary covariance")
    C = solve_discrete_lyapunov(step, eta**2 * Sigma)
    return (C + C.T) / 2''',
    visible_tests="""_C = np.asarray(sgd_stationary_covariance(np.array([[2.0]]), np.array([[1.0]]), 0.1))
assert _C.shape == (1, 1) and abs(_C[0, 0] - 0.1 / (2 * 1.8)) < 1e-12, (
    f"scalar case h = 2, sigma^2 = 1, eta = 0.1: expected eta sigma^2 / (h (2 - eta h)) = 0.02778, got {_C}")""",
    hidden_tests="""_h, _s, _eta = np.array([0.5, 4.0, 9.0]), np.array([1.0, 2.0, 0.5]), 0.1
_C = np.asarray(sgd_stationary_covariance(np.diag(_h), np.diag(_s), _eta))
_expected = np.diag(_eta * _s / (_h * (2 - _eta * _h)))
assert _C.shape == (3, 3) and np.allclose(_C, _expected, rtol=1e-10, atol=1e-14), (
    "hidden case 'diagonal H = diag(0.5, 4, 9), eta = 0.1 (eta h up to 0.9, where the SDE is off by a factor 1.8)' "
    f"failed: expected diagonal {np.diag(_expected).round(6).tolist()}, got {np.round(_C, 6).tolist()}")
_rng = np.random.default_rng(3)
_Q = np.linalg.qr(_rng.standard_normal((4, 4)))[0]
_H = _Q @ np.diag([0.3, 1.0, 2.0, 5.0]) @ _Q.T
_L = _rng.standard_normal((4, 4))
_Sigma = _L @ _L.T
_C = np.asarray(sgd_stationary_covariance(_H, _Sigma, 0.3))
_A = np.eye(4) - 0.3 * _H
_residual = np.abs(_A @ _C @ _A.T + 0.09 * _Sigma - _C).max() / np.abs(_C).max()
assert np.allclose(_C, _C.T) and _residual < 1e-10, (
    "hidden case 'H and Sigma that do not commute (4x4), eta = 0.3' failed: C is not symmetric or does not solve "
    f"C = (I - eta H) C (I - eta H)^T + eta^2 Sigma (relative residual {_residual:.3g})")
try:
    sgd_stationary_covariance(np.diag([1.0, 25.0]), np.eye(2), 0.1)
except ValueError:
    pass
else:
    raise AssertionError("hidden case 'eta h = 2.5 > 2: SGD diverges' failed: expected a ValueError, got a covariance")""",
    mistake='''from scipy.linalg import solve_continuous_lyapunov


def sgd_stationary_covariance(H, Sigma, eta):
    """The SDE's answer H C + C H = eta Sigma: right only to first order in eta."""
    H, Sigma = np.asarray(H, dtype=float), np.asarray(Sigma, dtype=float)
    if np.abs(np.linalg.eigvals(np.eye(len(H)) - eta * H)).max() >= 1:
        raise ValueError(f"eta = {eta}: no stationary covariance")
    return solve_continuous_lyapunov(H, eta * Sigma)''',
    mistake_name="the SDE's continuous Lyapunov equation instead of the discrete one",
)

NESTEROV = Problem(
    label="ex-ch2-nesterov-transition",
    title="The transition matrix of Nesterov's method",
    kind="derive and implement",
    book_notebook="notebooks/ch2/10_sgd_variants.ipynb",
    statement=r"""In the variables of the momentum SME (step $h = \sqrt\eta$, velocity $V = v/h$, friction $\lambda$,
momentum $\mu = 1 - \lambda h$), Nesterov's method on the noisy quadratic $\nabla f_\gamma(x) = ax + \sigma\xi$ is
$V_{k+1} = \mu V_k - h\nabla f_\gamma(x_k + h\mu V_k)$, $x_{k+1} = x_k + hV_{k+1}$.

1. Show that $(x_{k+1}, V_{k+1}) = M(x_k, V_k) + b\,\xi_k$ for a matrix $M$ and a vector $b$, and derive them.
2. Write `nesterov_transition(a, sigma, friction, h)` returning `(M, b)` as numpy arrays of shapes `(2, 2)` and `(2,)`.""",
    solution="""def nesterov_transition(a, sigma, friction, h):
    mu = 1.0 - friction * h
    velocity = np.array([-h * a, mu - h * a * h * mu])       # V_{k+1} = -h a x_k + (mu - h^2 a mu) V_k - h sigma xi
    M = np.stack([np.array([1.0, 0.0]) + h * velocity, velocity])   # x_{k+1} = x_k + h V_{k+1}
    return M, np.array([-h * h * sigma, -h * sigma])""",
    visible_tests="""from mldyn_lite.selfcheck import check_nesterov_transition

print(check_nesterov_transition(nesterov_transition))""",
    hidden_tests="""_a, _sigma, _friction, _h = 1.7, 0.6, 2.5, 0.2
_mu = 1.0 - _friction * _h
_M, _b = (np.asarray(v, dtype=float) for v in nesterov_transition(_a, _sigma, _friction, _h))
for _x, _V, _xi in [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.3, -0.7, 1.5)]:
    _V_new = _mu * _V - _h * (_a * (_x + _h * _mu * _V) + _sigma * _xi)   # one step of the method itself
    _expected = np.array([_x + _h * _V_new, _V_new])
    _got = _M @ np.array([_x, _V]) + _b * _xi
    assert np.allclose(_got, _expected, atol=1e-12), (
        f"hidden case 'one step from (x, V) = ({_x}, {_V}) with xi = {_xi}, a = 1.7, sigma = 0.6, friction = 2.5, "
        f"h = 0.2' failed: expected {_expected.tolist()}, got {_got.tolist()}")""",
    mistake='''def nesterov_transition(a, sigma, friction, h):
    """The heavy ball instead: the gradient at x_k, not at the look-ahead point."""
    mu = 1.0 - friction * h
    velocity = np.array([-h * a, mu])
    M = np.stack([np.array([1.0, 0.0]) + h * velocity, velocity])
    return M, np.array([-h * h * sigma, -h * sigma])''',
    mistake_name="the heavy ball's gradient at x_k instead of the look-ahead point",
)

PROBLEMS = [COSTATE, NOISE_COVARIANCE, STATIONARY, NESTEROV]
