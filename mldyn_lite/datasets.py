r"""Small generated data sets (no downloads): every sample is made by code, from a seed.

* :func:`regression_1d`: the book's running regression problem (chapter 1.1), :math:`x \sim U[-1, 1]`,
  :math:`y = F^*(x) + \sigma\varepsilon` with :math:`F^*(x) = \sin(3x) + x/2` (Q. Li, lecture 2021,
  "Empirical and population risk minimization").
* :func:`two_moons`, :func:`two_rings`: two-class problems in the plane whose classes no line separates,
  used to show a residual flow making them separable (chapters 1.2 and 2.1; Li, Lin & Shen,
  arXiv:1912.10382).

Random numbers come from a private generator seeded by ``seed``
(:func:`mldyn_lite.numerics.generator`, or numpy's ``default_rng``); the global random state is untouched.
Tensors are made on ``device`` (default: the CPU).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._checks import check_callable, check_float, check_int
from .numerics import generator

__all__ = ["default_target", "regression_1d", "two_moons", "two_rings"]


def default_target(x):
    r"""The book's running 1-D regression target :math:`F^*(x) = \sin(3x) + \tfrac12 x`."""
    return np.sin(3 * x) + 0.5 * x


def regression_1d(n: int, noise: float = 0.3, seed: int = 0, target=default_target):
    r"""Inputs :math:`x \sim U[-1, 1]`, outputs :math:`y = F^*(x) + \sigma\varepsilon`, :math:`\varepsilon \sim N(0,1)`.

    Returns numpy arrays ``x`` and ``y`` of shape ``(n,)``.
    """
    n = check_int("n", n, minimum=1)
    noise = check_float("noise", noise, nonnegative=True)
    check_callable("target", target)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    x = rng.uniform(-1.0, 1.0, n)
    y = target(x) + noise * rng.standard_normal(n)
    return x, y


def two_moons(n: int, noise: float = 0.1, seed: int = 0, dtype=torch.float32, device=None):
    """Two interleaved half circles in the plane; returns ``(x, labels)`` as tensors (``n`` points in all)."""
    n = check_int("n", n, minimum=2)
    noise = check_float("noise", noise, nonnegative=True)
    gen = generator(check_int("seed", seed, minimum=0))
    labels = torch.arange(n) % 2
    angle = math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    x = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    x[labels == 1] = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)[labels == 1]
    x = x + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    x = (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) / torch.tensor([1.0, 0.6], dtype=torch.float64)
    device = torch.device("cpu") if device is None else torch.device(device)
    return x.to(dtype=dtype, device=device), labels.to(device)


def two_rings(n: int, radii=(0.5, 1.0), noise: float = 0.05, seed: int = 0, dtype=torch.float32, device=None):
    """Two concentric rings (label 0 inside, 1 outside); returns ``(x, labels)`` as tensors."""
    n = check_int("n", n, minimum=2)
    noise = check_float("noise", noise, nonnegative=True)
    if len(radii) != 2 or not 0 < radii[0] < radii[1]:
        raise ValueError(f"radii must be two increasing positive numbers, got {radii!r}")
    gen = generator(check_int("seed", seed, minimum=0))
    labels = torch.arange(n) % 2
    angle = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    radius = torch.tensor(radii, dtype=torch.float64)[labels] + noise * torch.randn(n, generator=gen, dtype=torch.float64)
    x = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    device = torch.device("cpu") if device is None else torch.device(device)
    return x.to(dtype=dtype, device=device), labels.to(device)
