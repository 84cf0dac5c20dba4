r"""Supervised learning: hypothesis spaces, empirical and population risk.

Given data :math:`\mathcal D = \{(x^i, y^i)\}_{i=1}^N` with :math:`y^i = F^*(x^i)`
(plus noise), we pick :math:`F` from a hypothesis space :math:`\mathcal H` by

* empirical risk minimisation (ERM),
  :math:`\hat F = \arg\min_{F\in\mathcal H} \frac1N \sum_i \Phi(F(x^i), y^i)`;
* population risk minimisation (PRM),
  :math:`\tilde F = \arg\min_{F\in\mathcal H} \mathbb E_{(x,y)\sim\mu^*} \Phi(F(x), y)`.

We can only do ERM; the difference between the population and the empirical
risk of :math:`\hat F` is the *generalisation gap* (Q. Li, lecture 2021,
"Empirical and population risk minimization"; Shalev-Shwartz and Ben-David
2014, ch. 2).

Two hypothesis spaces are provided, both for the square loss
:math:`\Phi(\hat y, y) = (\hat y - y)^2` on the book's running problem
:func:`mldyn_lite.datasets.regression_1d` (:math:`x \sim U[-1, 1]`,
:math:`y = F^*(x) + \sigma\varepsilon`):

* ``"polynomial"`` — linear in features, :math:`F(x) = \sum_{j=0}^{p-1} a_j P_j(x)`
  with Legendre polynomials :math:`P_j` (:math:`p` = degree + 1); ERM is least
  squares. For a well-specified linear model with noise variance
  :math:`\sigma^2` the expected gap is close to :math:`2\sigma^2 p / N` for
  :math:`N \gg p`. PRM is the :math:`L^2` projection of :math:`F^*`
  (:func:`polynomial_prm`).
* ``"shallow_net"`` — :math:`F(x) = \sum_{j=1}^m a_j \tanh(w_j x + b_j)`; ERM by
  full-batch Adam with a fixed budget of steps (:func:`fit_shallow_nets`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import check_array, check_callable, check_choice, check_float, check_int
from .datasets import default_target, regression_1d
from .numerics import generator
from .training import fit

__all__ = [
    "HYPOTHESIS_SPACES",
    "GapResult",
    "ShallowNet",
    "ShallowNets",
    "excess_risk",
    "fit_polynomial",
    "fit_shallow_net",
    "fit_shallow_nets",
    "generalisation_gap",
    "legendre_features",
    "polynomial_prm",
    "shallow_net",
    "square_risk",
]

HYPOTHESIS_SPACES = ("polynomial", "shallow_net")


def square_risk(predict, x, y) -> float:
    r"""Mean square loss :math:`\frac1N\sum_i (F(x^i) - y^i)^2` of ``predict`` on ``(x, y)``."""
    check_callable("predict", predict)
    x = check_array("x", x, ndim=1)
    y = check_array("y", y, ndim=1)
    return float(np.mean((predict(x) - y) ** 2))


# --- linear in features: Legendre polynomials ---------------------------------------------------


def legendre_features(x, degree: int) -> np.ndarray:
    r"""Feature (design) matrix :math:`\Psi_{ij} = P_j(x^i)`, :math:`j = 0, \dots, \text{degree}`.

    Returns an array of shape ``(N, degree + 1)``.
    """
    x = check_array("x", x, ndim=1)
    degree = check_int("degree", degree, minimum=0)
    return np.polynomial.legendre.legvander(x, degree)


def _legendre_predictor(coefficients: np.ndarray):
    return lambda z: np.polynomial.legendre.legval(np.asarray(z, dtype=float), coefficients)


def fit_polynomial(x, y, degree: int):
    r"""ERM over :math:`\{\sum_{j\le \text{degree}} a_j P_j\}`: least squares :math:`\min_a \|\Psi a - y\|^2`.

    Solves the normal equations :math:`\Psi^\top\Psi\, a = \Psi^\top y` (Legendre
    features of points in :math:`[-1, 1]` are well conditioned, and this is much
    faster than an SVD for tall, thin :math:`\Psi`). With fewer samples than
    features the minimum-norm solution is returned (it interpolates the data).
    Returns ``predict(x)``.
    """
    features = legendre_features(x, degree)
    y = check_array("y", y, ndim=1)
    if y.shape[0] != features.shape[0]:
        raise ValueError(f"x and y must have the same length, got {features.shape[0]} and {y.shape[0]}")
    if features.shape[0] < features.shape[1]:
        coefficients, *_ = np.linalg.lstsq(features, y, rcond=None)
    else:
        coefficients = np.linalg.solve(features.T @ features, features.T @ y)
    return _legendre_predictor(coefficients)


def polynomial_prm(degree: int, target=default_target, quadrature_points: int = 64):
    r"""PRM over the polynomials of the given degree for :math:`x \sim U[-1,1]` and the square loss.

    Since :math:`\mathbb E(F(x) - y)^2 = \mathbb E(F(x) - F^*(x))^2 + \sigma^2`,
    the minimiser :math:`\tilde F` is the :math:`L^2` projection of :math:`F^*`:
    :math:`a_j = \frac{2j+1}{2}\int_{-1}^1 F^*(x) P_j(x)\,dx`, computed with
    Gauss–Legendre quadrature. Returns ``predict(x)``.
    """
    degree = check_int("degree", degree, minimum=0)
    check_callable("target", target)
    quadrature_points = check_int("quadrature_points", quadrature_points, minimum=degree + 1)
    nodes, weights = np.polynomial.legendre.leggauss(quadrature_points)
    features = np.polynomial.legendre.legvander(nodes, degree)
    coefficients = (2 * np.arange(degree + 1) + 1) / 2 * (features.T @ (weights * target(nodes)))
    return _legendre_predictor(coefficients)


def excess_risk(predict, target=default_target, quadrature_points: int = 200) -> float:
    r""":math:`\mathbb E_{x\sim U[-1,1]}(F(x) - F^*(x))^2`, i.e. population risk minus :math:`\sigma^2`.

    Computed by Gauss–Legendre quadrature (no sampling error). For the PRM
    solution this is the *approximation error* of the hypothesis space.
    """
    check_callable("predict", predict)
    check_callable("target", target)
    quadrature_points = check_int("quadrature_points", quadrature_points, minimum=1)
    nodes, weights = np.polynomial.legendre.leggauss(quadrature_points)
    return float(0.5 * np.sum(weights * (predict(nodes) - target(nodes)) ** 2))


# --- shallow networks ---------------------------------------------------------------------------


def shallow_net(x: torch.Tensor, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Evaluate :math:`F_r(x) = \sum_j a_{rj}\tanh(w_{rj} x + b_{rj})` for a batch of networks.

    ``x`` has shape ``(runs, n)`` (row ``r`` is fed to network ``r``), the
    parameters ``a, w, b`` have shape ``(runs, width)``; returns ``(runs, n)``.
    """
    hidden = torch.tanh(x[..., None] * w[:, None, :] + b[:, None, :])
    return (hidden * a[:, None, :]).sum(dim=-1)


@dataclass
class ShallowNet:
    r"""One trained network :math:`F(x) = \sum_j a_j\tanh(w_j x + b_j)`, callable as ``predict(x)`` (numpy in and out).

    ``a, w, b`` have shape ``(width,)``; ``history`` is the training loss per step (for a network trained
    with others by :func:`fit_shallow_nets`, the loss summed over the networks).
    """

    a: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor
    history: list

    def __call__(self, z) -> np.ndarray:
        z = torch.as_tensor(np.asarray(z, dtype=float))
        return shallow_net(z[None, :], self.a[None], self.w[None], self.b[None])[0].numpy()


@dataclass
class ShallowNets:
    r"""What :func:`fit_shallow_nets` returns: ``runs`` trained networks and the history of their summed risk.

    ``a, w, b`` have shape ``(runs, width)``. It behaves as the list of the networks: ``nets[r]`` is
    network ``r`` as a :class:`ShallowNet` (a ``predict(x)`` function), ``len(nets)`` is ``runs``.
    """

    a: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor
    history: list

    def __len__(self) -> int:
        return self.a.shape[0]

    def __getitem__(self, r: int) -> ShallowNet:
        r = check_int("r", r, minimum=-len(self), maximum=len(self) - 1)
        return ShallowNet(self.a[r], self.w[r], self.b[r], self.history)

    def __iter__(self):
        return (self[r] for r in range(len(self)))


def fit_shallow_nets(x, y, width: int = 32, steps: int = 1500, lr: float = 1e-2, seed: int = 0) -> ShallowNets:
    r"""ERM for ``runs`` independent shallow networks at once; ``x`` and ``y`` have shape ``(runs, N)``.

    Network ``r`` is trained on row ``r`` by full-batch Adam on the square
    loss. The networks are trained together by minimising the *sum* of their
    empirical risks: each network's gradient is the gradient of its own risk,
    and Adam acts coordinate-wise, so every network follows the trajectory it
    would follow alone — this only saves time. Initialisation:
    :math:`w \sim N(0, 4)`, :math:`b \sim U[-2, 2]`, :math:`a \sim N(0, 1/m)`, drawn from ``seed``.

    Returns :class:`ShallowNets`, which behaves as a list of ``runs`` functions ``predict(x)``
    (numpy in, numpy out).
    """
    x = check_array("x", x, ndim=2)
    y = check_array("y", y, ndim=2)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (runs, N), got {x.shape} and {y.shape}")
    width = check_int("width", width, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    runs = x.shape[0]
    gen = generator(check_int("seed", seed, minimum=0))
    w = (2.0 * torch.randn(runs, width, generator=gen, dtype=torch.float64)).requires_grad_()
    b = (4.0 * torch.rand(runs, width, generator=gen, dtype=torch.float64) - 2.0).requires_grad_()
    a = (torch.randn(runs, width, generator=gen, dtype=torch.float64) / width**0.5).requires_grad_()
    X, Y = torch.as_tensor(x), torch.as_tensor(y)

    def summed_empirical_risks():
        return torch.mean((shallow_net(X, a, w, b) - Y) ** 2, dim=1).sum()

    history = fit([a, w, b], summed_empirical_risks, steps=steps, lr=lr)
    return ShallowNets(a.detach(), w.detach(), b.detach(), history)


def fit_shallow_net(x, y, width: int = 32, steps: int = 1500, lr: float = 1e-2, seed: int = 0) -> ShallowNet:
    r"""ERM over :math:`\{\sum_j a_j \tanh(w_j x + b_j)\}` with full-batch Adam; returns a :class:`ShallowNet`
    (call it as ``predict(x)``; its ``history`` is the training loss)."""
    x = check_array("x", x, ndim=1)
    y = check_array("y", y, ndim=1)
    return fit_shallow_nets(x[None, :], y[None, :], width=width, steps=steps, lr=lr, seed=seed)[0]


# --- the experiment: generalisation gap against N -----------------------------------------------


@dataclass
class GapResult:
    r"""Risks measured by :func:`generalisation_gap`; every array has shape ``(len(sizes), repeats)``.

    ``empirical`` and ``population`` are the risks of the ERM solution
    :math:`\hat F`; ``empirical_target`` and ``population_target`` are the risks
    of the target :math:`F^*` itself on the *same* training set and the same
    fresh sample. :math:`F^*` does not depend on the data, so both of its risks
    have mean exactly :math:`\sigma^2` and its gap has mean zero. Yet it shares
    most of :math:`\hat F`'s sampling noise: :math:`\frac1N\sum_i\varepsilon_i^2`
    fluctuates by about :math:`\sigma^2\sqrt{2/N}`, more than the gap itself
    once :math:`N` is large. Subtracting it (``paired=True``) is a control
    variate: the expectation is unchanged and most of the noise cancels.
    """

    sizes: np.ndarray
    empirical: np.ndarray
    population: np.ndarray
    empirical_target: np.ndarray | None = None
    population_target: np.ndarray | None = None
    noise: float | None = None

    def _require_pairs(self):
        if self.empirical_target is None or self.population_target is None or self.noise is None:
            raise ValueError("paired=True needs empirical_target, population_target and noise")

    @property
    def gap(self) -> np.ndarray:
        """Population minus empirical risk, per size and repeat."""
        return self.population - self.empirical

    @property
    def paired_gap(self) -> np.ndarray:
        """The gap of the ERM solution minus the gap of the target on the same samples (same mean, less noise)."""
        self._require_pairs()
        return self.gap - (self.population_target - self.empirical_target)

    def _gaps(self, paired: bool) -> np.ndarray:
        return self.paired_gap if paired else self.gap

    def mean_gap(self, paired: bool = False) -> np.ndarray:
        """Generalisation gap averaged over repeats, one value per size."""
        return self._gaps(paired).mean(axis=1)

    def standard_error(self, paired: bool = False) -> np.ndarray:
        """Standard error of :meth:`mean_gap` (spread over repeats / sqrt(repeats)); zero for one repeat."""
        gaps = self._gaps(paired)
        if gaps.shape[1] < 2:
            return np.zeros(gaps.shape[0])
        return gaps.std(axis=1, ddof=1) / np.sqrt(gaps.shape[1])

    def mean_risks(self, paired: bool = False) -> tuple[np.ndarray, np.ndarray]:
        r"""Mean empirical and population risk per size.

        With ``paired=True`` each is estimated as :math:`\sigma^2 + \text{mean}(R(\hat F) - R(F^*))`,
        which has the same expectation and far less noise.
        """
        if not paired:
            return self.empirical.mean(axis=1), self.population.mean(axis=1)
        self._require_pairs()
        variance = self.noise**2
        return (
            variance + (self.empirical - self.empirical_target).mean(axis=1),
            variance + (self.population - self.population_target).mean(axis=1),
        )


def _check_sizes(sizes) -> np.ndarray:
    """Sample sizes: a non-empty sequence of integers >= 2 (integer-valued floats such as 64.0 are accepted)."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"sizes must be a sequence of integers, got {type(sizes).__name__} {sizes!r}")
    checked = []
    for i, n in enumerate(sizes):
        if isinstance(n, numbers.Real) and not isinstance(n, (bool, numbers.Integral)) and float(n).is_integer():
            n = int(n)
        checked.append(check_int(f"sizes[{i}]", n, minimum=2))
    if not checked:
        raise ValueError("sizes must hold at least one sample size")
    return np.asarray(checked)


def generalisation_gap(
    hypothesis: str,
    sizes,
    repeats: int = 5,
    noise: float = 0.3,
    n_population: int = 100_000,
    degree: int = 10,
    width: int = 32,
    steps: int = 1500,
    lr: float = 1e-2,
    seed: int = 0,
) -> GapResult:
    """Train by ERM on ``N`` samples for each ``N`` in ``sizes``, ``repeats`` times, and measure both risks.

    Each repeat uses a new training set from :func:`~mldyn_lite.datasets.regression_1d`
    (and, for the network, a new initialisation). The population risk of each
    trained model is estimated on its own ``n_population`` fresh samples of
    the same distribution, so that the Monte Carlo error averages out over
    repeats instead of biasing every run the same way. The risks of the target
    :math:`F^*` on the same samples are recorded too, for the paired estimates
    of :class:`GapResult`. All seeds are derived from ``seed``.

    ``degree`` is used by ``"polynomial"``; ``width``, ``steps`` and ``lr`` by ``"shallow_net"``.
    """
    check_choice("hypothesis", hypothesis, HYPOTHESIS_SPACES)
    sizes = _check_sizes(sizes)
    repeats = check_int("repeats", repeats, minimum=1)
    noise = check_float("noise", noise, nonnegative=True)
    n_population = check_int("n_population", n_population, minimum=100)
    degree = check_int("degree", degree, minimum=0)
    width = check_int("width", width, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    seed = check_int("seed", seed, minimum=0)

    # independent seeds for every training set, fresh sample and network initialisation
    streams = np.random.SeedSequence(seed).generate_state(sizes.size * (2 * repeats + 1)).reshape(sizes.size, -1)
    empirical = np.zeros((sizes.size, repeats))
    population = np.zeros_like(empirical)
    empirical_target = np.zeros_like(empirical)
    population_target = np.zeros_like(empirical)
    for i, n in enumerate(sizes):
        train_seeds, fresh_seeds, init_seed = streams[i, :repeats], streams[i, repeats:-1], streams[i, -1]
        data = [regression_1d(int(n), noise, seed=s) for s in train_seeds]
        x, y = np.stack([d[0] for d in data]), np.stack([d[1] for d in data])
        if hypothesis == "polynomial":
            predictors = [fit_polynomial(x[r], y[r], degree) for r in range(repeats)]
        else:
            predictors = fit_shallow_nets(x, y, width=width, steps=steps, lr=lr, seed=int(init_seed))
        for r, predict in enumerate(predictors):
            x_fresh, y_fresh = regression_1d(n_population, noise, seed=fresh_seeds[r])
            empirical[i, r] = square_risk(predict, x[r], y[r])
            population[i, r] = square_risk(predict, x_fresh, y_fresh)
            empirical_target[i, r] = square_risk(default_target, x[r], y[r])
            population_target[i, r] = square_risk(default_target, x_fresh, y_fresh)
    return GapResult(
        sizes=sizes,
        empirical=empirical,
        population=population,
        empirical_target=empirical_target,
        population_target=population_target,
        noise=noise,
    )
