r"""Self-checks of chapter 2.

* :func:`check_costate` — ex-ch2-costate (notebook 2.4): the backward costate pass of the discrete
  maximum principle for :math:`x_{n+1} = x_n + \delta\tanh(W_n x_n + b_n)` with the read-out loss
  :math:`J = \frac1S\sum_i (\mathbf 1^\top x_N^i - y^i)^2`,

  .. math::  p_N^i = -\tfrac2S(\mathbf 1^\top x_N^i - y^i)\,\mathbf 1, \qquad
             p_n^i = p_{n+1}^i + \delta W_n^\top\big[(1 - \tanh^2(W_n x_n^i + b_n)) \odot p_{n+1}^i\big],

  checked against :math:`p_n = -\partial J/\partial x_n` from torch's autograd;
* :func:`check_gradient_noise_covariance` — ex-ch2-mlp-covariance (notebook 2.6): the gradient-noise
  covariance of minibatches of :math:`B` samples drawn with replacement,

  .. math::  \Sigma(\theta) = \frac1B\cdot\frac1n\sum_{i=1}^n (g_i - \bar g)(g_i - \bar g)^\top, \qquad
             g_i = \nabla_\theta \tfrac12 (f_\theta(x_i) - y_i)^2,

  checked against per-sample gradients in closed form (a linear model) and by a loop over the
  samples with torch's autograd (a small network);
* :func:`check_nesterov_transition` — ex-ch2-nesterov-transition (notebook 2.10): the linear recursion
  :math:`z_{k+1} = Mz_k + b\xi_k` of Nesterov's method on a noisy quadratic, checked against
  :func:`mldyn_lite.momentum.momentum_transition`.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_callable
from ..numerics import generator as seeded_generator
from ._framework import CaseFailed, CheckResult, describe, diagnose, exercise_check, run_cases

__all__ = ["check_costate", "check_gradient_noise_covariance", "check_nesterov_transition"]


def _as_float64(got, expected_shape: tuple[int, ...], what: str, hint_list: str) -> torch.Tensor:
    """The reader's answer as a float64 tensor; a list of tensors gets a hint to stack it."""
    if isinstance(got, (list, tuple)) and got and all(isinstance(g, torch.Tensor) for g in got):
        raise CaseFailed(
            f"a torch.Tensor of shape {expected_shape}", f"a {type(got).__name__} of {len(got)} tensors", hint_list
        )
    if isinstance(got, np.ndarray):
        got = torch.from_numpy(got)
    if not isinstance(got, torch.Tensor):
        raise CaseFailed(f"a torch.Tensor of shape {expected_shape}", describe(got), f"return {what} as a tensor")
    return got.detach().to(torch.float64)


# --- chapter 2 · notebook 2.4: the costate pass -------------------------------------------------


def _readout_loss(final_state, y):
    return (final_state.sum(dim=1) - y).pow(2).mean()


def _network(seed: int, layers: int, d: int, S: int, delta: float):
    """A random residual network, its states, and the costates p_n = -dJ/dx_n from autograd."""
    generator = seeded_generator(seed)
    weights = 1.2 * torch.randn(layers, d, d, generator=generator, dtype=torch.float64) / np.sqrt(d)
    biases = 0.5 * torch.randn(layers, d, generator=generator, dtype=torch.float64)
    x0 = torch.randn(S, d, generator=generator, dtype=torch.float64)
    y = torch.randn(S, generator=generator, dtype=torch.float64)
    with torch.enable_grad():
        states = [x0.clone().requires_grad_(True)]
        for n in range(layers):
            states.append(states[-1] + delta * torch.tanh(states[-1] @ weights[n].T + biases[n]))
        gradients = torch.autograd.grad(_readout_loss(states[-1], y), states)
    costates = -torch.stack(gradients)
    return torch.stack(states).detach(), weights, biases, y, costates


def _costate_variant(
    states, weights, biases, y, delta, *, terminal_factor=2.0, batch_mean=True, sign=-1.0, step=None, reverse=False
):
    """The costate pass with one piece changed: the typical mistakes are built from it."""
    S = states.shape[1]
    residual = states[-1].sum(dim=1) - y
    p_N = sign * terminal_factor * residual[:, None].expand_as(states[-1]) / (S if batch_mean else 1)
    if step is None:

        def step(n, p):
            slope = 1 - torch.tanh(states[n] @ weights[n].T + biases[n]) ** 2
            return p + delta * (slope * p) @ weights[n]

    p = [p_N]
    for n in reversed(range(weights.shape[0])):
        p.append(step(n, p[-1]))
    return torch.stack(p if reverse else p[::-1])


def _costate_mistakes(states, weights, biases, y, delta) -> list[tuple[torch.Tensor, str]]:
    """What the typical wrong costate passes return on this case, with the hint for each."""

    def variant(**changes):
        return _costate_variant(states, weights, biases, y, delta, **changes)

    def slope(n, at=None):
        x = states[n] if at is None else at
        return 1 - torch.tanh(x @ weights[n].T + biases[n]) ** 2

    return [
        (
            variant(sign=1.0),
            "the sign is flipped: this is +∂J/∂x_n; the book's costate is p_n = -∂J/∂x_n, so p_N = -(2/S)(1ᵀx_N - y) 1",
        ),
        (
            variant(step=lambda n, p: p + delta * (slope(n) * p) @ weights[n].T),
            "the Jacobian is not transposed: p_n = p_{n+1} + δ W_nᵀ[(1 - tanh²) ⊙ p_{n+1}]; with states as rows "
            "of shape (S, d) this is (slope * p) @ W_n, not @ W_n.T",
        ),
        (
            variant(step=lambda n, p: p + delta * slope(n) * (p @ weights[n])),
            "the factor 1 - tanh² multiplies after W_nᵀ: it belongs inside, "
            "δ W_nᵀ[(1 - tanh²(W_n x_n + b_n)) ⊙ p_{n+1}], i.e. (slope * p) @ W_n",
        ),
        (
            variant(step=lambda n, p: p + delta * (slope(n, states[n + 1]) * p) @ weights[n]),
            "the Jacobian of layer n is evaluated at x_{n+1}: the derivative of g(x_n, θ_n) is taken at x_n, "
            "so use states[n] in tanh(W_n x_n + b_n)",
        ),
        (
            variant(step=lambda n, p: delta * (slope(n) * p) @ weights[n]),
            "the identity of the skip connection is missing: ∇_x g = I + δ W_nᵀ diag(1 - tanh²), "
            "so p_n = p_{n+1} + δ W_nᵀ[…]",
        ),
        (
            variant(step=lambda n, p: p + delta * ((1 - torch.tanh(states[n] @ weights[n].T + biases[n])) * p) @ weights[n]),
            "tanh'(z) = 1 - tanh(z)², with the square",
        ),
        (
            variant(step=lambda n, p: p + 0.25 * (slope(n) * p) @ weights[n]),
            "δ is hard-coded as 0.25, the value of the notebook: use the argument delta",
        ),
        (
            variant(batch_mean=False),
            "the terminal costate misses the factor 1/S of the batch mean: p_N^i = -(2/S)(1ᵀx_N^i - y^i) 1",
        ),
        (
            variant(terminal_factor=1.0),
            "the terminal costate misses the factor 2 from the square: p_N^i = -(2/S)(1ᵀx_N^i - y^i) 1",
        ),
        (
            variant(terminal_factor=1.0, batch_mean=False),
            "the terminal costate misses the factors 2 and 1/S: p_N^i = -(2/S)(1ᵀx_N^i - y^i) 1",
        ),
        (
            variant(reverse=True),
            "the costates are in backward order: index n must hold p_n, so p[0] is p_0 and p[-1] is p_N "
            "(reverse the list before stacking)",
        ),
    ]


def _check_costate_case(costate_pass, seed, layers, d, S, delta):
    states, weights, biases, y, reference = _network(seed, layers, d, S, delta)
    inputs = [t.clone() for t in (states, weights, biases, y)]
    got = costate_pass(*inputs, delta)
    for name, given, original in zip(("states", "weights", "biases", "y"), inputs, (states, weights, biases, y)):
        if not torch.equal(given, original):
            raise CaseFailed(
                f"{name} unchanged",
                f"{name} was modified in place",
                "compute new tensors (p = p + ..., not p += ... on a view of the inputs)",
            )
    shape = tuple(states.shape)
    got = _as_float64(
        got, shape, "all costates p_0, …, p_N", "stack the costates into one tensor: torch.stack(p), with p[n] = p_n"
    )
    if tuple(got.shape) != shape:
        if tuple(got.shape) == shape[1:]:
            hint = "return every costate p_0, …, p_N, stacked (shape (N+1, S, d)), not only p_0"
        elif got.ndim == 3 and got.shape[0] == layers and got.shape[1:] == states.shape[1:]:
            hint = "there are N+1 costates, p_0 to p_N: keep the terminal costate p_N and p_0 both"
        elif got.ndim == 2 and got.shape == (layers + 1, d):
            hint = "keep one costate per sample: p_n^i for each i, not summed over the batch"
        else:
            hint = "the costates have the shape of the states: (N+1, S, d)"
        raise CaseFailed(f"shape {shape} (the shape of states)", f"shape {tuple(got.shape)}", hint)
    if not torch.allclose(got, reference, rtol=1e-6, atol=1e-10):
        error = (got - reference).abs().amax(dim=(1, 2))
        wrong = [n for n in range(layers + 1) if error[n] > 1e-10 + 1e-6 * reference[n].abs().max()]
        first_wrong = max(wrong, default=layers)  # the pass runs backwards: the first wrong one has the largest n
        hint = diagnose(
            got,
            _costate_mistakes(states, weights, biases, y, delta),
            f"the first wrong costate is p_{first_wrong} (the pass runs from n = N = {layers} "
            "down): check p_N = -(2/S)(1ᵀx_N - y) 1, then one step "
            "p_n = p_{n+1} + δ W_nᵀ[(1 - tanh²(W_n x_n + b_n)) ⊙ p_{n+1}]",
        )
        k = first_wrong
        raise CaseFailed(
            f"p_{k} = -∂J/∂x_{k} (autograd; p_{k} is the first wrong costate): {describe(reference[k])}",
            f"p_{k}: {describe(got[k])}",
            hint,
        )


@exercise_check("ex-ch2-costate")
def check_costate(costate_pass) -> CheckResult:
    r"""Check ``costate_pass(states, weights, biases, y, delta)`` of notebook 2.4.

    ``states`` has shape ``(N+1, S, d)`` (from ``control.resnet_states``), ``weights`` ``(N, d, d)``,
    ``biases`` ``(N, d)``, targets ``y`` ``(S,)``; the answer is the stack of costates
    :math:`p_0, \dots, p_N` of the read-out loss :math:`J = \frac1S\sum_i (\mathbf 1^\top x_N^i - y^i)^2`,
    shape ``(N+1, S, d)``, which must equal :math:`-\partial J/\partial x_n` from torch's autograd.
    Cases: fresh random networks — three layers in :math:`\mathbb R^4` with 5 samples, one layer in
    :math:`\mathbb R^2`, and twelve layers in :math:`\mathbb R^3` with a single sample — each with a
    step :math:`\delta \ne 0.25`.
    """
    check_callable("costate_pass", costate_pass)
    return run_cases(
        "ex-ch2-costate",
        costate_pass,
        [
            (
                "three layers, d=4, a batch of S=5, δ=0.3, random weights",
                lambda: _check_costate_case(costate_pass, seed=7, layers=3, d=4, S=5, delta=0.3),
            ),
            (
                "one layer (N=1), d=2, S=3, δ=0.5",
                lambda: _check_costate_case(costate_pass, seed=8, layers=1, d=2, S=3, delta=0.5),
            ),
            (
                "twelve layers, d=3, a single sample (S=1), δ=0.1",
                lambda: _check_costate_case(costate_pass, seed=9, layers=12, d=3, S=1, delta=0.1),
            ),
        ],
    )


# --- chapter 2 · notebook 2.6: the gradient-noise covariance of a network -----------------------


def _flat_parameters(net) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def _per_sample_gradients(net, X, y) -> torch.Tensor:
    """Rows g_i = gradient of ½(net(x_i) - y_i)² in the parameters, flattened in the order of net.parameters()."""
    parameters = list(net.parameters())
    rows = []
    with torch.enable_grad():
        for xi, yi in zip(X, y):
            loss = 0.5 * (net(xi[None, :])[0, 0] - yi) ** 2
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, parameters)]))
    return torch.stack(rows)


def _covariance_mistakes(G, batch_size) -> list[tuple[torch.Tensor, str]]:
    n = G.shape[0]
    centred = G - G.mean(dim=0)
    sigma = centred.T @ centred / (n * batch_size)
    return [
        (
            G.T @ G / (n * batch_size),
            "this is the second moment (1/(nB)) Σ g_i g_iᵀ: subtract the mean gradient first, g_i - ḡ with ḡ = ∇J",
        ),
        (
            sigma * batch_size,
            "the factor 1/B is missing: a minibatch of B independent samples averages the noise, Σ = (1/B)·(1/n)Σ(…)",
        ),
        (
            sigma * n / (n - 1),
            "you divided by n - 1: Σ is the exact covariance of one draw from the n samples, so divide by n (then by B)",
        ),
        (sigma / batch_size, "you divided by B twice: Σ = (1/B)·(1/n) Σ (g_i - ḡ)(g_i - ḡ)ᵀ"),
        (sigma * batch_size / 4, "the batch size is hard-coded as 4, the notebook's value: use the argument batch_size"),
        (
            sigma / n**2,
            "the per-sample gradients carry a factor 1/n: g_i is the gradient of ½(f(x_i) - y_i)² alone, "
            "not of the i-th term of the mean loss",
        ),
        (
            4 * sigma,
            "the per-sample loss is ½(f(x_i) - y_i)², with the ½: "
            "without it the gradients double and Σ is 4 times too large",
        ),
        (
            torch.zeros_like(sigma),
            "Σ is zero: every 'per-sample' gradient is the same, probably the gradient of the full-batch loss; "
            "differentiate each sample's loss separately (a loop, or torch.func.vmap(torch.func.grad(...)))",
        ),
    ]


def _check_covariance_case(covariance_fn, net, X, y, batch_size, per_sample):
    G = per_sample(net, X, y)
    centred = G - G.mean(dim=0)
    reference = centred.T @ centred / (X.shape[0] * batch_size)
    P = G.shape[1]
    parameters, X_in, y_in = _flat_parameters(net), X.clone(), y.clone()
    got = covariance_fn(net, X_in, y_in, batch_size)
    if not torch.equal(_flat_parameters(net), parameters):
        raise CaseFailed(
            "the parameters of net unchanged",
            "net's parameters were changed",
            "compute the gradients at the given parameters; do not train or update net",
        )
    if not (torch.equal(X_in, X) and torch.equal(y_in, y)):
        raise CaseFailed("X and y unchanged", "X or y was modified in place", "do not write into the data")
    got = _as_float64(got, (P, P), "Σ", "return Σ as one (P, P) tensor")
    if tuple(got.shape) != (P, P):
        if tuple(got.shape) == (X.shape[0], P):
            hint = "these look like the per-sample gradients (n, P): form their covariance, shape (P, P)"
        else:
            hint = (
                f"Σ is a P × P matrix over all {P} parameters of net, flattened in the order of "
                "net.parameters() and concatenated"
            )
        raise CaseFailed(f"shape {(P, P)} (P = {P} parameters)", f"shape {tuple(got.shape)}", hint)
    scale = float(reference.abs().max())
    if not torch.allclose(got, reference, rtol=1e-6, atol=1e-9 * scale):
        default = (
            "Σ = (1/B)·(1/n) Σ_i (g_i - ḡ)(g_i - ḡ)ᵀ with g_i the gradient of ½(net(x_i) - y_i)² in all "
            "parameters; compare your g_i for one sample with torch.autograd.grad"
        )
        eigenvalues_got, eigenvalues = torch.linalg.eigvalsh(0.5 * (got + got.T)), torch.linalg.eigvalsh(reference)
        if torch.allclose(eigenvalues_got, eigenvalues, rtol=1e-6, atol=1e-9 * scale):
            default = (
                "the right eigenvalues, with the parameters in another order: concatenate the flattened "
                "gradients in the order of net.parameters() (weight, then bias, layer by layer)"
            )
        hint = diagnose(got, _covariance_mistakes(G, batch_size), default)
        raise CaseFailed(describe(reference), describe(got), hint)


def _linear_gradients(net, X, y):
    """Per-sample gradients of the linear model f(x) = wᵀx + b in closed form: (r_i x_i, r_i)."""
    residual = (X @ net.weight.detach()[0] + net.bias.detach()[0] - y)[:, None]
    return torch.cat([residual * X, residual], dim=1)


@exercise_check("ex-ch2-mlp-covariance")
def check_gradient_noise_covariance(gradient_noise_covariance) -> CheckResult:
    r"""Check ``gradient_noise_covariance(net, X, y, batch_size)`` of notebook 2.6.

    ``net`` is a ``torch.nn.Module`` with one output, ``X`` has shape ``(n, d_in)`` and ``y`` ``(n,)``.
    The answer is :math:`\Sigma = \frac1B\cdot\frac1n\sum_i (g_i - \bar g)(g_i - \bar g)^\top`, shape
    ``(P, P)``, where :math:`g_i` is the gradient of :math:`\frac12(\mathrm{net}(x_i) - y_i)^2` in all
    ``P`` parameters, flattened in the order of ``net.parameters()``. Cases: a linear model in
    :math:`\mathbb R^3` (gradients in closed form) with 15 samples and :math:`B = 3`, and a tanh network
    with 4 hidden units, 20 samples and :math:`B = 5` (gradients by a loop over samples with autograd).
    """
    check_callable("gradient_noise_covariance", gradient_noise_covariance)
    generator = seeded_generator(31)

    def data(n, d_in):
        X = torch.randn(n, d_in, generator=generator, dtype=torch.float64)
        return X, torch.sin(X.sum(dim=1)) + 0.3 * torch.randn(n, generator=generator, dtype=torch.float64)

    def initialise(net):
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
        return net

    linear = initialise(torch.nn.Linear(3, 1).double())
    X_linear, y_linear = data(15, 3)
    network = initialise(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double())
    X_network, y_network = data(20, 2)
    return run_cases(
        "ex-ch2-mlp-covariance",
        gradient_noise_covariance,
        [
            (
                "a linear model f(x) = wᵀx + b in R^3 (P = 4), n = 15 samples, batch_size B = 3",
                lambda: _check_covariance_case(gradient_noise_covariance, linear, X_linear, y_linear, 3, _linear_gradients),
            ),
            (
                "a network 2 → 4 tanh units → 1 (P = 17), n = 20 samples, batch_size B = 5",
                lambda: _check_covariance_case(
                    gradient_noise_covariance, network, X_network, y_network, 5, _per_sample_gradients
                ),
            ),
        ],
    )


# --- chapter 2 · notebook 2.10: the transition matrix of Nesterov's method ----------------------


def _nesterov_mistakes(a, sigma, friction, h) -> list[tuple[np.ndarray, str]]:
    """Answers (M only) with one typical mistake each."""
    mu = 1.0 - friction * h
    heavy = np.array([-h * a, mu])
    nesterov = np.array([-h * a, mu - h * a * h * mu])
    return [
        (
            np.stack([np.array([1.0, 0.0]) + h * heavy, heavy]),
            "this is the heavy ball: Nesterov evaluates the gradient at the look-ahead point x_k + h·mu·V_k",
        ),
        (
            np.stack([np.array([1.0, h]), nesterov]),
            "the position moves with the new velocity, x_{k+1} = x_k + h·V_{k+1}, not with V_k (forward Euler)",
        ),
        (
            np.stack([np.array([1.0, 0.0]) + h * np.array([-h * a, mu - h * a * h]), np.array([-h * a, mu - h * a * h])]),
            "the look-ahead point is x_k + h·mu·V_k: the factor mu is missing",
        ),
    ]


def _check_nesterov_case(transition, a, sigma, friction, h):
    from ..momentum import MomentumQuadratic, momentum_transition

    M_ref, b_ref = momentum_transition(MomentumQuadratic(a=a, sigma=sigma, friction=friction), h, "nesterov")
    got = transition(a, sigma, friction, h)
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        raise CaseFailed("a pair (M, b)", describe(got), "return M (shape (2, 2)) and b (shape (2,)) as a tuple")
    M, b = (np.asarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v, dtype=float) for v in got)
    if M.shape != (2, 2) or b.shape != (2,):
        raise CaseFailed(
            "M of shape (2, 2) and b of shape (2,)",
            f"shapes {M.shape} and {b.shape}",
            "the state is z = (x, V): M maps (x_k, V_k) to (x_{k+1}, V_{k+1}), b multiplies the noise ξ_k",
        )
    if not np.allclose(M, M_ref, rtol=1e-9, atol=1e-12):
        raise CaseFailed(
            describe(M_ref),
            describe(M),
            diagnose(
                M,
                _nesterov_mistakes(a, sigma, friction, h),
                "write V_{k+1} as a linear function of (x_k, V_k), then x_{k+1} = x_k + h·V_{k+1}",
            ),
        )
    if not np.allclose(b, b_ref, rtol=1e-9, atol=1e-12):
        hint = (
            "the noise enters V with -h·sigma and x with -h²·sigma (through h·V_{k+1})"
            if not np.allclose(np.abs(b), np.abs(b_ref))
            else "the sign: the update subtracts the gradient"
        )
        raise CaseFailed(describe(b_ref), describe(b), hint)


@exercise_check("ex-ch2-nesterov-transition")
def check_nesterov_transition(nesterov_transition) -> CheckResult:
    r"""Check ``nesterov_transition(a, sigma, friction, h) -> (M, b)`` of notebook 2.10.

    Nesterov's method on :math:`\nabla f_\gamma = ax + \sigma\xi` in the variables of the momentum SME,
    :math:`V_{k+1} = \mu V_k - h\nabla f_\gamma(x_k + h\mu V_k)`, :math:`x_{k+1} = x_k + hV_{k+1}`,
    :math:`\mu = 1-\lambda h`, is :math:`z_{k+1} = Mz_k + b\xi_k`;
    compared with :func:`mldyn_lite.momentum.momentum_transition`.
    """
    check_callable("nesterov_transition", nesterov_transition)
    return run_cases(
        "ex-ch2-nesterov-transition",
        nesterov_transition,
        [
            (
                "a = 2, sigma = 0.5, friction = 3, h = 0.1",
                lambda: _check_nesterov_case(nesterov_transition, 2.0, 0.5, 3.0, 0.1),
            ),
            (
                "a = 0.3, sigma = 2, friction = 0.5, h = 0.25",
                lambda: _check_nesterov_case(nesterov_transition, 0.3, 2.0, 0.5, 0.25),
            ),
            (
                "no friction (mu = 1), a = 1, sigma = 1, h = 0.05",
                lambda: _check_nesterov_case(nesterov_transition, 1.0, 1.0, 0.0, 0.05),
            ),
        ],
    )
