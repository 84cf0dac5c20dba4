r"""Supervised learning: hypothesis spaces, empirical and population risk.

Given data :math:`\mathcal D = \{(x^i, y^i)\}_{i=1}^N` with :math:`y^i = F^*(x^i)`
(plus noise), we pick :math:`F` from a hypothesis space :math:`\mathcal H` by

* empirical risk minimisation (ERM),
  :math:`\hat F = \arg\min_{F\in\mathcal H} \frac1N \sum_i \Phi(F(x^i), y^i)`;
* population risk minimisation (PRM),
  :math:`\tilde F = \arg\min_{F\in\mathcal H} \mathbb E_{(x,y)\sim\mu^*} \Phi(F(x), y)`.

We can only do ERM; the difference between the population and the empirical
risk of :math:`\hat F` is the *generalisation gap* (Q. Li, lecture 2021,
"Empirical and population risk minimization").

Two hypothesis spaces are provided, both for the square loss
:math:`\Phi(\hat y, y) = (\hat y - y)^2`:

* ``"polynomial"`` — linear in features, :math:`F(x) = \sum_{j=0}^{p-1} a_j P_j(x)`
  with Legendre polynomials :math:`P_j`; ERM is least squares. For a
  well-specified linear model with noise variance :math:`\sigma^2` the
  expected gap is close to :math:`2\sigma^2 p / N` for :math:`N \gg p`.
* ``"shallow_net"`` — :math:`F(x) = \sum_j a_j \tanh(w_j x + b_j)`; ERM by
  full-batch Adam with a fixed budget of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._checks import check_array, check_choice, check_float, check_int
from .datasets import regression_1d
from .training import fit

HYPOTHESIS_SPACES = ("polynomial", "shallow_net")


def square_risk(predict, x, y) -> float:
    r"""Mean square loss :math:`\frac1N\sum_i (F(x^i) - y^i)^2` of ``predict`` on ``(x, y)``."""
    x = check_array("x", x, ndim=1)
    y = check_array("y", y, ndim=1)
    return float(np.mean((predict(x) - y) ** 2))


def fit_polynomial(x, y, degree: int):
    """Least-squares fit of a Legendre series of the given degree; returns ``predict(x)``."""
    x = check_array("x", x, ndim=1)
    y = check_array("y", y, ndim=1)
    degree = check_int("degree", degree, minimum=0)
    series = np.polynomial.Legendre.fit(x, y, degree, domain=[-1, 1])
    return lambda z: series(np.asarray(z, dtype=float))


def fit_shallow_net(x, y, width: int = 32, steps: int = 1500, lr: float = 1e-2, seed: int = 0):
    r"""ERM over :math:`\{\sum_j a_j \tanh(w_j x + b_j)\}` with full-batch Adam; returns ``predict(x)``."""
    x = check_array("x", x, ndim=1)
    y = check_array("y", y, ndim=1)
    width = check_int("width", width, minimum=1)
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    w = (2.0 * torch.randn(width, generator=gen, dtype=torch.float64)).requires_grad_()
    b = (2.0 * torch.rand(width, generator=gen, dtype=torch.float64) - 1.0).mul(2.0).requires_grad_()
    a = (torch.randn(width, generator=gen, dtype=torch.float64) / width**0.5).requires_grad_()
    X = torch.as_tensor(x)[:, None]
    Y = torch.as_tensor(y)

    def net(inputs):
        return torch.tanh(inputs * w + b) @ a

    fit([w, b, a], lambda: torch.mean((net(X) - Y) ** 2), steps=steps, lr=lr)

    def predict(z):
        with torch.no_grad():
            return net(torch.as_tensor(np.asarray(z, dtype=float))[:, None]).numpy()

    return predict


@dataclass
class GapResult:
    """Empirical and population risks of ERM solutions, shape ``(len(sizes), repeats)``."""

    sizes: np.ndarray
    empirical: np.ndarray
    population: np.ndarray

    @property
    def gap(self) -> np.ndarray:
        """Population minus empirical risk, per size and repeat."""
        return self.population - self.empirical

    def mean_gap(self) -> np.ndarray:
        """Generalisation gap averaged over repeats, one value per size."""
        return self.gap.mean(axis=1)


def generalisation_gap(hypothesis: str, sizes, repeats: int = 5, noise: float = 0.3, n_population: int = 100_000,
                       degree: int = 10, width: int = 32, steps: int = 1500, seed: int = 0) -> GapResult:
    """Train by ERM on ``N`` samples for each ``N`` in ``sizes``, and measure both risks.

    The population risk of each trained model is estimated on its own
    ``n_population`` fresh samples of the same distribution, so that the
    Monte Carlo error averages out over repeats instead of biasing every run
    the same way. Each repeat uses a new training set (and, for the
    network, a new initialisation).
    """
    check_choice("hypothesis", hypothesis, HYPOTHESIS_SPACES)
    sizes = np.asarray([check_int("sizes[i]", int(n) if float(n).is_integer() else n, minimum=2) for n in sizes])
    if sizes.size == 0:
        raise ValueError("sizes must hold at least one sample size")
    repeats = check_int("repeats", repeats, minimum=1)
    noise = check_float("noise", noise, nonnegative=True)
    n_population = check_int("n_population", n_population, minimum=100)
    empirical = np.zeros((sizes.size, repeats))
    population = np.zeros_like(empirical)
    for i, n in enumerate(sizes):
        for r in range(repeats):
            run_seed = seed + 1000 * i + r
            x, y = regression_1d(int(n), noise, seed=run_seed)
            if hypothesis == "polynomial":
                predict = fit_polynomial(x, y, degree)
            else:
                predict = fit_shallow_net(x, y, width=width, steps=steps, seed=run_seed)
            x_fresh, y_fresh = regression_1d(n_population, noise, seed=run_seed + 500_000)
            empirical[i, r] = square_risk(predict, x, y)
            population[i, r] = square_risk(predict, x_fresh, y_fresh)
    return GapResult(sizes=sizes, empirical=empirical, population=population)
