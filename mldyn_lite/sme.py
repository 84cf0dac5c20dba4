r"""Stochastic gradient descent as a stochastic differential equation.

Stochastic gradient descent on :math:`J(\theta) = \mathbb E_\gamma J_\gamma(\theta)` (the lecture's
:math:`\mathcal D_k` is the random minibatch :math:`\gamma_k`),

.. math:: \theta_{k+1} = \theta_k - \eta\,\nabla J_{\gamma_k}(\theta_k),

is approximated in the *weak* sense (expectations of smooth test functions) by the stochastic
modified equations (SME) of Li, Tai and E (ICML 2017; JMLR 20(40), 2019):

.. math::
    \text{SME1:}\quad ds_t = -\nabla J(s_t)\,dt + \sqrt{\eta}\,\Sigma(s_t)^{1/2}\,dW_t,
    \qquad
    \text{SME2:}\quad ds_t = -\nabla\big(J + \tfrac{\eta}{4}\|\nabla J\|^2\big)(s_t)\,dt
        + \sqrt{\eta}\,\Sigma(s_t)^{1/2}\,dW_t,

with :math:`\Sigma(\theta) = \operatorname{Cov}_\gamma \nabla J_\gamma(\theta)` the gradient-noise
covariance. Over a fixed time :math:`T`, :math:`|\mathbb E\varphi(\theta_k) - \mathbb E\varphi(s_{k\eta})|
= O(\eta)` for SME1 and :math:`O(\eta^2)` for SME2, uniformly in :math:`k\eta \le T`.

This module holds

* a many-path SGD simulator driven by a stochastic-gradient oracle (:func:`sgd_paths`), with the
  minibatch oracle of least squares (:func:`least_squares_oracle`) and the separable toy problems of
  the papers (:func:`toy_problem`);
* the minibatch covariance :math:`\Sigma(\theta)`, exact from per-sample gradients
  (:func:`per_sample_covariance`) or estimated from minibatches (:func:`minibatch_covariance`);
* SDE integrators: Euler–Maruyama and Platen's derivative-free weak-order-2 scheme
  (:func:`sde_paths`), exact Ornstein–Uhlenbeck moments (:func:`ou_moments`,
  :func:`ou_stationary_covariance`), and a backward-Kolmogorov solver for one-dimensional
  expectations (:func:`sde_expectation_1d`);
* the closed-form moments of the two exact test cases (:func:`multiplicative_noise_moments`,
  :func:`additive_noise_moments`) and Monte Carlo helpers (:func:`monte_carlo_mean`);
* learning-rate control (cSGD): the oracle control :math:`u^* = \min(1, a m/(\eta\Sigma))` of a
  quadratic (:func:`oracle_control`, :func:`quadratic_second_moments`) and a practical estimator
  of it (:class:`CSGDController`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ._checks import check_array, check_callable, check_choice, check_float, check_int, check_tensor
from .measure import loglog_slope
from .numerics import device_of, generator
from .runtime import get_device
from .training import raise_if_nonfinite

__all__ = [
    "CSGDController",
    "Paths",
    "ToyProblem",
    "additive_noise_moments",
    "least_squares_oracle",
    "minibatch_covariance",
    "modified_gradient",
    "monte_carlo_mean",
    "multiplicative_noise_moments",
    "oracle_control",
    "ou_moments",
    "ou_stationary_covariance",
    "per_sample_covariance",
    "quadratic_second_moments",
    "sde_expectation_1d",
    "sde_paths",
    "sgd_paths",
    "toy_problem",
    "weak_error_slope",
]


# --------------------------------------------------------------------------- helpers


def _start(theta0, n_paths, device, name="theta0") -> torch.Tensor:
    """Validate a start point of shape (d,) or (n_paths, d); return it as (n_paths, d) on ``device``."""
    theta0 = check_tensor(name, theta0, ndim=(1, 2))
    if n_paths is not None:
        n_paths = check_int("n_paths", n_paths, minimum=1)
    if theta0.ndim == 1:
        if n_paths is None:
            raise ValueError(f"n_paths must be given when {name} has shape (d,); got {name} of shape {tuple(theta0.shape)}")
        theta0 = theta0.expand(n_paths, -1)
    elif n_paths is not None and theta0.shape[0] != n_paths:
        raise ValueError(f"{name} has {theta0.shape[0]} rows but n_paths={n_paths}; give shape (d,) or (n_paths, d)")
    return theta0.to(device).clone()


class Paths(NamedTuple):
    """Many simulated paths: the ``final`` states ``(P, d)`` and the recorded ``history`` ``(records, P, d)``."""

    final: torch.Tensor
    history: torch.Tensor


# --------------------------------------------------------------------------- SGD


def least_squares_oracle(X, y, batch_size: int) -> Callable:
    r"""Minibatch gradient oracle of :math:`J(\theta) = \frac{1}{2n}\sum_i (x_i^\top\theta - y_i)^2`.

    Returns ``stochastic_gradient(theta, generator)`` that, for ``theta`` of shape ``(P, d)`` (one
    row per SGD path), draws an independent minibatch of ``batch_size`` indices *with replacement*
    for every path and returns the minibatch gradients, shape ``(P, d)``.
    """
    X = check_tensor("X", X, ndim=2)
    y = check_tensor("y", y, ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X and y must have the same number of samples, got {X.shape[0]} and {y.shape[0]}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    n, d = X.shape

    copies = {}  # the data on each (device, dtype) the oracle is called with

    def stochastic_gradient(theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if theta.ndim != 2 or theta.shape[1] != d:
            raise ValueError(f"theta must have shape (P, {d}), got {tuple(theta.shape)}")
        key = (theta.device, theta.dtype)
        if key not in copies:
            copies[key] = (X.to(theta.device, theta.dtype), y.to(theta.device, theta.dtype))
        Xd, yd = copies[key]
        idx = torch.randint(n, (theta.shape[0], batch_size), generator=generator, device=theta.device)
        xb, yb = Xd[idx], yd[idx]  # (P, B, d), (P, B)
        residual = (xb @ theta.unsqueeze(-1)).squeeze(-1) - yb  # (P, B)
        return (xb * residual.unsqueeze(-1)).mean(dim=1)

    return stochastic_gradient


def sgd_paths(
    stochastic_gradient: Callable,
    theta0,
    lr: float,
    steps: int,
    *,
    n_paths: int | None = None,
    control: Callable | None = None,
    record_every: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
):
    r"""Run ``n_paths`` SGD chains :math:`\theta_{k+1} = \theta_k - \eta u_k \nabla J_{\gamma_k}(\theta_k)` at once.

    Parameters
    ----------
    stochastic_gradient
        ``stochastic_gradient(theta, generator)`` returns one sampled gradient per row of ``theta``
        (shape ``(P, d)``), drawing its randomness from ``generator``.
    theta0
        Start, shape ``(d,)`` (with ``n_paths``) or ``(P, d)``.
    lr
        The learning rate :math:`\eta > 0`.
    steps
        Number of SGD steps.
    control
        Optional learning-rate factor ``control(k, theta, grad) -> u_k`` (a float or a tensor
        broadcastable to ``theta``), used for schedules and for :class:`CSGDController`.
    record_every
        If given, also return the iterates at steps ``0, record_every, 2 record_every, ...``
        (and the last one) as a tensor of shape ``(records, P, d)``.

    Returns
    -------
    ``theta_final`` of shape ``(P, d)``, or :class:`Paths` ``(final, history)`` when ``record_every`` is set.
    The paths run on ``device``, by default the device of ``theta0`` (the CPU for a non-tensor start).
    """
    check_callable("stochastic_gradient", stochastic_gradient)
    device = device_of(theta0) if device is None else get_device(device)
    theta = _start(theta0, n_paths, device)
    lr = check_float("lr", lr, positive=True)
    steps = check_int("steps", steps, minimum=0)
    if control is not None:
        check_callable("control", control)
    if record_every is not None:
        record_every = check_int("record_every", record_every, minimum=1)
    gen = generator(seed, device)
    history = [theta.clone()] if record_every else None
    step = torch.empty_like(theta)  # lr * grad, written in place: no new tensors per step (same arithmetic)
    for k in range(steps):
        grad = stochastic_gradient(theta, gen)
        if k == 0 and (not isinstance(grad, torch.Tensor) or grad.shape != theta.shape):
            shape = tuple(grad.shape) if isinstance(grad, torch.Tensor) else type(grad).__name__
            raise ValueError(f"stochastic_gradient must return a tensor of shape {tuple(theta.shape)}, got {shape}")
        if control is None and grad.dtype == theta.dtype and grad.device == theta.device:
            theta.sub_(torch.mul(grad, lr * 1.0, out=step))  # theta - (lr * 1.0) * grad, bit for bit
        else:  # the control may keep theta: a new tensor each step
            factor = 1.0 if control is None else control(k, theta, grad)
            theta = theta - lr * factor * grad
        if k % 100 == 99 or k == steps - 1:
            raise_if_nonfinite(theta, k, "SGD iterate", "the learning rate is too large: SGD diverged")
        if record_every and ((k + 1) % record_every == 0 or k == steps - 1):
            history.append(theta.clone())
    return Paths(theta, torch.stack(history)) if record_every else theta


# --------------------------------------------------------------------------- the toy problems


@dataclass(frozen=True)
class ToyProblem:
    r"""A separable problem :math:`J = \mathbb E_\gamma J_\gamma` acting coordinate by coordinate.

    ``gradient``, ``curvature`` (the diagonal Hessian) and ``noise_std`` (:math:`\Sigma^{1/2}`,
    diagonal) act elementwise on tensors; ``stochastic_gradient(theta, generator)`` samples
    :math:`\nabla J_\gamma(\theta)` with an independent :math:`\gamma` per path and coordinate.
    """

    name: str
    gradient: Callable
    curvature: Callable
    noise_std: Callable
    stochastic_gradient: Callable

    def sme_drift(self, lr: float, order: int = 1) -> Callable:
        r"""SME drift: :math:`-\nabla J` (order 1) or :math:`-\nabla J - \frac{\eta}{2}\nabla^2 J\,\nabla J` (order 2)."""
        lr = check_float("lr", lr, positive=True)
        order = check_choice("order", order, {1, 2})
        if order == 1:
            return lambda x: -self.gradient(x)

        def drift(x):
            gradient = self.gradient(x)  # evaluated once (the same numbers as evaluating it twice)
            return -gradient - 0.5 * lr * self.curvature(x) * gradient

        return drift

    def sme_diffusion(self, lr: float) -> Callable:
        r"""SME diffusion coefficient :math:`\sqrt{\eta}\,\Sigma(x)^{1/2}` (diagonal)."""
        lr = check_float("lr", lr, positive=True)
        return lambda x: np.sqrt(lr) * self.noise_std(x)


def _signs(shape, generator, like):
    """Independent ±1 of ``like``'s dtype; the 0/1 draws are the same whatever the dtype, so one tensor suffices."""
    return torch.randint(2, shape, generator=generator, device=like.device, dtype=like.dtype).mul_(2.0).sub_(1.0)


def _multiplicative_sample(x, g):
    return _signs(x.shape, g, x).add_(1.0).mul_(x)  # (1 + γ) x


def _logcosh_sample(x, g):
    signs = _signs(x.shape, g, x)
    return torch.sub(x, signs, out=signs).tanh_()  # tanh(x - γ)


def toy_problem(name: str) -> ToyProblem:
    r"""The separable test problems of the chapter.

    * ``"multiplicative"``: :math:`J_\gamma = \frac12\sum_i (1+\gamma_i)x_i^2`, :math:`\gamma_i = \pm 1`;
      :math:`J = \frac12\|x\|^2`, :math:`\Sigma = \operatorname{diag}(x_i^2)`.
    * ``"additive_gaussian"``: :math:`J_\gamma = \frac12\sum_i(x_i-\gamma_i)^2`, :math:`\gamma_i\sim N(0,1)`;
      :math:`\Sigma = I` (an Ornstein–Uhlenbeck SME).
    * ``"additive_bernoulli"``: the same with :math:`\gamma_i = \pm 1` (same mean and covariance,
      non-Gaussian noise).
    * ``"logcosh"``: :math:`J_\gamma = \sum_i \log\cosh(x_i-\gamma_i)`, :math:`\gamma_i = \pm1`; non-quadratic,
      :math:`\nabla J = \frac12(\tanh(x-1)+\tanh(x+1))`, :math:`\Sigma^{1/2} = \frac12(\tanh(x+1)-\tanh(x-1))`.
    """
    check_choice("name", name, {"multiplicative", "additive_gaussian", "additive_bernoulli", "logcosh"})
    if name == "multiplicative":
        return ToyProblem(
            name,
            gradient=lambda x: x,
            curvature=lambda x: 1.0 + 0 * x,
            noise_std=lambda x: abs(x),
            stochastic_gradient=_multiplicative_sample,
        )
    if name in ("additive_gaussian", "additive_bernoulli"):
        if name == "additive_gaussian":

            def sample(x, g):
                return x - torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        else:

            def sample(x, g):
                return x - _signs(x.shape, g, x)

        return ToyProblem(
            name,
            gradient=lambda x: x,
            curvature=lambda x: 1.0 + 0 * x,
            noise_std=lambda x: 1.0 + 0 * x,
            stochastic_gradient=sample,
        )

    def tanh(x):
        return torch.tanh(x) if isinstance(x, torch.Tensor) else np.tanh(x)

    return ToyProblem(
        name,
        gradient=lambda x: 0.5 * (tanh(x - 1.0) + tanh(x + 1.0)),
        curvature=lambda x: 0.5 * ((1 - tanh(x - 1.0) ** 2) + (1 - tanh(x + 1.0) ** 2)),
        noise_std=lambda x: 0.5 * (tanh(x + 1.0) - tanh(x - 1.0)),
        stochastic_gradient=_logcosh_sample,
    )


def modified_gradient(loss: Callable, lr: float) -> Callable:
    r"""Gradient of the modified loss :math:`\widetilde J = J + \frac{\eta}{4}\|\nabla J\|^2`.

    Gradient descent with step :math:`\eta` follows the flow :math:`\dot x = -\nabla\widetilde J(x)` to
    second order in :math:`\eta` (the Warming–Hyett modified equation of gradient descent);
    this is also the drift of SME2. ``loss`` maps a tensor of shape ``(P, d)`` to ``(P,)``;
    the returned function computes :math:`\nabla J + \frac{\eta}{2}\nabla^2 J\,\nabla J` with autograd.
    """
    check_callable("loss", loss)
    lr = check_float("lr", lr, positive=True)

    def gradient(x: torch.Tensor) -> torch.Tensor:
        x = check_tensor("x", x, ndim=2).detach().requires_grad_(True)
        with torch.enable_grad():
            grad = torch.autograd.grad(loss(x).sum(), x, create_graph=True)[0]
            penalty = 0.25 * lr * (grad**2).sum()
            return (grad + torch.autograd.grad(penalty, x)[0]).detach()

    return gradient


# --------------------------------------------------------------------------- gradient covariance


def per_sample_covariance(per_sample_gradients, batch_size: int = 1) -> torch.Tensor:
    r"""Exact :math:`\Sigma(\theta)` for minibatches of ``batch_size`` samples drawn with replacement.

    ``per_sample_gradients`` has shape ``(n, d)`` (row :math:`i` is :math:`\nabla J_i(\theta)`);
    the minibatch mean of :math:`B` i.i.d. draws has covariance
    :math:`\Sigma = \frac1B\cdot\frac1n\sum_i (\nabla J_i - \nabla J)(\nabla J_i - \nabla J)^\top`.
    """
    grads = check_tensor("per_sample_gradients", per_sample_gradients, ndim=2)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    centred = grads - grads.mean(dim=0)
    return centred.T @ centred / (grads.shape[0] * batch_size)


def minibatch_covariance(
    stochastic_gradient: Callable, theta, n_batches: int, *, seed: int = 0, device: str | torch.device | None = None
) -> torch.Tensor:
    r"""Estimate :math:`\Sigma(\theta)` from ``n_batches`` minibatch gradients drawn at the fixed point ``theta``.

    Returns the unbiased sample covariance, shape ``(d, d)``. Its entries carry a relative
    Monte Carlo error of order :math:`\sqrt{2/n_\text{batches}}`.
    """
    check_callable("stochastic_gradient", stochastic_gradient)
    theta = check_tensor("theta", theta, ndim=1)
    device = device_of(theta) if device is None else get_device(device)
    n_batches = check_int("n_batches", n_batches, minimum=2)
    thetas = theta.to(device).expand(n_batches, -1).clone()
    grads = stochastic_gradient(thetas, generator(seed, device))
    if not isinstance(grads, torch.Tensor) or grads.shape != thetas.shape:
        raise ValueError(f"stochastic_gradient must return a tensor of shape {tuple(thetas.shape)}")
    centred = grads - grads.mean(dim=0)
    return centred.T @ centred / (n_batches - 1)


# --------------------------------------------------------------------------- SDE integrators


def _three_point(shape, generator, like, dt):
    """±sqrt(3 dt) with probability 1/6 each, 0 with probability 2/3: matches N(0, dt) up to the fifth moment."""
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    root = torch.full_like(u, np.sqrt(3.0 * dt))
    return torch.where(u < 1 / 6, -root, torch.where(u < 1 / 3, root, torch.zeros_like(u)))


def sde_paths(
    drift: Callable,
    diffusion: Callable,
    x0,
    T: float,
    steps: int,
    *,
    n_paths: int | None = None,
    scheme: str = "euler",
    record_every: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
):
    r"""Integrate :math:`dX = a(X)\,dt + b(X)\,dW` with diagonal noise for many paths at once.

    ``drift(x)`` and ``diffusion(x)`` map a tensor of shape ``(P, d)`` to the same shape
    (:math:`b` is diagonal: component :math:`i` of the noise is :math:`b_i(X)\,dW^i`).

    ``scheme="euler"`` is Euler–Maruyama (weak order 1). ``scheme="weak2"`` is Platen's explicit,
    derivative-free weak order-2 scheme (Kloeden & Platen, *Numerical Solution of SDEs*, §15.1)
    with three-point increments; it has weak order 2 for scalar equations and for diagonal noise
    whose :math:`b_i` depends on :math:`x_i` only (all toy problems of this chapter).

    Returns the final state ``(P, d)``, or :class:`Paths` ``(final, history)`` if ``record_every`` is set.
    The paths run on ``device``, by default the device of ``x0``.
    """
    check_callable("drift", drift)
    check_callable("diffusion", diffusion)
    device = device_of(x0) if device is None else get_device(device)
    x = _start(x0, n_paths, device, "x0")
    T = check_float("T", T, positive=True)
    steps = check_int("steps", steps, minimum=1)
    scheme = check_choice("scheme", scheme, {"euler", "weak2"})
    if record_every is not None:
        record_every = check_int("record_every", record_every, minimum=1)
    dt = T / steps
    gen = generator(seed, device)
    history = [x.clone()] if record_every else None
    noise, step = torch.empty_like(x), torch.empty_like(x)  # Euler–Maruyama works in place: no new tensors per step
    for k in range(steps):
        a, b = drift(x), diffusion(x)
        if k == 0 and (a.shape != x.shape or b.shape != x.shape):
            raise ValueError(
                f"drift and diffusion must return shape {tuple(x.shape)}, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        if scheme == "euler" and a.dtype == b.dtype == x.dtype and a.device == b.device == x.device:
            # x + a dt + b (sqrt(dt) ξ), the same operations in the same order as the line below
            noise.normal_(generator=gen).mul_(np.sqrt(dt)).mul_(b)
            x.add_(torch.mul(a, dt, out=step)).add_(noise)
        elif scheme == "euler":
            dW = np.sqrt(dt) * torch.randn(x.shape, generator=gen, device=device, dtype=x.dtype)
            x = x + a * dt + b * dW
        else:
            dW = _three_point(x.shape, gen, x, dt)
            support = x + a * dt + b * dW
            plus, minus = x + a * dt + b * np.sqrt(dt), x + a * dt - b * np.sqrt(dt)
            b_plus, b_minus = diffusion(plus), diffusion(minus)
            x = (
                x
                + 0.5 * (drift(support) + a) * dt
                + 0.25 * (b_plus + b_minus + 2 * b) * dW
                + 0.25 * (b_plus - b_minus) * (dW**2 - dt) / np.sqrt(dt)
            )
        if k % 100 == 99 or k == steps - 1:
            raise_if_nonfinite(x, k, "SDE state", "the time step is too large for this drift")
        if record_every and ((k + 1) % record_every == 0 or k == steps - 1):
            history.append(x.clone())
    return Paths(x, torch.stack(history)) if record_every else x


def ou_moments(A, noise_cov, mean0, t: float, cov0=None, center=None):
    r"""Exact mean and covariance at time ``t`` of :math:`ds = -A(s-c)\,dt + Q^{1/2}dW`, :math:`s_0 \sim (\mu_0, C_0)`.

    Mean :math:`c + e^{-At}(\mu_0 - c)`; covariance :math:`e^{-At}C_0e^{-A^\top t} + \int_0^t e^{-Au}Qe^{-A^\top u}du`,
    computed from the stationary covariance when :math:`A` is stable and with Van Loan's
    block-matrix exponential otherwise. Arrays are numpy, ``A`` and
    ``noise_cov`` of shape ``(d, d)``.
    """
    from scipy.linalg import expm

    A = check_array("A", A, ndim=2)
    Q = check_array("noise_cov", noise_cov, ndim=2)
    mean0 = check_array("mean0", mean0, ndim=1)
    d = A.shape[0]
    if A.shape != (d, d) or Q.shape != (d, d) or mean0.shape != (d,):
        raise ValueError(f"A and noise_cov must be (d, d) and mean0 (d,), got {A.shape}, {Q.shape}, {mean0.shape}")
    t = check_float("t", t, nonnegative=True)
    cov0 = np.zeros((d, d)) if cov0 is None else check_array("cov0", cov0, ndim=2)
    center = np.zeros(d) if center is None else check_array("center", center, ndim=1)
    if cov0.shape != (d, d) or center.shape != (d,):
        raise ValueError(f"cov0 must be ({d}, {d}) and center ({d},), got {cov0.shape} and {center.shape}")
    decay = expm(-A * t)
    if np.all(np.linalg.eigvals(A).real > 0):
        # stable drift: C_t = C_inf + e^{-At}(C_0 - C_inf)e^{-A^T t}, with A C_inf + C_inf A^T = Q
        stationary = ou_stationary_covariance(A, Q)
        cov = stationary + decay @ (cov0 - stationary) @ decay.T
    else:
        # Van Loan: the top-right block of exp([[A, Q], [0, -A^T]] t) is e^{At} ∫_0^t e^{-Au} Q e^{-A^T u} du
        E = expm(np.block([[A, Q], [np.zeros((d, d)), -A.T]]) * t)
        cov = decay @ cov0 @ decay.T + decay @ E[:d, d:]
    mean = center + decay @ (mean0 - center)
    return mean, 0.5 * (cov + cov.T)


def ou_stationary_covariance(A, noise_cov) -> np.ndarray:
    r"""Stationary covariance :math:`C` of :math:`ds = -As\,dt + Q^{1/2}dW`: the solution of :math:`AC + CA^\top = Q`."""
    from scipy.linalg import solve_continuous_lyapunov

    A = check_array("A", A, ndim=2)
    Q = check_array("noise_cov", noise_cov, ndim=2)
    if A.shape != Q.shape or A.shape[0] != A.shape[1]:
        raise ValueError(f"A and noise_cov must be square of the same shape, got {A.shape} and {Q.shape}")
    if np.any(np.linalg.eigvals(A).real <= 0):
        raise ValueError("A must have eigenvalues with positive real part (a stable drift) for a stationary law")
    C = solve_continuous_lyapunov(A, Q)
    return 0.5 * (C + C.T)


def sde_expectation_1d(
    drift: Callable,
    diffusion: Callable,
    phi: Callable,
    x0: float,
    T: float,
    *,
    domain=(-10.0, 10.0),
    n_grid: int = 2001,
    time_steps: int = 400,
) -> float:
    r""":math:`\mathbb E\,\varphi(X_T)` for the scalar SDE :math:`dX = a(X)dt + b(X)dW`, :math:`X_0 = x_0`, without sampling.

    Solves the backward Kolmogorov equation :math:`\partial_t u = a\,u_x + \tfrac12 b^2 u_{xx}`,
    :math:`u(0,\cdot) = \varphi`, on a uniform grid over ``domain`` (central differences,
    Crank–Nicolson in time; at the two ends the diffusion is dropped and the drift term uses a
    one-sided difference), and returns :math:`u(T, x_0)` by cubic interpolation. ``drift``, ``diffusion`` and
    ``phi`` act elementwise on numpy arrays. The domain must be wide enough that paths started at
    :math:`x_0` do not reach its ends by time :math:`T`.
    """
    from scipy.interpolate import CubicSpline
    from scipy.sparse import diags, identity
    from scipy.sparse.linalg import splu

    for name, fn in (("drift", drift), ("diffusion", diffusion), ("phi", phi)):
        check_callable(name, fn)
    lo, hi = (check_float("domain[0]", domain[0]), check_float("domain[1]", domain[1]))
    x0 = check_float("x0", x0)
    if not lo < x0 < hi:
        raise ValueError(f"x0 must lie inside domain {domain}, got {x0}")
    T = check_float("T", T, positive=True)
    n_grid = check_int("n_grid", n_grid, minimum=5)
    time_steps = check_int("time_steps", time_steps, minimum=1)
    x = np.linspace(lo, hi, n_grid)
    h, dt = x[1] - x[0], T / time_steps
    a = np.asarray(drift(x), dtype=float) * np.ones_like(x)
    half_b2 = 0.5 * np.asarray(diffusion(x), dtype=float) ** 2 * np.ones_like(x)
    lower = -a[1:] / (2 * h) + half_b2[1:] / h**2  # coefficient of u_{j-1} in row j
    main = -2 * half_b2 / h**2
    upper = a[:-1] / (2 * h) + half_b2[:-1] / h**2  # coefficient of u_{j+1} in row j
    # the two ends: one-sided drift difference towards the interior, no diffusion
    main[0], upper[0] = -a[0] / h, a[0] / h
    main[-1], lower[-1] = a[-1] / h, -a[-1] / h
    L = diags([lower, main, upper], [-1, 0, 1], format="csc")
    eye = identity(n_grid, format="csc")
    solve = splu(eye - 0.5 * dt * L).solve
    explicit = eye + 0.5 * dt * L
    u = np.asarray(phi(x), dtype=float) * np.ones_like(x)
    for _ in range(time_steps):
        u = solve(explicit @ u)
    return float(CubicSpline(x, u)(x0))


# --------------------------------------------------------------------------- exact test cases


def multiplicative_noise_moments(lr: float, T: float, x0_norm_sq: float = 1.0) -> dict:
    r""":math:`\mathbb E J` at time :math:`T` for the multiplicative-noise quadratic (``toy_problem("multiplicative")``).

    SGD: :math:`\frac12\|x_0\|^2((1-\eta)^2+\eta^2)^k`, :math:`k = T/\eta`; SME1:
    :math:`\frac12\|x_0\|^2e^{(-2+\eta)T}`; SME2 and gradient flow: :math:`\frac12\|x_0\|^2e^{-2T}`.
    """
    lr = check_float("lr", lr, positive=True)
    T = check_float("T", T, positive=True)
    x0_norm_sq = check_float("x0_norm_sq", x0_norm_sq, nonnegative=True)
    k = T / lr
    half = 0.5 * x0_norm_sq
    return {
        "sgd": half * ((1 - lr) ** 2 + lr**2) ** k,
        "sme1": half * np.exp((-2 + lr) * T),
        "sme2": half * np.exp(-2 * T),
        "gradient_flow": half * np.exp(-2 * T),
    }


def additive_noise_moments(lr: float, T: float, x0: float = 3.0) -> dict:
    r""":math:`\mathbb E x^2` at time :math:`T` for the additive-noise quadratic (one coordinate, :math:`\Sigma = 1`).

    SGD :math:`x_{k+1} = (1-\eta)x_k + \eta\gamma_k`: :math:`(1-\eta)^{2k}x_0^2 + \eta\frac{1-(1-\eta)^{2k}}{2-\eta}`.
    SME with drift :math:`-cx` (:math:`c = 1` for SME1, :math:`1+\eta/2` for SME2), an Ornstein–Uhlenbeck
    process: :math:`e^{-2cT}x_0^2 + \eta\frac{1-e^{-2cT}}{2c}`. Gradient flow: :math:`e^{-2T}x_0^2`.
    """
    lr = check_float("lr", lr, positive=True)
    T = check_float("T", T, positive=True)
    x0 = check_float("x0", x0)
    k = T / lr
    decay = (1 - lr) ** (2 * k)

    def ou(c):
        return np.exp(-2 * c * T) * x0**2 + lr * (1 - np.exp(-2 * c * T)) / (2 * c)

    return {
        "sgd": decay * x0**2 + lr * (1 - decay) / (2 - lr),
        "sme1": ou(1.0),
        "sme2": ou(1.0 + lr / 2),
        "gradient_flow": np.exp(-2 * T) * x0**2,
    }


def monte_carlo_mean(values) -> tuple[float, float]:
    """Sample mean and its standard error (``std / sqrt(n)``) of a 1-D sample."""
    values = check_array("values", values, ndim=1)
    if values.size < 2:
        raise ValueError("values must hold at least two samples")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def weak_error_slope(lrs, errors) -> float:
    """Fitted slope of ``log(error)`` against ``log(lr)``: the observed weak order."""
    return loglog_slope(lrs, errors)[0]


# --------------------------------------------------------------------------- cSGD


def oracle_control(a, m, sigma, lr: float):
    r"""Optimal learning-rate factor for the SME of a quadratic: :math:`u^* = \min(1, a m / (\eta\Sigma))`.

    For :math:`J = \frac a2(x-b)^2` with gradient noise variance :math:`\Sigma`, the controlled SME
    :math:`ds = -u a(s-b)\,dt + u\sqrt{\eta\Sigma}\,dW` has :math:`m_t = \mathbb E(s_t-b)^2` with
    :math:`\dot m = -2au\,m + \eta\Sigma u^2`; minimising :math:`\dot m` over :math:`u\in[0,1]` gives
    :math:`u^*`. Where :math:`a \le 0` the factor is 1. Works elementwise on arrays or tensors.
    """
    lr = check_float("lr", lr, positive=True)
    if isinstance(a, torch.Tensor):
        u = (a * m / (lr * sigma)).clamp(0.0, 1.0)
        return torch.where(a > 0, u, torch.ones_like(u))
    a, m, sigma = np.asarray(a, dtype=float), np.asarray(m, dtype=float), np.asarray(sigma, dtype=float)
    u = np.clip(a * m / (lr * sigma), 0.0, 1.0)
    return np.where(a > 0, u, 1.0)


def quadratic_second_moments(a, sigma, lr: float, m0, steps: int, control="oracle"):
    r"""Exact :math:`m_k = \mathbb E(x_k-b)^2` of SGD on :math:`J = \sum_i\frac{a_i}2(x_i-b_i)^2` with additive noise.

    The recursion :math:`m_{k+1} = (1-\eta u_k a)^2 m_k + \eta^2u_k^2\Sigma` is exact for SGD whose
    gradient noise has variance :math:`\Sigma` independent of :math:`x`. ``control`` is
    ``"oracle"`` (:func:`oracle_control` applied to :math:`m_k`), ``"constant"`` (:math:`u = 1`) or a
    function ``k -> u_k``. Returns ``(m, u)`` of shapes ``(steps + 1, d)`` and ``(steps, d)``.
    """
    a = check_array("a", np.atleast_1d(a), ndim=1)
    sigma = check_array("sigma", np.atleast_1d(sigma), ndim=1)
    m = check_array("m0", np.atleast_1d(m0), ndim=1).copy()
    if not (a.shape == sigma.shape == m.shape):
        raise ValueError(f"a, sigma and m0 must have the same shape, got {a.shape}, {sigma.shape}, {m.shape}")
    if np.any(sigma <= 0):
        raise ValueError("sigma must be positive")
    lr = check_float("lr", lr, positive=True)
    steps = check_int("steps", steps, minimum=1)
    if not (control in ("oracle", "constant") or callable(control)):
        raise ValueError(f"control must be 'oracle', 'constant' or a function k -> u_k, got {control!r}")
    ms, us = [m.copy()], []
    for k in range(steps):
        if control == "oracle":
            u = oracle_control(a, m, sigma, lr)
        elif control == "constant":
            u = np.ones_like(m)
        else:
            u = np.broadcast_to(np.asarray(control(k), dtype=float), m.shape)
        m = (1 - lr * u * a) ** 2 * m + lr**2 * u**2 * sigma
        ms.append(m.copy())
        us.append(np.array(u, dtype=float))
    return np.array(ms), np.array(us)


class CSGDController:
    r"""A practical, data-driven estimate of the cSGD control, one per path and coordinate.

    Each coordinate is modelled as the quadratic :math:`J_i \approx \frac{a_i}{2}(x_i-b_i)^2` with
    gradient noise variance :math:`\Sigma_i`. From the SGD iterates and sampled gradients seen so
    far (running, equally weighted moments):

    * :math:`a` = slope of the regression of the gradient on the iterate,
      :math:`\operatorname{cov}(g,x)/\operatorname{var}(x)`;
    * :math:`\Sigma` = residual variance of that regression, :math:`b = \bar x - \bar g/a`;
    * :math:`m` = exponential moving average of :math:`(x_k-b)^2` with rate :math:`a\eta u`
      (one relaxation time of the SME), times ``window``;

    and returns :math:`u = \min(1, am/(\eta\Sigma))` (1 where :math:`a \le 0` or during the first
    ``warmup`` steps). The factor for step :math:`k` uses only gradients of earlier steps. Call it as
    ``control(k, theta, grad)`` inside :func:`sgd_paths`; ``history`` keeps the mean factor per step.
    """

    def __init__(self, lr: float, *, warmup: int = 10, window: float = 1.0):
        self.lr = check_float("lr", lr, positive=True)
        self.warmup = check_int("warmup", warmup, minimum=2)
        self.window = check_float("window", window, positive=True)
        self.history: list[np.ndarray] = []
        self._state = None

    def __call__(self, k: int, theta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        if self._state is None:
            zeros = torch.zeros_like(theta)
            self._state = {
                "n": 0,
                "x": zeros.clone(),
                "g": zeros.clone(),
                "vx": zeros.clone(),
                "vg": zeros.clone(),
                "cxg": zeros.clone(),
                "m": None,
                "u": torch.ones_like(theta),
                "b": zeros.clone(),
            }
        s = self._state
        # the factor for this step, from the estimates of earlier steps and the current iterate
        if s["n"] >= self.warmup:
            a = s["cxg"] / s["vx"].clamp_min(1e-300)
            a_safe = torch.where(a > 0, a, torch.ones_like(a))
            sigma = (s["vg"] - s["cxg"] ** 2 / s["vx"].clamp_min(1e-300)).clamp_min(1e-300)
            r = (theta - s["b"]) ** 2
            rate = (a_safe * self.lr * s["u"] / self.window).clamp(max=1.0)
            s["m"] = r if s["m"] is None else s["m"] + rate * (r - s["m"])
            s["u"] = oracle_control(a, s["m"], sigma, self.lr)
        u = s["u"]
        # then fold this step's pair (x_k, g_k) into the running moments (Welford)
        s["n"] += 1
        w = 1.0 / s["n"]
        dx, dg = theta - s["x"], grad - s["g"]
        s["x"] = s["x"] + w * dx
        s["g"] = s["g"] + w * dg
        s["vx"] = (1 - w) * (s["vx"] + w * dx * dx)
        s["vg"] = (1 - w) * (s["vg"] + w * dg * dg)
        s["cxg"] = (1 - w) * (s["cxg"] + w * dx * dg)
        if s["n"] >= self.warmup - 1:
            a = s["cxg"] / s["vx"].clamp_min(1e-300)
            a_safe = torch.where(a > 0, a, torch.ones_like(a))
            s["b"] = s["x"] - s["g"] / a_safe
        self.history.append(u.mean(dim=0).cpu().numpy())
        return u
