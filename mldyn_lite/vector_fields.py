r"""Learning a vector field from trajectory data by least squares on a feature library.

Given snapshots :math:`x(t_k)` of :math:`\dot x = F(x)`, estimate derivatives
by central differences and fit :math:`F(x) \approx \Xi^\top \psi(x)` where
:math:`\psi` is a library of monomials (the unstructured, "sparse
identification" end of the spectrum discussed in the lecture's chapter on
learning dynamics; Brunton, Proctor & Kutz, PNAS 2016, without the sparsity
step). The error of the derivative estimate is :math:`O(\Delta t^2)`.
"""

from __future__ import annotations

import itertools

import numpy as np

from ._checks import check_array, check_int

__all__ = ["central_differences", "evaluate_polynomial_vector_field", "fit_polynomial_vector_field", "monomial_library"]


def monomial_library(x, degree: int):
    """All monomials of the columns of ``x`` up to ``degree``; returns ``(features, names)``."""
    x = check_array("x", x, ndim=2)
    degree = check_int("degree", degree, minimum=0)
    n, d = x.shape
    columns, names = [np.ones(n)], ["1"]
    for k in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(d), k):
            columns.append(np.prod(x[:, list(combo)], axis=1))
            names.append("*".join(f"x{j + 1}" for j in combo))
    return np.stack(columns, axis=1), names


def central_differences(t, x):
    """Second-order derivative estimates at the interior snapshots; returns ``(x_interior, dxdt)``."""
    t = check_array("t", t, ndim=1)
    x = check_array("x", x, ndim=2)
    if x.shape[0] != t.size or t.size < 3:
        raise ValueError(f"x must have one row per time in t (at least 3), got {x.shape[0]} rows and {t.size} times")
    dt = np.diff(t)
    if not np.allclose(dt, dt[0]):
        raise ValueError("t must be uniformly spaced")
    return x[1:-1], (x[2:] - x[:-2]) / (2 * dt[0])


def fit_polynomial_vector_field(t, x, degree: int = 1):
    r"""Fit :math:`\dot x \approx \Xi^\top \psi(x)` from one trajectory; returns ``(Xi, names)``.

    ``Xi`` has shape ``(len(names), d)``: column ``j`` holds the coefficients
    of :math:`\dot x_j` on the monomials ``names``.
    """
    states, derivatives = central_differences(t, x)
    features, names = monomial_library(states, degree)
    coefficients, *_ = np.linalg.lstsq(features, derivatives, rcond=None)
    return coefficients, names


def evaluate_polynomial_vector_field(coefficients, degree: int, x):
    """The learned field :math:`\\Xi^\\top \\psi(x)` at the rows of ``x``."""
    features, _ = monomial_library(x, degree)
    coefficients = check_array("coefficients", coefficients, ndim=2)
    if coefficients.shape[0] != features.shape[1]:
        raise ValueError(f"coefficients must have {features.shape[1]} rows for degree {degree}, got {coefficients.shape[0]}")
    return features @ coefficients
