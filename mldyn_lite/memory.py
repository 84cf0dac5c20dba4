r"""Memory: sequence functionals, memory kernels and their exponential-sum approximation.

Learning *for* dynamical systems means learning a sequence of functionals
:math:`y_k = H_k^*(\mathbf x)` of an input sequence :math:`\mathbf x = \{x_k\}`
(lecture, chapter "Machine learning for dynamical systems"). The simplest
family is the linear, causal, shift-invariant one,

.. math:: H_t(\mathbf x) = \int_0^\infty x_{t-s}^\top \rho(s)\, ds ,

described entirely by its *memory kernel* :math:`\rho`. A continuous-time
linear RNN :math:`\dot h_t = W h_t + U x_t,\ y_t = c^\top h_t` represents exactly
the kernels :math:`\rho(s) = c^\top e^{W s} U`; for a diagonal
:math:`W = \mathrm{diag}(-\lambda_1, \dots, -\lambda_m)` this is an exponential
sum :math:`\rho(s) = \sum_i a_i e^{-\lambda_i s}`. Z. Li, Han, E & Q. Li (ICLR
2021, "On the curse of memory in recurrent neural networks"; JMLR 23, 2022) prove
a Jackson-type rate — if :math:`\rho \in C^{\alpha+1}` and
:math:`e^{\beta s}\rho^{(k)}(s) \to 0`, :math:`k \le \alpha + 1`, some m-unit network has error at most
:math:`C(\alpha)\gamma/(\beta m^\alpha)` — and a Bernstein-type converse: a target approximated *stably*
has exponentially decaying memory (:func:`kinked_kernel` and :func:`polynomial_rate_errors` put the
rate beside a measurement).

This module holds what chapter 3 reuses:

* target kernels (:func:`exponential_kernel`, :func:`polynomial_kernel`,
  :func:`delayed_bump_kernel`, :func:`airy_kernel`) and the discrete
  functional :func:`apply_kernel`;
* sequence data sets: :func:`adding_problem`, :func:`lorenz_forecasting`,
  :func:`smoothing_seq2seq`, :func:`white_noise_functional`;
* a kernel of known smoothness and decay and the error of the theorem's construction
  (:func:`kinked_kernel`, :func:`polynomial_rate_errors`);
* exponential-sum fitting with fixed rates (:func:`fit_exponential_sum`) and
  with free rates by variable projection (:func:`exponential_sum_path`,
  :func:`best_exponential_sum`);
* the Mori–Zwanzig elimination of hidden variables from a linear system
  (:func:`eliminate_hidden_variables`, :func:`solve_memory_equation`), which
  creates a memory kernel — an RNN runs this construction in reverse
  (C. Ma, J. Wang & W. E, Commun. Comput. Phys. 25, 2018; R. Zwanzig, 2001).

Devices and randomness follow the book's rules (:mod:`mldyn_lite.numerics`): data sets are
returned on ``device`` (default: the device of the input kernel where there is one, else the CPU;
pass ``"cuda"`` for a GPU), random draws come from a private :func:`~mldyn_lite.numerics.generator`
seeded with ``seed`` (the global random state is left alone), and the Lorenz trajectories are
integrated with :func:`~mldyn_lite.numerics.integrate`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ._checks import check_array, check_float, check_int, check_tensor
from .numerics import device_of, generator, integrate
from .runtime import get_device

# --------------------------------------------------------------------------- kernels


def _lags(s) -> np.ndarray:
    s = check_array("s", s)
    if np.any(s < 0):
        raise ValueError("s must hold non-negative lags")
    return s


def exponential_kernel(s, rate: float = 1.0) -> np.ndarray:
    r"""Exponentially decaying memory :math:`\rho(s) = e^{-\lambda s}` (one RNN unit represents it exactly)."""
    rate = check_float("rate", rate, positive=True)
    return np.exp(-rate * _lags(s))


def polynomial_kernel(s, power: float = 1.1, scale: float = 1.0) -> np.ndarray:
    r"""Polynomially decaying memory :math:`\rho(s) = (1 + \text{scale}\cdot s)^{-\text{power}}`."""
    power = check_float("power", power, positive=True)
    scale = check_float("scale", scale, positive=True)
    return (1.0 + scale * _lags(s)) ** (-power)


def delayed_bump_kernel(s, delay: float = 6.0, width: float = 1.0) -> np.ndarray:
    r"""Memory concentrated far in the past: :math:`\rho(s) = e^{-((s - \text{delay})/\text{width})^2}`."""
    delay = check_float("delay", delay, nonnegative=True)
    width = check_float("width", width, positive=True)
    return np.exp(-(((_lags(s) - delay) / width) ** 2))


def airy_kernel(s, shift: float = 6.0) -> np.ndarray:
    r"""Oscillating memory with a super-exponentially decaying tail: :math:`\rho(s) = \mathrm{Ai}(s - \text{shift})`."""
    from scipy.special import airy

    shift = check_float("shift", shift)
    return airy(_lags(s) - shift)[0]


def apply_kernel(x: torch.Tensor, rho, dt: float = 1.0) -> torch.Tensor:
    r"""The discrete causal functional :math:`y_k = \Delta t \sum_{j=0}^{k} \rho_j\, x_{k-j}`.

    Parameters
    ----------
    x
        Input sequences, shape ``(batch, length)``.
    rho
        Kernel values :math:`\rho_j = \rho(j\,\Delta t)`, shape ``(n_lags,)`` (array or tensor).
    dt
        Time step :math:`\Delta t` (the quadrature weight of the integral).

    Returns
    -------
    Tensor of shape ``(batch, length)``: inputs before time 0 count as zero.
    """
    x = check_tensor("x", x, ndim=2)
    dt = check_float("dt", dt, positive=True)
    rho = torch.as_tensor(check_array("rho", rho, ndim=1), dtype=x.dtype, device=x.device)
    if rho.numel() == 0:
        raise ValueError("rho must hold at least one lag")
    padded = torch.nn.functional.pad(x[:, None, :], (rho.numel() - 1, 0))
    return dt * torch.nn.functional.conv1d(padded, rho.flip(0)[None, None, :])[:, 0, :]


# --------------------------------------------------------------------------- data sets


def adding_problem(n: int, length: int = 30, seed: int = 0, device=None):
    r"""The adding problem as a sequence-to-sequence task.

    Each input :math:`x_k = (v_k, \mu_k)` carries a value :math:`v_k \sim U[0, 1]` and a
    marker :math:`\mu_k \in \{0, 1\}`; exactly two positions are marked, one in each
    half of the sequence. The target is the running sum of marked values
    :math:`y_k = \sum_{j \le k} \mu_j v_j` — a causal functional with long memory
    (the first marked value must be remembered for up to ``length`` steps).

    Returns ``x`` of shape ``(n, length, 2)`` and ``y`` of shape ``(n, length)`` (float32).
    """
    n = check_int("n", n, minimum=1)
    length = check_int("length", length, minimum=4)
    gen = generator(seed)
    values = torch.rand(n, length, generator=gen)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=gen)
    second = torch.randint(half, length, (n,), generator=gen)
    markers = torch.zeros(n, length)
    markers[torch.arange(n), first] = 1.0
    markers[torch.arange(n), second] = 1.0
    x = torch.stack([values, markers], dim=-1)
    y = torch.cumsum(values * markers, dim=1)
    device = device_of() if device is None else get_device(device)
    return x.to(device), y.to(device)


def _lorenz_rhs(state: torch.Tensor) -> torch.Tensor:
    x, y, z = state.unbind(-1)
    return torch.stack([10.0 * (y - x), x * (28.0 - z) - y, x * y - (8.0 / 3.0) * z], dim=-1)


def lorenz_forecasting(n: int, length: int = 60, dt: float = 0.05, seed: int = 0, device=None):
    r"""Forecasting a partially observed chaotic system: :math:`y_k = x_{k+1}`.

    Trajectories of the Lorenz-63 system (RK4 with 10 substeps per sample, random
    initial points on the attractor) are observed through their first coordinate
    only, scaled by 1/10. The next observation is a function of the *past*
    observations (the unobserved coordinates can be reconstructed from them), but
    not of the present one alone — forecasting needs memory.

    Returns ``x`` of shape ``(n, length, 1)`` and ``y`` of shape ``(n, length)`` (float32).
    """
    n = check_int("n", n, minimum=1)
    length = check_int("length", length, minimum=2)
    dt = check_float("dt", dt, positive=True, maximum=0.2)
    gen = generator(seed)
    state = torch.randn(n, 3, generator=gen, dtype=torch.float64) * 5.0 + torch.tensor([0.0, 0.0, 25.0], dtype=torch.float64)
    h = dt / 10
    state = integrate(_lorenz_rhs, state, T=400 * h, steps=400, rule="classic")  # burn-in onto the attractor
    observed = [state[:, 0] / 10.0]
    for _ in range(length):
        state = integrate(_lorenz_rhs, state, T=10 * h, steps=10, rule="classic")  # 10 RK4 substeps per sample
        observed.append(state[:, 0] / 10.0)
    series = torch.stack(observed, dim=1).float()
    device = device_of() if device is None else get_device(device)
    return series[:, :-1, None].to(device), series[:, 1:].to(device)


def smoothing_seq2seq(n: int, length: int = 40, width: float = 3.0, seed: int = 0, device=None):
    r"""A non-causal sequence-to-sequence map: Gaussian smoothing of white noise.

    :math:`y_k = \sum_{j} g_j\, x_{k+j}` with :math:`g_j \propto e^{-j^2/(2\,\text{width}^2)}`,
    :math:`|j| \le 3\,\text{width}`, normalised so that :math:`\sum_j g_j^2 = 1` (unit output
    variance). Half of the weights look into the future, so no causal model can fit it:
    for white-noise input the best causal predictor misses exactly the energy
    :math:`\sum_{j > 0} g_j^2` (see :func:`smoothing_weights`).

    Returns ``x`` of shape ``(n, length, 1)`` and ``y`` of shape ``(n, length)`` (float32);
    inputs outside the sequence count as zero.
    """
    n = check_int("n", n, minimum=1)
    length = check_int("length", length, minimum=2)
    weights = torch.as_tensor(smoothing_weights(width), dtype=torch.float32)
    x = torch.randn(n, length, generator=generator(seed))
    half = (weights.numel() - 1) // 2
    y = torch.nn.functional.conv1d(torch.nn.functional.pad(x[:, None, :], (half, half)), weights[None, None, :])[:, 0]
    device = device_of() if device is None else get_device(device)
    return x[:, :, None].to(device), y.to(device)


def smoothing_weights(width: float = 3.0) -> np.ndarray:
    r"""The weights :math:`g_j,\ j = -J, \dots, J` of :func:`smoothing_seq2seq` (index ``J`` is lag 0)."""
    width = check_float("width", width, positive=True)
    half = max(1, int(math.ceil(3 * width)))
    lags = np.arange(-half, half + 1)
    g = np.exp(-(lags**2) / (2 * width**2))
    return g / np.linalg.norm(g)


def white_noise_functional(rho, n: int, length: int, dt: float = 1.0, seed: int = 0, device=None, dtype=torch.float32):
    r"""Inputs :math:`x_k = \xi_k/\sqrt{\Delta t}` (discretised white noise) and outputs :math:`y =` :func:`apply_kernel`.

    With this scaling the output variance is :math:`\Delta t \sum_j \rho_j^2 \approx \int \rho^2`,
    and the expected squared error of a linear model with kernel :math:`\hat\rho` is
    :math:`\Delta t \sum_j (\rho_j - \hat\rho_j)^2` — the white-noise risk.

    Returns ``x`` and ``y``, both of shape ``(n, length)``.
    """
    n = check_int("n", n, minimum=1)
    length = check_int("length", length, minimum=1)
    dt = check_float("dt", dt, positive=True)
    x = torch.randn(n, length, generator=generator(seed), dtype=torch.float64) / math.sqrt(dt)
    y = apply_kernel(x, rho, dt)
    device = device_of(rho) if device is None else get_device(device)
    return x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)


# --------------------------------------------------------------------------- exponential sums


class ExponentialSumFit(NamedTuple):
    """Result of :func:`fit_exponential_sum` (unpacks as ``coefficients, fitted, error``)."""

    coefficients: np.ndarray  #: the fitted :math:`a_i`, one per rate
    fitted: np.ndarray  #: the fitted kernel on the grid
    error: float  #: relative :math:`L^2` error on the grid


class ExponentialSum(NamedTuple):
    """One step of :func:`exponential_sum_path` (unpacks as ``rates, coefficients, error``)."""

    rates: np.ndarray  #: the rates :math:`\lambda_i`, increasing
    coefficients: np.ndarray  #: the coefficients :math:`a_i`
    error: float  #: relative :math:`L^2` error on the grid


class BestExponentialSum(NamedTuple):
    """Result of :func:`best_exponential_sum` (unpacks as ``rates, coefficients, fitted, error``)."""

    rates: np.ndarray  #: the rates :math:`\lambda_i`, increasing
    coefficients: np.ndarray  #: the coefficients :math:`a_i`
    fitted: np.ndarray  #: the fitted kernel on the grid
    error: float  #: relative :math:`L^2` error on the grid


def fit_exponential_sum(s, rho, rates):
    r"""Least-squares fit of :math:`\rho(s) \approx \sum_i a_i e^{-\lambda_i s}` with fixed rates :math:`\lambda_i`.

    Parameters
    ----------
    s
        Uniform grid of lags :math:`s \ge 0`, shape ``(n,)``.
    rho
        Target kernel on the grid, shape ``(n,)``.
    rates
        Decay rates :math:`\lambda_i > 0` (one per hidden unit), shape ``(m,)``.

    Returns
    -------
    ExponentialSumFit
        ``coefficients``, ``fitted`` (the fitted kernel), ``error``, the relative
        :math:`L^2` error :math:`\|\rho - \hat\rho\|_{L^2} / \|\rho\|_{L^2}` on the grid.
    """
    s = check_array("s", s, ndim=1)
    rho = check_array("rho", rho, ndim=1)
    rates = check_array("rates", rates, ndim=1)
    if s.shape != rho.shape:
        raise ValueError(f"s and rho must have the same shape, got {s.shape} and {rho.shape}")
    if np.any(s < 0):
        raise ValueError("s must hold non-negative lags")
    if rates.size == 0 or np.any(rates <= 0):
        raise ValueError("rates must be a non-empty array of positive decay rates")
    basis = np.exp(-np.outer(s, rates))
    coefficients, *_ = np.linalg.lstsq(basis, rho, rcond=None)
    fitted = basis @ coefficients
    error = float(np.linalg.norm(rho - fitted) / np.linalg.norm(rho))
    return ExponentialSumFit(coefficients, fitted, error)


def _check_uniform_grid(s, rho):
    s = check_array("s", s, ndim=1)
    rho = check_array("rho", rho, ndim=1)
    if s.shape != rho.shape:
        raise ValueError(f"s and rho must have the same shape, got {s.shape} and {rho.shape}")
    if s.size < 2 or np.any(s < 0) or not np.allclose(np.diff(s), s[1] - s[0]):
        raise ValueError("s must be a uniform grid of at least two non-negative lags")
    if not np.any(rho):
        raise ValueError("rho must not vanish identically")
    return s, rho


def exponential_sum_path(s, rho, max_m: int, rate_bounds=(1e-3, 1e2)):
    r"""Best exponential sums :math:`\sum_{i=1}^m a_i e^{-\lambda_i s}` with *free* rates, for m = 1, ..., ``max_m``.

    For fixed rates the coefficients solve a linear least-squares problem, so the
    error is a function of the rates alone (Golub–Pereyra *variable projection*).
    It is minimised over :math:`\log\lambda_i` with ``scipy.optimize.least_squares``
    (trust region, Kaufman's Jacobian :math:`J = -P^\perp\,\partial_{\log\lambda}\Phi\, a`). The
    sizes are visited in order: the rates found for :math:`m - 1` terms, plus the rate of
    a 200-point log-spaced dictionary that correlates best with the residual, start
    the search for :math:`m`; a result worse than the :math:`m - 1` solution is rejected,
    so errors never increase with :math:`m`. The problem is non-convex and
    ill-conditioned: these are good local optima, and errors below about
    :math:`10^{-8}` reach the limits of floating point.

    Parameters
    ----------
    s
        Uniform grid of lags :math:`s \ge 0` (trapezoidal weights); ``rho`` the kernel on it.
    max_m
        Largest number of terms, ``1 <= max_m <= 24``.
    rate_bounds
        Smallest and largest admissible rate.

    Returns
    -------
    list of :class:`ExponentialSum` ``(rates, coefficients, error)`` (error: relative L2), one per
    :math:`m = 1, \dots,` ``max_m``.
    """
    from scipy.optimize import least_squares

    s, rho = _check_uniform_grid(s, rho)
    max_m = check_int("max_m", max_m, minimum=1, maximum=24)
    low = check_float("rate_bounds[0]", rate_bounds[0], positive=True)
    high = check_float("rate_bounds[1]", rate_bounds[1], positive=True)
    if low >= high:
        raise ValueError(f"rate_bounds must be increasing, got {tuple(rate_bounds)!r}")
    lo, hi = math.log(low), math.log(high)
    weights = np.full(s.size, s[1] - s[0])
    weights[[0, -1]] /= 2
    root_w = np.sqrt(weights)
    target = rho * root_w
    norm = np.linalg.norm(target)

    def project(log_rates):
        rates = np.exp(log_rates)
        basis = np.exp(-np.outer(s, rates)) * root_w[:, None]
        u, sing, vt = np.linalg.svd(basis, full_matrices=False)
        keep = sing > sing[0] * 1e-13
        coefficients = vt[keep].T @ ((u[:, keep].T @ target) / sing[keep])
        return rates, basis, u[:, keep], coefficients

    def residual(log_rates):
        _, basis, _, coefficients = project(log_rates)
        return basis @ coefficients - target

    def jacobian(log_rates):
        rates, basis, u, coefficients = project(log_rates)
        d = -(s[:, None] * rates[None, :]) * basis * coefficients[None, :]
        return d - u @ (u.T @ d)

    dictionary = np.geomspace(low, high, 200)
    atoms = np.exp(-np.outer(s, dictionary)) * root_w[:, None]
    atoms /= np.linalg.norm(atoms, axis=0)
    current = np.empty(0)
    error = 1.0
    path = []
    for m in range(1, max_m + 1):
        remainder = target if m == 1 else -residual(current)
        new_rate = math.log(dictionary[np.argmax(np.abs(atoms.T @ remainder))])
        start = np.clip(np.append(current, new_rate), lo + 1e-9, hi - 1e-9)
        fit = least_squares(
            residual,
            start,
            jac=jacobian,
            bounds=(lo, hi),
            method="trf",
            max_nfev=100 * m + 100,
            ftol=1e-13,
            xtol=1e-13,
            gtol=1e-13,
        )
        trial = float(np.linalg.norm(fit.fun) / norm)
        if m == 1 or trial <= error:
            current, error = fit.x, trial
        else:  # keep the m - 1 solution, with the new term switched off
            current = np.append(current, new_rate)
        rates, _, _, coefficients = project(current)
        if coefficients.size < rates.size:  # a dropped (duplicate) direction: zero coefficient
            coefficients = np.linalg.lstsq(np.exp(-np.outer(s, rates)) * root_w[:, None], target, rcond=None)[0]
        order = np.argsort(rates)
        path.append(ExponentialSum(rates[order], coefficients[order], error))
    return path


def best_exponential_sum(s, rho, m: int, rate_bounds=(1e-3, 1e2)):
    r"""Best :math:`m`-term exponential sum with free rates (the last step of :func:`exponential_sum_path`).

    Returns
    -------
    BestExponentialSum
        ``rates``, ``coefficients``, ``fitted`` (the fitted kernel) and ``error`` (relative :math:`L^2` error).
    """
    m = check_int("m", m, minimum=1, maximum=24)
    rates, coefficients, error = exponential_sum_path(s, rho, m, rate_bounds)[-1]
    fitted = np.exp(-np.outer(check_array("s", s, ndim=1), rates)) @ coefficients
    return BestExponentialSum(rates, coefficients, fitted, error)


def kinked_kernel(s, power: float = 2.5, kink: float = 0.5) -> np.ndarray:
    r"""A memory of known decay and smoothness: :math:`\rho(s) = e^{-s}\,|e^{-s} - \text{kink}|^{\text{power}}`.

    In the variable :math:`u = e^{-s}` it is :math:`f(u) = u\,|u - u_0|^p`: the kernel decays like
    :math:`e^{-s}` (so :math:`e^{\beta s}\rho^{(k)}(s) \to 0` for every :math:`\beta < 1`) and is exactly
    :math:`\lceil p \rceil - 1` times continuously differentiable for non-integer :math:`p` (a singularity
    :math:`|s - s_0|^p` at :math:`s_0 = -\ln u_0`), the test family of the Jackson-type rate (chapter 3.2).
    """
    power = check_float("power", power, positive=True)
    kink = check_float("kink", kink, positive=True, maximum=1.0)
    u = np.exp(-_lags(s))
    return u * np.abs(u - kink) ** power


def polynomial_rate_errors(units, power: float = 2.5, kink: float = 0.5, grid: int = 8001) -> np.ndarray:
    r"""Error of an m-unit linear RNN with rates :math:`1, 2, \dots, m` fitted to :func:`kinked_kernel`.

    The construction behind the Jackson-type theorem: with :math:`u = e^{-s}`, the kernel
    :math:`\hat\rho(s) = \sum_{i=1}^m a_i e^{-i s} = u\,q(u)` is :math:`u` times a polynomial :math:`q` of degree
    :math:`m - 1`, here fitted by least squares to :math:`g(u) = |u - u_0|^p` on ``grid`` equispaced points of
    :math:`[0, 1]` (in a Chebyshev basis, which keeps the fit well conditioned; the network is the same).
    The error is measured in the theorem's norm: for inputs with :math:`|x_t| \le 1`,

    .. math:: \sup_t |H_t(\mathbf x) - \hat H_t(\mathbf x)| \le \int_0^\infty |\rho - \hat\rho|\,ds
              = \int_0^1 |g(u) - q(u)|\,du

    (with equality for the worst input :math:`x_{t-s} = \operatorname{sign}(\rho - \hat\rho)(s)`). Returns this
    :math:`L^1` error (trapezoidal rule), one entry per ``m`` in ``units``.
    """
    from numpy.polynomial import chebyshev

    power = check_float("power", power, positive=True)
    kink = check_float("kink", kink, positive=True, maximum=1.0)
    grid = check_int("grid", grid, minimum=100)
    units = [check_int(f"units[{i}]", m, minimum=1) for i, m in enumerate(np.atleast_1d(units).tolist())]
    u = np.linspace(0.0, 1.0, grid)
    target = np.abs(u - kink) ** power
    errors = []
    for m in units:
        coefficients = chebyshev.chebfit(2 * u - 1, target, m - 1)
        residual = np.abs(chebyshev.chebval(2 * u - 1, coefficients) - target)
        errors.append(float(np.sum((residual[1:] + residual[:-1]) / 2) * (u[1] - u[0])))
    return np.array(errors)


# --------------------------------------------------------------------------- Mori–Zwanzig


def eliminate_hidden_variables(A, resolved: int = 1):
    r"""Eliminate the hidden variables of a linear system; returns the Markov part and the memory kernel.

    For :math:`\dot x = A_{xx} x + A_{xz} z + f(t)`, :math:`\dot z = A_{zx} x + A_{zz} z`,
    :math:`z(0) = 0`, solving the :math:`z` equation and substituting gives the
    *generalised Langevin* (memory) equation

    .. math:: \dot x_t = A_{xx} x_t + \int_0^t K(s)\, x_{t-s}\, ds + f(t),
              \qquad K(s) = A_{xz}\, e^{A_{zz} s} A_{zx}.

    Parameters
    ----------
    A
        Square matrix of the full system, shape ``(n, n)``; the first ``resolved``
        coordinates are kept.
    resolved
        Number of resolved coordinates, ``1 <= resolved < n``.

    Returns
    -------
    markov, kernel
        ``markov`` is :math:`A_{xx}`; ``kernel(s)`` returns :math:`K(s)` for an array of
        lags, shape ``(len(s), resolved, resolved)``.
    """
    from scipy.linalg import expm

    A = check_array("A", A, ndim=2)
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {A.shape}")
    resolved = check_int("resolved", resolved, minimum=1, maximum=A.shape[0] - 1)
    r = resolved
    markov, a_xz, a_zx, a_zz = A[:r, :r].copy(), A[:r, r:], A[r:, :r], A[r:, r:]

    def kernel(s):
        s = _lags(np.atleast_1d(s))
        return np.stack([a_xz @ expm(a_zz * lag) @ a_zx for lag in s.ravel()])

    return markov, kernel


def solve_memory_equation(markov, kernel_values, forcing, x0, dt: float):
    r"""Solve :math:`\dot x = A x + \int_0^t K(s) x_{t-s} ds + f(t)` by the explicit Euler method.

    The convolution uses the trapezoidal rule on the same grid:
    :math:`x_{n+1} = x_n + \Delta t\,(A x_n + \Delta t \sum_{j=0}^{n} w_j K_j x_{n-j} + f_n)`.

    Parameters
    ----------
    markov
        :math:`A`, shape ``(r, r)``.
    kernel_values
        :math:`K_j = K(j\,\Delta t)`, shape ``(steps, r, r)``; ``steps`` sets the horizon.
    forcing
        :math:`f(t_j)` on the grid, shape ``(steps, r)``.
    x0
        Initial value, shape ``(r,)``.

    Returns
    -------
    Array of shape ``(steps, r)``: :math:`x` at :math:`t_j = j\,\Delta t`.
    """
    markov = check_array("markov", markov, ndim=2)
    kernel_values = check_array("kernel_values", kernel_values, ndim=3)
    forcing = check_array("forcing", forcing, ndim=2)
    x0 = check_array("x0", x0, ndim=1)
    dt = check_float("dt", dt, positive=True)
    r = markov.shape[0]
    steps = kernel_values.shape[0]
    if markov.shape != (r, r) or kernel_values.shape[1:] != (r, r) or forcing.shape != (steps, r) or x0.shape != (r,):
        raise ValueError(
            "markov (r, r), kernel_values (steps, r, r), forcing (steps, r) and x0 (r,) must agree, got "
            f"{markov.shape}, {kernel_values.shape}, {forcing.shape}, {x0.shape}"
        )
    x = np.zeros((steps, r))
    x[0] = x0
    for n in range(steps - 1):
        history = x[n::-1]  # x_{n-j}, j = 0..n
        terms = np.einsum("jab,jb->ja", kernel_values[: n + 1], history)
        memory = dt * (terms.sum(0) - 0.5 * (terms[0] + terms[-1])) if n > 0 else np.zeros(r)
        x[n + 1] = x[n] + dt * (markov @ x[n] + memory + forcing[n])
    return x


__all__ = [
    "adding_problem",
    "airy_kernel",
    "apply_kernel",
    "BestExponentialSum",
    "ExponentialSum",
    "ExponentialSumFit",
    "best_exponential_sum",
    "delayed_bump_kernel",
    "eliminate_hidden_variables",
    "exponential_kernel",
    "exponential_sum_path",
    "fit_exponential_sum",
    "kinked_kernel",
    "lorenz_forecasting",
    "polynomial_kernel",
    "polynomial_rate_errors",
    "smoothing_seq2seq",
    "smoothing_weights",
    "solve_memory_equation",
    "white_noise_functional",
]
