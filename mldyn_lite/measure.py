r"""Small measurement helpers used to turn experiments into testable numbers.

:func:`loglog_slope` fits :math:`\log y = s \log x + c` by least squares: the measured order :math:`s`
of a convergence :math:`e(h) \approx C h^s` (e.g. Euler's :math:`O(\delta)`, Hairer, Nørsett & Wanner 1993)
or the rate of a generalisation gap :math:`\propto N^{-s}` (Shalev-Shwartz & Ben-David 2014).
"""

from __future__ import annotations

import numpy as np

from ._checks import check_array

__all__ = ["loglog_slope"]


def loglog_slope(x, y) -> tuple[float, float]:
    """Least-squares fit ``log y = slope * log x + intercept``; returns ``(slope, intercept)``.

    This is how the book measures convergence orders (error against step
    size) and rates (generalisation gap against sample size).
    """
    x = check_array("x", x, ndim=1)
    y = check_array("y", y, ndim=1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    if x.size < 2:
        raise ValueError("x must hold at least two points to fit a slope")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive for a log-log fit")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(intercept)
