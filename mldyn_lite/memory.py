r"""Memory kernels of linear recurrent networks.

A continuous-time linear RNN :math:`\dot h_t = W h_t + U x_t,\ y_t = c^\top h_t`
represents the linear functional

.. math:: H_t(\mathbf x) = \int_0^\infty x_{t-s}^\top \rho(s)\, ds, \qquad \rho(s) = c^\top e^{W s} U,

so for a diagonal :math:`W = \mathrm{diag}(-\lambda_1, \dots, -\lambda_m)` the
kernel is an exponential sum :math:`\rho(s) = \sum_i a_i e^{-\lambda_i s}`
(Z. Li, Han, E & Q. Li, ICLR 2021, "On the curse of memory in recurrent
neural networks"). Approximating a target kernel by such sums is efficient
if and only if the target's memory decays exponentially.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_array


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
    coefficients, fitted kernel, relative :math:`L^2` error
        The error is :math:`\|\rho - \hat\rho\|_{L^2} / \|\rho\|_{L^2}` on the grid.
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
    return coefficients, fitted, error
