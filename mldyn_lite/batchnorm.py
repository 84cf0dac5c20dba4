r"""Batch normalisation on ordinary least squares: gradient descent with and without it.

Following Cai, Li and Shen (ICML 2019), take inputs :math:`x \sim N(0, H)` and the realisable
target :math:`y = u^\top x`. Ordinary least squares,

.. math:: J_0(w) = \tfrac12\,\mathbb E\,(y - w^\top x)^2 = \tfrac12 (w-u)^\top H (w-u),

is minimised by gradient descent (GD) :math:`w_{k+1} = w_k - \varepsilon H(w_k - u)`, which converges
iff :math:`0 < \varepsilon < 2/\lambda_{\max}(H)`. With batch normalisation the prediction is
:math:`a\,w^\top x/\sqrt{w^\top H w}` (the population-normalised feature, rescaled by a
trainable scale :math:`a`), and the loss becomes

.. math:: J(a, w) = \tfrac12\,\mathbb E\Big(y - a\frac{w^\top x}{\sigma_w}\Big)^2
          = \tfrac12\Big(u - \frac{a}{\sigma_w}w\Big)^\top H\Big(u - \frac{a}{\sigma_w}w\Big),
          \qquad \sigma_w = \sqrt{w^\top H w}.

BNGD takes gradient steps :math:`a \leftarrow a - \varepsilon_a \partial_a J`,
:math:`w \leftarrow w - \varepsilon\,\partial_w J` with exact (population) gradients

.. math:: \partial_a J = a - \frac{w^\top H u}{\sigma_w}, \qquad
          \partial_w J = -\frac{a}{\sigma_w}\Big(Hu - \frac{w^\top H u}{\sigma_w^2}\,Hw\Big).

:math:`J` is invariant under :math:`w \mapsto cw`, so :math:`w^\top\partial_w J = 0` and
:math:`\|w_{k+1}\|^2 = \|w_k\|^2 + \varepsilon^2\|\partial_w J\|^2` grows: the *effective* learning
rate :math:`\varepsilon/\|w_k\|^2` shrinks until it is stable. This is why BNGD converges for
learning rates :math:`\varepsilon` far above :math:`2/\lambda_{\max}`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._checks import check_float, check_int, check_tensor
from .numerics import generator
from .runtime import get_device
from .training import raise_if_nonfinite

__all__ = [
    "DIVERGENCE_THRESHOLD",
    "BNGDRun",
    "GDRun",
    "bn_gradients",
    "bn_loss",
    "bngd_least_squares",
    "gd_least_squares",
    "least_squares_problem",
    "ols_loss",
]

#: A loss above this value counts as divergence (GD is then stopped).
DIVERGENCE_THRESHOLD = 1e30


def least_squares_problem(eigenvalues, seed: int = 0, device: str | torch.device | None = None):
    r"""A least-squares problem :math:`H = \operatorname{diag}(\text{eigenvalues})`, target :math:`u \sim N(0, I)`.

    Returns ``(H, u)`` as float64 tensors on ``device`` (default: the CPU).
    """
    device = torch.device("cpu") if device is None else get_device(device)
    eigenvalues = torch.as_tensor(np.asarray(eigenvalues, dtype=float), dtype=torch.float64)
    check_tensor("eigenvalues", eigenvalues, ndim=1)
    if bool((eigenvalues <= 0).any()):
        raise ValueError("eigenvalues must be positive (H must be positive definite)")
    u = torch.randn(eigenvalues.shape[0], generator=generator(seed), dtype=torch.float64)
    return torch.diag(eigenvalues).to(device), u.to(device)


@dataclass
class GDRun:
    """Result of :func:`gd_least_squares`: the ``loss`` history (``(steps + 1,)`` or ``(R, steps + 1)``;
    ``inf`` after divergence) and the ``diverged`` flag (a bool, or one per run)."""

    loss: np.ndarray
    diverged: bool | np.ndarray


@dataclass
class BNGDRun:
    """Result of :func:`bngd_least_squares`: histories ``loss``, ``w_norm`` and ``effective_lr`` (``(steps + 1,)``
    or ``(R, steps + 1)``) and the final scale ``a`` and weights ``w``."""

    loss: np.ndarray
    w_norm: np.ndarray
    effective_lr: np.ndarray
    a: np.ndarray
    w: np.ndarray


def _check_problem(H, u):
    H = check_tensor("H", H, ndim=2)
    u = check_tensor("u", u, ndim=(1, 2))
    d = u.shape[-1]
    if H.shape != (d, d):
        raise ValueError(f"H must have shape ({d}, {d}) to match u, got {tuple(H.shape)}")
    return H, u


def _to_device(H, u, device):
    device = u.device if device is None else get_device(device)
    return H.to(device), u.to(device)


def _runs(name, value, positive=True) -> torch.Tensor:
    """A learning rate given as a float or a 1-D sequence (one run per entry) → tensor of shape (R,)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        values = [check_float(name, value, positive=positive)]
    else:
        try:
            values = np.asarray(value, dtype=float).ravel().tolist()
        except (TypeError, ValueError):
            values = None
        if not values or isinstance(value, str):
            raise TypeError(f"{name} must be a positive number or a non-empty sequence of them, got {value!r}")
        values = [check_float(f"{name}[{i}]", v, positive=positive) for i, v in enumerate(values)]
    return torch.tensor(values, dtype=torch.float64)


def _quadratic(H, r):
    """Row-wise r^T H r for r of shape (R, d)."""
    return ((r @ H) * r).sum(dim=-1)


def ols_loss(H, u, w) -> torch.Tensor:
    r"""Ordinary least-squares loss :math:`\frac12(w-u)^\top H(w-u)` (``w`` of shape ``(d,)`` or ``(R, d)``)."""
    H, u = _check_problem(H, u)
    r = check_tensor("w", w, ndim=(1, 2), finite=False) - u
    return 0.5 * _quadratic(H, r)


def bn_loss(H, u, a, w) -> torch.Tensor:
    r"""Batch-normalised loss :math:`\frac12 r^\top H r` with :math:`r = u - a w/\sigma_w` (no cancellation near 0)."""
    H, u = _check_problem(H, u)
    w = check_tensor("w", w, ndim=(1, 2))
    a = torch.as_tensor(a, dtype=w.dtype, device=w.device)
    r = u - a.unsqueeze(-1) * w / torch.sqrt(_quadratic(H, w)).unsqueeze(-1)
    return 0.5 * _quadratic(H, r)


def bn_gradients(H, u, a, w):
    r"""Exact gradients :math:`(\partial_a J, \partial_w J)` of :func:`bn_loss` (row-wise for ``w`` of shape ``(R, d)``)."""
    H, u = _check_problem(H, u)
    w = check_tensor("w", w, ndim=(1, 2))
    a = torch.as_tensor(a, dtype=w.dtype, device=w.device)
    Hw, Hu = w @ H.T, u @ H.T
    sigma = torch.sqrt((Hw * w).sum(-1))
    projection = (Hu * w).sum(-1)
    grad_a = a - projection / sigma
    grad_w = -(a / sigma).unsqueeze(-1) * (Hu - (projection / sigma**2).unsqueeze(-1) * Hw)
    return grad_a, grad_w


def gd_least_squares(H, u, lr, steps: int, w0=None, device: str | torch.device | None = None) -> GDRun:
    r"""Plain GD :math:`w \leftarrow w - \varepsilon H(w-u)` from ``w0`` (default 0).

    ``lr`` is a float or a sequence of learning rates (one independent run each). Returns a
    :class:`GDRun` with the loss history of shape ``(steps + 1,)`` (or
    ``(R, steps + 1)`` for ``R`` learning rates). Divergence is an expected outcome here
    (:math:`\varepsilon > 2/\lambda_{\max}`): a run whose loss exceeds ``DIVERGENCE_THRESHOLD`` is
    frozen, counted as diverged, and its remaining losses are ``inf`` (no exception).
    ``device`` defaults to the device of ``u``.
    """
    H, u = _to_device(*_check_problem(H, u), device)
    single = isinstance(lr, (int, float))
    lrs = _runs("lr", lr).to(u.device)
    steps = check_int("steps", steps, minimum=1)
    R = lrs.shape[0]
    w = (
        torch.zeros(R, u.shape[-1], dtype=u.dtype, device=u.device)
        if w0 is None
        else check_tensor("w0", w0, ndim=(1, 2)).to(u.device, u.dtype).expand(R, -1).clone()
    )
    diverged = torch.zeros(R, dtype=torch.bool, device=u.device)
    losses = [ols_loss(H, u, w)]
    for _ in range(steps):
        w = torch.where(diverged.unsqueeze(-1), w, w - lrs.unsqueeze(-1) * ((w - u) @ H.T))
        loss = ols_loss(H, u, w)
        diverged |= ~(loss < DIVERGENCE_THRESHOLD)
        losses.append(torch.where(diverged, torch.full_like(loss, float("inf")), loss))
    history = torch.stack(losses, dim=-1).cpu().numpy()
    flags = diverged.cpu().numpy()
    return GDRun(history[0], bool(flags[0])) if single else GDRun(history, flags)


def bngd_least_squares(
    H,
    u,
    lr,
    steps: int,
    *,
    lr_scale: float = 0.5,
    w0=None,
    a0: float = 0.0,
    seed: int = 1,
    device: str | torch.device | None = None,
) -> BNGDRun:
    r"""BNGD on least squares: weight learning rate ``lr`` (:math:`\varepsilon`), scale learning rate ``lr_scale``.

    ``lr`` is a float or a sequence (one independent run per entry, all run at once); ``u`` and
    ``w0`` have shape ``(d,)`` (shared) or ``(R, d)`` (one per run). ``w0`` defaults to a standard
    normal vector drawn with ``seed``. Returns a :class:`BNGDRun` of numpy arrays over the steps ``0..steps``:
    ``"loss"``, ``"w_norm"`` (:math:`\|w_k\|`) and ``"effective_lr"``
    (:math:`\varepsilon\lambda_{\max}/\|w_k\|^2`; the weight update is stable once it is below about 2),
    each of shape ``(steps + 1,)`` for one run or ``(R, steps + 1)``, and the final ``"a"``, ``"w"``.
    ``device`` defaults to the device of ``u``.
    """
    H, u = _to_device(*_check_problem(H, u), device)
    single = isinstance(lr, (int, float)) and u.ndim == 1 and (w0 is None or w0.ndim == 1)
    lrs = _runs("lr", lr).to(u.device)
    lr_scale = check_float("lr_scale", lr_scale, positive=True)
    steps = check_int("steps", steps, minimum=1)
    a0 = check_float("a0", a0)
    d = u.shape[-1]
    if w0 is None:
        w0 = torch.randn(d, generator=generator(seed), dtype=torch.float64)
    w0 = check_tensor("w0", w0, ndim=(1, 2)).to(u.device, u.dtype)
    R = max(lrs.shape[0], u.shape[0] if u.ndim == 2 else 1, w0.shape[0] if w0.ndim == 2 else 1)
    for name, rows in (
        ("lr", lrs.shape[0]),
        ("u", u.shape[0] if u.ndim == 2 else 1),
        ("w0", w0.shape[0] if w0.ndim == 2 else 1),
    ):
        if rows not in (1, R):
            raise ValueError(f"{name} gives {rows} runs but another argument gives {R}; use 1 or {R}")
    lrs, u, w = lrs.expand(R), u.expand(R, d), w0.expand(R, d).clone()
    if bool((w.norm(dim=-1) == 0).any()):
        raise ValueError("w0 must be non-zero: the normalised feature w^T x / sigma_w is undefined at w = 0")
    a = torch.full((R,), a0, dtype=u.dtype, device=u.device)
    lam_max = float(torch.linalg.eigvalsh(H).max())
    losses, norms = [bn_loss(H, u, a, w)], [w.norm(dim=-1)]
    for k in range(steps):
        grad_a, grad_w = bn_gradients(H, u, a, w)
        a = a - lr_scale * grad_a
        w = w - lrs.unsqueeze(-1) * grad_w
        if k % 100 == 99 or k == steps - 1:
            raise_if_nonfinite(w, k, "BNGD weight", "lr_scale is too large (the scale update diverged)")
        losses.append(bn_loss(H, u, a, w))
        norms.append(w.norm(dim=-1))
    loss = torch.stack(losses, dim=-1).cpu().numpy()
    w_norm = torch.stack(norms, dim=-1).cpu().numpy()
    effective = lrs.cpu().numpy()[:, None] * lam_max / w_norm**2
    out = {"loss": loss, "w_norm": w_norm, "effective_lr": effective, "a": a.cpu().numpy(), "w": w.cpu().numpy()}
    return BNGDRun(**({key: value[0] for key, value in out.items()} if single else out))
