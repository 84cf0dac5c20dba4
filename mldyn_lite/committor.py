r"""Committor functions of rare transitions: reference solver, rate, neural-network fit.

For the overdamped Langevin dynamics :math:`dX_t = -\nabla V(X_t)\,dt + \sqrt{2kT}\,dW_t`
the committor :math:`q(x) = \mathbb P_x(\tau_B < \tau_A)` between two metastable sets
:math:`A` and :math:`B` solves the backward Kolmogorov equation

.. math:: \nabla\cdot\big(e^{-V/kT}\,\nabla q\big) = 0 \ \text{ in } \Omega\setminus(A\cup B),
          \qquad q|_A = 0,\quad q|_B = 1,

with no-flux walls :math:`n\cdot\nabla q = 0` on the box :math:`\partial\Omega`. Equivalently
:math:`q` minimises the weighted Dirichlet energy

.. math:: I[q] = \int_\Omega |\nabla q|^2\, e^{-V/kT}\, dx

among functions with those boundary values. Transition path theory turns :math:`q` into rates:
the number of reactive trajectories per unit time is
:math:`\nu_R = \frac{kT}{Z}\, I[q]` with :math:`Z = \int_\Omega e^{-V/kT}dx`, and the rate
constant is :math:`k_{AB} = \nu_R/\rho_A` with :math:`\rho_A = \frac1Z\int (1-q)\,e^{-V/kT}dx`,
the probability of having last visited :math:`A`.

This module provides

* the potentials: :func:`mueller_brown`, :func:`rugged_mueller_brown` and the
  high-dimensional :func:`extended_mueller_brown` (Mueller–Brown plus stiff harmonic
  coordinates :math:`\sum_{i\ge3} x_i^2/(2\cdot 0.05^2)`), with the standard box and states;
* :func:`solve_committor_fv`, a conservative finite-volume reference solver (scipy.sparse)
  whose result also gives the rate;
* :func:`langevin_samples`, Euler–Maruyama for the dynamics above;
* :class:`CommittorNet` and :func:`fit_committor`, the neural-network committor of
  Q. Li, B. Lin and W. Ren, *Computing committor functions for the study of rare events
  using deep learning*, J. Chem. Phys. 151, 054112 (2019): a sigmoid-output network trained on
  :math:`I[q]` plus boundary penalties, with fresh importance-weighted samples each step;
* :func:`committor_errors`, relative :math:`L^2` errors against the reference.

The states are :class:`Disk` objects. A disk tests only the first two coordinates of a point,
so in :math:`\mathbb R^d` it is the cylinder :math:`\text{disk}\times\mathbb R^{d-2}`; with
cylinders the committor of :func:`extended_mueller_brown` equals the 2-D one for every value of
the harmonic coordinates.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ._checks import (
    check_array,
    check_box,
    check_callable,
    check_choice,
    check_float,
    check_int,
    check_tensor,
    resolve_generator,
    resolve_options,
)
from .numerics import device_of, mlp
from .numerics import generator as new_generator
from .runtime import get_device
from .training import raise_if_nonfinite, train_averaged

__all__ = [
    "BoltzmannSampler",
    "CommittorFit",
    "CommittorNet",
    "CommittorOptions",
    "Disk",
    "FVCommittor",
    "MB_BOX",
    "MB_STATE_A",
    "MB_STATE_B",
    "committor_errors",
    "effective_sample_size",
    "evaluate_on_grid",
    "extended_mueller_brown",
    "fit_committor",
    "langevin_samples",
    "mueller_brown",
    "reaction_rate_of",
    "rugged_mueller_brown",
    "solve_committor_fv",
    "variational_loss",
]

# ----------------------------------------------------------------------------------------------
# potentials
# ----------------------------------------------------------------------------------------------

#: Mueller–Brown parameters (Müller & Brown 1979), in the order A, a, b, c, x0, y0.
MB_A = (-200.0, -100.0, -170.0, 15.0)
MB_a = (-1.0, -1.0, -6.5, 0.7)
MB_b = (0.0, 0.0, 11.0, 0.6)
MB_c = (-10.0, -10.0, -6.5, 0.7)
MB_X0 = (1.0, 0.0, -0.5, -1.0)
MB_Y0 = (0.0, 0.5, 1.5, 1.0)

#: The computational box :math:`[-1.5, 1] \times [-0.5, 2]` with no-flux walls.
MB_BOX = ((-1.5, 1.0), (-0.5, 2.0))
#: Width of the stiff harmonic coordinates of :func:`extended_mueller_brown`.
HARMONIC_WIDTH = 0.05
#: L-BFGS iterations of the polish between two evaluations of the check loss (early stopping).
_POLISH_CHECK_EVERY = 10


def _backend(points):
    return torch if isinstance(points, torch.Tensor) else np


def _as_points(name: str, points):
    """Accept a torch tensor or an array-like with last dimension >= 2."""
    if isinstance(points, torch.Tensor):
        check_tensor(name, points, finite=False)
    else:
        points = check_array(name, points, finite=False)
    if points.ndim == 0 or points.shape[-1] < 2:
        raise ValueError(f"{name} must have a last dimension of at least 2 (x, y, ...), got shape {tuple(points.shape)}")
    return points


def mueller_brown(points):
    r"""Mueller–Brown potential :math:`V(x, y) = \sum_{i=1}^4 A_i e^{a_i(x-x_i)^2 + b_i(x-x_i)(y-y_i) + c_i(y-y_i)^2}`.

    ``points`` is a numpy array or torch tensor with last dimension 2 (only the first two
    coordinates are used); the result has the leading shape and the same type, so torch input
    keeps autograd.
    """
    points = _as_points("points", points)
    xp = _backend(points)
    x, y = points[..., 0], points[..., 1]
    value = 0.0
    for A, a, b, c, x0, y0 in zip(MB_A, MB_a, MB_b, MB_c, MB_X0, MB_Y0):
        dx, dy = x - x0, y - y0
        value = value + A * xp.exp(a * dx * dx + b * dx * dy + c * dy * dy)
    return value


def rugged_mueller_brown(points, amplitude: float = 9.0, wavenumber: float = 10.0):
    r"""Rugged Mueller–Brown: :math:`V + 9\sin(10\pi x)\sin(10\pi y)` (Li, Lin & Ren 2019)."""
    amplitude = check_float("amplitude", amplitude)
    wavenumber = check_float("wavenumber", wavenumber, positive=True)
    points = _as_points("points", points)
    xp = _backend(points)
    k = wavenumber * math.pi
    return mueller_brown(points) + amplitude * xp.sin(k * points[..., 0]) * xp.sin(k * points[..., 1])


def extended_mueller_brown(points, width: float = HARMONIC_WIDTH):
    r"""Mueller–Brown in the first two coordinates plus :math:`\sum_{i\ge 3} x_i^2/(2\,\mathrm{width}^2)`.

    The extra coordinates are stiff harmonic degrees of freedom: at temperature :math:`kT`
    they are Gaussian with standard deviation :math:`\mathrm{width}\sqrt{kT}`.
    """
    width = check_float("width", width, positive=True)
    points = _as_points("points", points)
    extra = points[..., 2:]
    return mueller_brown(points) + (extra * extra).sum(-1) / (2 * width**2)


@dataclass(frozen=True)
class Disk:
    """A disk of ``radius`` around ``center`` in the first two coordinates.

    In :math:`\\mathbb R^d` it is the cylinder disk × :math:`\\mathbb R^{d-2}`.
    """

    center: tuple[float, float]
    radius: float

    def __post_init__(self):
        center = check_array("center", self.center, ndim=1)
        if center.shape != (2,):
            raise ValueError(f"center must hold two numbers (x, y), got shape {center.shape}")
        object.__setattr__(self, "center", (float(center[0]), float(center[1])))
        object.__setattr__(self, "radius", check_float("radius", self.radius, positive=True))

    def contains(self, points):
        """Boolean mask of the points (numpy or torch, last dimension >= 2) inside the disk."""
        points = _as_points("points", points)
        dx = points[..., 0] - self.center[0]
        dy = points[..., 1] - self.center[1]
        return dx * dx + dy * dy <= self.radius**2

    def sample(self, n: int, generator: torch.Generator, device=None, dtype=torch.float32) -> torch.Tensor:
        """``n`` points drawn uniformly in the disk (shape ``(n, 2)``), on ``device`` (default: the generator's)."""
        n = check_int("n", n, minimum=1)
        device = generator.device if device is None else get_device(device)
        radius = self.radius * torch.sqrt(torch.rand(n, generator=generator, device=device, dtype=dtype))
        angle = 2 * math.pi * torch.rand(n, generator=generator, device=device, dtype=dtype)
        center = torch.tensor(self.center, device=device, dtype=dtype)
        return center + torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)


#: The standard states of the Mueller–Brown problem (Li, Lin & Ren 2019).
MB_STATE_A = Disk((-0.558, 1.441), 0.1)
MB_STATE_B = Disk((0.623, 0.028), 0.1)


_check_box = check_box


def _check_states(state_a, state_b, box):
    for name, state in (("state_a", state_a), ("state_b", state_b)):
        if not isinstance(state, Disk):
            raise TypeError(f"{name} must be a Disk, got {type(state).__name__}")
        (x0, x1), (y0, y1) = box
        cx, cy = state.center
        if not (x0 < cx < x1 and y0 < cy < y1):
            raise ValueError(f"{name} is centred at {state.center}, outside the box {box}")
    distance = math.dist(state_a.center, state_b.center)
    if distance <= state_a.radius + state_b.radius:
        raise ValueError(
            f"state_a and state_b overlap (centre distance {distance:.3g} <= sum of radii "
            f"{state_a.radius + state_b.radius:.3g}); the committor needs disjoint A and B"
        )


# ----------------------------------------------------------------------------------------------
# finite-volume reference solver
# ----------------------------------------------------------------------------------------------

#: Boltzmann exponents are clipped at this value (e^-600 ~ 1e-261) so that no weight underflows to 0.
MAX_EXPONENT = 600.0


@dataclass
class FVCommittor:
    """Result of :func:`solve_committor_fv` on the cell centres ``x`` × ``y``.

    Arrays are indexed ``[iy, ix]``. ``energy`` is the discrete Dirichlet energy
    :math:`\\int |\\nabla q|^2 e^{-(V-V_{\\min})/kT}dx`, ``partition`` is
    :math:`Z = \\int e^{-(V-V_{\\min})/kT}dx`; both carry the same factor :math:`e^{V_{\\min}/kT}`,
    which cancels in the rates.
    """

    x: np.ndarray
    y: np.ndarray
    q: np.ndarray
    V: np.ndarray
    kT: float
    box: tuple
    state_a: Disk
    state_b: Disk
    in_a: np.ndarray
    in_b: np.ndarray
    energy: float
    partition: float
    V_min: float
    _interpolator: object = field(default=None, repr=False)

    @property
    def h(self) -> float:
        return float(self.x[1] - self.x[0])

    @property
    def reaction_rate(self) -> float:
        r"""Reactive flux :math:`\nu_R = kT\, I[q] / Z` (reactive trajectories per unit time)."""
        return self.kT * self.energy / self.partition

    @property
    def rho_a(self) -> float:
        r""":math:`\rho_A = \frac1Z\int (1-q)e^{-V/kT}dx`, the probability of having last visited A."""
        boltzmann = np.exp(-np.minimum((self.V - self.V_min) / self.kT, MAX_EXPONENT)) * self.h**2
        return float(((1 - self.q) * boltzmann).sum() / self.partition)

    @property
    def rate_constant(self) -> float:
        r"""Rate constant :math:`k_{AB} = \nu_R / \rho_A` (inverse mean time from A to B)."""
        return self.reaction_rate / self.rho_a

    def low_energy_mask(self, cutoff: float = 130.0) -> np.ndarray:
        """Cells with :math:`V - V_{\\min} <` ``cutoff`` outside A and B (the published error region)."""
        cutoff = check_float("cutoff", cutoff, positive=True)
        return (self.V - self.V_min < cutoff) & ~self.in_a & ~self.in_b

    def transition_mask(self, low: float = 0.3, high: float = 0.7) -> np.ndarray:
        """Cells with ``low`` < q < ``high`` (the transition region)."""
        low = check_float("low", low, minimum=0.0, maximum=1.0)
        high = check_float("high", high, minimum=low, maximum=1.0)
        return (self.q > low) & (self.q < high)

    def __call__(self, points) -> np.ndarray:
        """The reference committor at ``points`` (first two coordinates), by bilinear interpolation.

        Points outside the box raise ``ValueError``; between the outermost cell centres and the
        wall the value is extrapolated as constant (no-flux wall).
        """
        points = _as_points("points", points)
        if isinstance(points, torch.Tensor):
            points = points.detach().cpu().numpy()
        xy = np.asarray(points[..., :2], dtype=float)
        (x0, x1), (y0, y1) = self.box
        outside = (xy[..., 0] < x0) | (xy[..., 0] > x1) | (xy[..., 1] < y0) | (xy[..., 1] > y1)
        if np.any(outside):
            first = xy[outside][0]
            raise ValueError(f"points must lie in the box {self.box}; found ({first[0]:.3g}, {first[1]:.3g}) outside")
        if self._interpolator is None:
            from scipy.interpolate import RegularGridInterpolator

            self._interpolator = RegularGridInterpolator((self.y, self.x), self.q, method="linear")
        clipped = np.stack([np.clip(xy[..., 1], self.y[0], self.y[-1]), np.clip(xy[..., 0], self.x[0], self.x[-1])], -1)
        return self._interpolator(clipped)


def solve_committor_fv(
    potential: Callable, kT: float, n: int = 201, box=MB_BOX, state_a: Disk = MB_STATE_A, state_b: Disk = MB_STATE_B
) -> FVCommittor:
    r"""Conservative finite-volume solve of :math:`\nabla\cdot(e^{-V/kT}\nabla q) = 0` on an ``n × n`` grid.

    The box is cut into ``n × n`` cells; for every interior face between cells :math:`i, j`
    the flux is :math:`w_{ij}(q_j - q_i)` with the Boltzmann weight :math:`w_{ij} = e^{-V/kT}`
    at the face midpoint (for square cells the face length and the distance cancel). Faces on
    the walls carry no flux. Cells whose centres lie in A (B) are fixed to 0 (1); flux balance
    in every other cell gives a sparse symmetric linear system, solved directly.

    Parameters
    ----------
    potential
        ``V(points)`` for a numpy array of shape ``(k, 2)``.
    kT
        Temperature, ``> 0``.
    n
        Cells per side (the box must be square-celled: both sides are divided into ``n``).
    box, state_a, state_b
        Domain ``((xmin, xmax), (ymin, ymax))`` and the two disjoint :class:`Disk` states inside it.
    """
    check_callable("potential", potential)
    kT = check_float("kT", kT, positive=True)
    n = check_int("n", n, minimum=8)
    box = _check_box(box)
    _check_states(state_a, state_b, box)
    (x0, x1), (y0, y1) = box
    hx, hy = (x1 - x0) / n, (y1 - y0) / n
    if not math.isclose(hx, hy, rel_tol=1e-9):
        raise ValueError(f"box must be square so that the cells are square, got side lengths {x1 - x0} and {y1 - y0}")
    h = hx
    xs = x0 + h * (np.arange(n) + 0.5)
    ys = y0 + h * (np.arange(n) + 0.5)
    X, Y = np.meshgrid(xs, ys)
    centres = np.stack([X, Y], -1)
    V = check_array("potential(points)", potential(centres.reshape(-1, 2))).reshape(n, n)
    in_a = np.asarray(state_a.contains(centres))
    in_b = np.asarray(state_b.contains(centres))
    for name, state, mask in (("state_a", state_a, in_a), ("state_b", state_b, in_b)):
        if mask.sum() < 5:
            raise ValueError(
                f"n={n} is too coarse to resolve {name}: only {int(mask.sum())} cell centres lie inside it "
                f"(cell size {h:.3g}, radius {state.radius:.3g}); increase n"
            )
    V_min = float(V.min())

    def weight(points):
        values = check_array("potential(points)", potential(points.reshape(-1, 2))).reshape(points.shape[:-1])
        return np.exp(-np.minimum((values - V_min) / kT, MAX_EXPONENT))

    # Boltzmann weights at the midpoints of the vertical (x-direction) and horizontal faces
    w_x = weight(0.5 * (centres[:, 1:] + centres[:, :-1]))  # shape (n, n-1): between [iy, ix] and [iy, ix+1]
    w_y = weight(0.5 * (centres[1:, :] + centres[:-1, :]))  # shape (n-1, n): between [iy, ix] and [iy+1, ix]
    index = np.arange(n * n).reshape(n, n)
    i = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()])
    j = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()])
    w = np.concatenate([w_x.ravel(), w_y.ravel()])
    # faces that cross the rim of A or B: put the Dirichlet value on the circle itself, at the fraction
    # theta of the way from the free centre to the fixed one (Shortley–Weller), which keeps the solve
    # second order instead of the first order of a staircase boundary
    flat = centres.reshape(-1, 2)
    for state, mask in ((state_a, in_a.ravel()), (state_b, in_b.ravel())):
        for free_end, fixed_end in ((i, j), (j, i)):
            cut = mask[fixed_end] & ~(in_a.ravel() | in_b.ravel())[free_end]
            start = flat[free_end[cut]]
            step = flat[fixed_end[cut]] - start
            offset = start - np.asarray(state.center)
            a, b = (step * step).sum(1), 2 * (step * offset).sum(1)
            c = (offset * offset).sum(1) - state.radius**2
            theta = (-b - np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))) / (2 * a)
            theta = np.clip(theta, 1e-3, 1.0)
            w[cut] = weight(start + 0.5 * theta[:, None] * step) / theta
    # graph Laplacian L = sum_faces w (e_i - e_j)(e_i - e_j)^T, so that q^T L q = sum w (q_i - q_j)^2
    diagonal = np.bincount(i, w, n * n) + np.bincount(j, w, n * n)
    L = sp.coo_matrix(
        (
            np.concatenate([-w, -w, diagonal]),
            (np.concatenate([i, j, np.arange(n * n)]), np.concatenate([j, i, np.arange(n * n)])),
        ),
        shape=(n * n, n * n),
    ).tocsr()
    fixed = (in_a | in_b).ravel()
    free = ~fixed
    q = np.where(in_b, 1.0, 0.0).ravel()
    # symmetric diagonal scaling keeps the solve well balanced where the weights are tiny
    L_ff = L[free][:, free]
    scale = 1.0 / np.sqrt(L_ff.diagonal())
    D = sp.diags(scale)
    rhs = -(L[free][:, fixed] @ q[fixed])
    q[free] = scale * spla.spsolve((D @ L_ff @ D).tocsc(), scale * rhs)
    q = np.clip(q, 0.0, 1.0).reshape(n, n)
    energy = float(np.sum(w * (q.ravel()[i] - q.ravel()[j]) ** 2))
    partition = float(np.exp(-np.minimum((V - V_min) / kT, MAX_EXPONENT)).sum() * h * h)
    return FVCommittor(
        x=xs,
        y=ys,
        q=q,
        V=V,
        kT=kT,
        box=box,
        state_a=state_a,
        state_b=state_b,
        in_a=in_a,
        in_b=in_b,
        energy=energy,
        partition=partition,
        V_min=V_min,
    )


# ----------------------------------------------------------------------------------------------
# Langevin sampling
# ----------------------------------------------------------------------------------------------


def langevin_samples(
    potential: Callable,
    x0: torch.Tensor,
    kT: float,
    dt: float,
    steps: int,
    *,
    record_every: int = 1,
    seed: int = 0,
    box=None,
) -> torch.Tensor:
    r"""Euler–Maruyama for :math:`dX = -\nabla V(X)\,dt + \sqrt{2kT}\,dW` from the walkers ``x0``.

    ``potential`` maps a tensor of shape ``(k, d)`` to ``(k,)`` (gradients by autograd). Returns
    the recorded states, shape ``(steps // record_every, k, d)``, on the device of ``x0``. If
    ``box`` is given, the first two coordinates are reflected at its walls.
    """
    check_callable("potential", potential)
    x0 = check_tensor("x0", x0, ndim=2)
    kT = check_float("kT", kT, positive=True)
    dt = check_float("dt", dt, positive=True)
    steps = check_int("steps", steps, minimum=1)
    record_every = check_int("record_every", record_every, minimum=1)
    if box is not None:
        box = _check_box(box)
    generator = new_generator(seed, x0.device)
    x = x0.detach().clone()
    noise = math.sqrt(2 * kT * dt)
    recorded = []
    for step in range(1, steps + 1):
        x.requires_grad_(True)
        force = -torch.autograd.grad(potential(x).sum(), x)[0]
        raise_if_nonfinite(force, step, "force", "the time step dt is too large for the stiffness of the potential")
        x = (x + dt * force + noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)).detach()
        if box is not None:
            for k, (low, high) in enumerate(box):
                xk = x[:, k]
                xk = torch.where(xk < low, 2 * low - xk, xk)
                x[:, k] = torch.where(xk > high, 2 * high - xk, xk).clamp(low, high)
        if step % record_every == 0:
            recorded.append(x.clone())
    return torch.stack(recorded)


def effective_sample_size(weights) -> float:
    r"""Kish's effective sample size :math:`(\sum w)^2/\sum w^2` of importance weights."""
    weights = check_array("weights", weights, ndim=1)
    if np.any(weights < 0):
        raise ValueError("weights must be non-negative")
    return float(weights.sum() ** 2 / (weights**2).sum())


# ----------------------------------------------------------------------------------------------
# neural-network committor
# ----------------------------------------------------------------------------------------------


class CommittorNet(torch.nn.Module):
    r"""A tanh network with sigmoid output, :math:`q_\theta(x) = \sigma(\mathrm{MLP}(x)) \in (0, 1)`.

    The hidden layers are :func:`mldyn_lite.numerics.mlp`. With a ``generator`` the weights are drawn
    from it (PyTorch's default ranges, :math:`U(-1/\sqrt{\text{fan-in}}, 1/\sqrt{\text{fan-in}})`, layer by
    layer, weight then bias) and the global RNG is not used; without one, PyTorch's default
    initialisation draws from the global RNG.
    """

    def __init__(self, dim: int = 2, width: int = 50, depth: int = 2, *, generator: torch.Generator | None = None):
        super().__init__()
        dim = check_int("dim", dim, minimum=2)
        width = check_int("width", width, minimum=1)
        depth = check_int("depth", depth, minimum=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        device = None if generator is None else generator.device
        self.mlp = mlp(dim, width, depth, 1, "tanh", seed=generator, device=device)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x)).squeeze(-1)


class BoltzmannSampler:
    r"""Fresh, importance-weighted samples of :math:`e^{-V/kT}` for :math:`V = V_2(x_1, x_2) + \sum_{i\ge3} x_i^2/(2w^2)`.

    :math:`(x_1, x_2)` are drawn uniformly in the part of the box where
    :math:`V_2 - V_{\min} <` ``cutoff`` and carry the weight :math:`e^{-(V_2 - V_{\min})/kT}`; the
    harmonic coordinates are drawn exactly from their Gaussian :math:`N(0, kT\,w^2)`, so they
    need no weight. Plain Boltzmann samples would almost never visit the transition region
    (it lies 10–13 kT above the minimum at kT = 10); uniform samples visit it in proportion to
    its area, and the weight restores the right measure. The samples live on ``device`` (the CPU
    when it is ``None``) in ``dtype``.
    """

    def __init__(
        self,
        potential: Callable,
        kT: float,
        *,
        box=MB_BOX,
        dim: int = 2,
        width: float = HARMONIC_WIDTH,
        cutoff: float = 200.0,
        device=None,
        dtype=torch.float32,
    ):
        self.potential = check_callable("potential", potential)
        self.kT = check_float("kT", kT, positive=True)
        self.box = _check_box(box)
        self.dim = check_int("dim", dim, minimum=2)
        self.width = check_float("width", width, positive=True)
        self.cutoff = check_float("cutoff", cutoff, positive=True)
        self.device = torch.device("cpu") if device is None else get_device(device)
        self.dtype = dtype
        (x0, x1), (y0, y1) = self.box
        grid = np.stack(np.meshgrid(np.linspace(x0, x1, 401), np.linspace(y0, y1, 401)), -1).reshape(-1, 2)
        values = _to_numpy(potential(torch.as_tensor(grid)))
        self.V_min = float(values.min())
        self.acceptance = float(np.mean(values - self.V_min < self.cutoff))
        kept = values[values - self.V_min < self.cutoff] - self.V_min
        #: mean importance weight of a sample, E[e^{-(V_2 - V_min)/kT}] under the uniform proposal (401 x 401 grid)
        self.mean_weight = float(np.mean(np.exp(-kept / self.kT)))
        self._low = torch.tensor([x0, y0], device=self.device, dtype=dtype)
        self._size = torch.tensor([x1 - x0, y1 - y0], device=self.device, dtype=dtype)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` points of shape ``(n, dim)`` and their weights ``(n,)`` (at most 1)."""
        n = check_int("n", n, minimum=1)
        kept, count = [], 0
        while count < n:
            m = int(1.3 * (n - count) / max(self.acceptance, 1e-3)) + 8
            xy = self._low + self._size * torch.rand(m, 2, generator=generator, device=self.device, dtype=self.dtype)
            energy = self.potential(xy) - self.V_min
            xy, energy = xy[energy < self.cutoff], energy[energy < self.cutoff]
            kept.append((xy, energy))
            count += xy.shape[0]
        xy = torch.cat([k[0] for k in kept])[:n]
        energy = torch.cat([k[1] for k in kept])[:n]
        weights = torch.exp(-energy / self.kT)
        if self.dim > 2:
            extra = (
                math.sqrt(self.kT)
                * self.width
                * torch.randn(n, self.dim - 2, generator=generator, device=self.device, dtype=self.dtype)
            )
            xy = torch.cat([xy, extra], dim=1)
        return xy, weights

    def quasi_random(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed quadrature sample: the first ``n`` points of a scrambled Sobol sequence in the box (and, for
        ``dim > 2``, in the harmonic coordinates by the inverse normal distribution), those below the cut-off
        (about ``acceptance * n``), and their weights. The scrambling is seeded from ``generator``."""
        n = check_int("n", n, minimum=1)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))
        unit = torch.quasirandom.SobolEngine(self.dim, scramble=True, seed=seed).draw(n, dtype=torch.float64)
        xy = self._low + self._size * unit[:, :2].to(device=self.device, dtype=self.dtype)
        energy = self.potential(xy) - self.V_min
        kept = energy < self.cutoff
        points, weights = xy[kept], torch.exp(-energy[kept] / self.kT)
        if self.dim > 2:
            tail = unit[kept.cpu(), 2:].clamp(1e-12, 1 - 1e-12)
            extra = math.sqrt(self.kT) * self.width * math.sqrt(2) * torch.erfinv(2 * tail - 1)
            points = torch.cat([points, extra.to(device=self.device, dtype=self.dtype)], dim=1)
        return points, weights

    def sample_state(self, state: Disk, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` points in ``state`` (a cylinder when ``dim > 2``, harmonic coordinates Gaussian)."""
        xy = state.sample(n, generator, device=self.device, dtype=self.dtype)
        if self.dim > 2:
            extra = (
                math.sqrt(self.kT)
                * self.width
                * torch.randn(n, self.dim - 2, generator=generator, device=self.device, dtype=self.dtype)
            )
            xy = torch.cat([xy, extra], dim=1)
        return xy


def _dtype_of(q) -> torch.dtype:
    """The dtype of the first parameter of a module ``q``, float32 for a plain function."""
    for parameter in q.parameters() if isinstance(q, torch.nn.Module) else ():
        return parameter.dtype
    return torch.float32


def _to_numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def variational_loss(
    q: Callable,
    points: torch.Tensor,
    weights: torch.Tensor,
    points_a: torch.Tensor,
    points_b: torch.Tensor,
    penalty: float = 1.0,
    mean_weight: float | None = None,
) -> torch.Tensor:
    r"""Monte-Carlo estimate of :math:`I[q] + \lambda\big(\langle q^2\rangle_A + \langle (1-q)^2\rangle_B\big)`.

    ``points`` are samples with importance ``weights`` (so that the mean of
    ``weights * |∇q|²`` estimates the weighted Dirichlet energy up to a constant factor);
    ``points_a``/``points_b`` are samples inside the states, ``penalty`` is :math:`\lambda`.
    """
    check_callable("q", q)
    points = check_tensor("points", points, ndim=2)
    weights = check_tensor("weights", weights, ndim=1)
    penalty = check_float("penalty", penalty, nonnegative=True)
    if mean_weight is not None:
        mean_weight = check_float("mean_weight", mean_weight, positive=True)
    n, n_a = points.shape[0], points_a.shape[0]
    # one forward pass for all three sets; rows are independent, so the gradient of the sum
    # with respect to row i is the gradient of q at point i
    everything = torch.cat([points, points_a, points_b]).detach().requires_grad_(True)
    values = q(everything)
    grad_q = torch.autograd.grad(values.sum(), everything, create_graph=True)[0][:n]
    # estimates E_pi |grad q|^2: self-normalised, or normalised by the known mean weight
    normaliser = weights.sum() if mean_weight is None else n * mean_weight
    dirichlet = (weights * (grad_q**2).sum(1)).sum() / normaliser
    boundary = (values[n : n + n_a] ** 2).mean() + ((1 - values[n + n_a :]) ** 2).mean()
    return dirichlet + penalty * boundary


@dataclass(frozen=True)
class CommittorOptions:
    r"""Settings of :func:`fit_committor` (the defaults reach the accuracy stated on pages 4.4 and 4.5).

    ``width``, ``depth``
        Hidden layers of the :class:`CommittorNet` (the published shape: two layers of 50).
    ``steps``, ``batch_size``, ``boundary_batch_size``
        Adam steps; fresh weighted samples per step, and samples in each state per step.
    ``penalty``, ``final_penalty``
        The boundary weight :math:`\lambda` grows geometrically from the first to the second.
    ``lr``, ``final_lr``
        The learning rate decays geometrically from the first to the second.
    ``clip``
        Gradient-norm clipping (a sigmoid network can saturate after one large step).
    ``average_from``
        Fraction of the run after which the weights are averaged uniformly (stochastic weight
        averaging, :class:`torch.optim.swa_utils.AveragedModel`); the average is the returned network.
    ``normalise``
        ``"batch"``: divide the weighted Dirichlet sum by the batch's total weight (self-normalised
        importance sampling); ``"exact"``: by the batch size times the sampler's known
        ``mean_weight``, which removes the batch-to-batch rescaling of the Dirichlet term.
    ``record_every``
        Steps between entries of the loss history (and calls of the callback).
    ``polish_steps``, ``polish_points``
        After Adam, up to ``polish_steps`` L-BFGS iterations on one fixed, quasi-random sample: a scrambled
        Sobol sequence of ``polish_points`` points in the box (with the Boltzmann weights and the cut-off of
        the sampler; harmonic coordinates by the inverse normal distribution), and ``10 * boundary_batch_size``
        points in each state, at the penalty ``final_penalty``. The low-discrepancy points integrate the loss
        far more evenly than random ones (which L-BFGS would overfit), and the quasi-Newton steps reach the
        directions the loss barely weights, at the rim of the low-energy region. Every 10 iterations the
        loss is evaluated on a second, independently scrambled sample of the same kind; the polish stops at
        the first rise of that check loss and returns the network of its lowest value. In d = 10 the few
        hundred effective points of a sample cannot pin down the eight harmonic directions on their own: a
        sample of 16,384 points is overfitted after a few dozen iterations; with 65,536 points and the
        check, the polish helps in both d = 2 and d = 10 (``benchmarks/COMMITTOR_DEFAULTS.md``).
        ``polish_steps=0`` skips the polish.
    """

    width: int = 50
    depth: int = 2
    steps: int = 2500
    batch_size: int = 700
    boundary_batch_size: int = 100
    penalty: float = 0.03
    final_penalty: float = 1.0
    lr: float = 1e-2
    final_lr: float = 1e-4
    clip: float = 1.0
    average_from: float = 0.6
    normalise: str = "batch"
    record_every: int = 10
    polish_steps: int = 150
    polish_points: int = 65536

    def __post_init__(self):
        object.__setattr__(self, "normalise", check_choice("normalise", self.normalise, ("batch", "exact")))
        for name in ("width", "depth", "steps", "batch_size", "boundary_batch_size", "record_every"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum=1))
        object.__setattr__(self, "polish_steps", check_int("polish_steps", self.polish_steps, minimum=0))
        object.__setattr__(self, "polish_points", check_int("polish_points", self.polish_points, minimum=16))
        for name in ("penalty", "final_penalty", "lr", "final_lr", "clip"):
            object.__setattr__(self, name, check_float(name, getattr(self, name), positive=True))
        object.__setattr__(self, "average_from", check_float("average_from", self.average_from, minimum=0.0, maximum=1.0))


#: Old keyword names of :func:`fit_committor`, still accepted.
_ALIASES = {"batch": "batch_size", "boundary_batch": "boundary_batch_size"}


@dataclass
class CommittorFit:
    """Result of :func:`fit_committor`.

    ``net``: the weight-averaged network; ``losses``: the loss every ``record_every`` steps
    (``history_steps`` holds those steps); ``steps``; ``options``; ``seed``;
    ``cpu_seconds``: process CPU time of the training.
    """

    net: CommittorNet
    losses: list
    steps: int
    options: CommittorOptions
    history_steps: list
    seed: int | None
    cpu_seconds: float

    @property
    def model(self) -> CommittorNet:
        """The returned network (same as ``net``)."""
        return self.net

    @property
    def history(self) -> dict:
        """The loss history as ``{"step": [...], "loss": [...]}`` (the book's ``history`` convention)."""
        return {"step": list(self.history_steps), "loss": list(self.losses)}


def fit_committor(
    sampler: BoltzmannSampler,
    options: CommittorOptions | None = None,
    *,
    state_a: Disk = MB_STATE_A,
    state_b: Disk = MB_STATE_B,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    callback: Callable | None = None,
    **overrides,
) -> CommittorFit:
    r"""Train a :class:`CommittorNet` on :func:`variational_loss` with fresh samples every step.

    Li, Lin & Ren (J. Chem. Phys. 151, 054112, 2019) minimise
    :math:`\mathbb E_\pi|\nabla q_\theta|^2 + \lambda(\langle q_\theta^2\rangle_A + \langle(1-q_\theta)^2\rangle_B)`.
    Here: Adam with the learning rate decaying geometrically from ``lr`` to ``final_lr``,
    gradient-norm clipping at ``clip``, and a uniform average of the weights over the last
    ``1 - average_from`` of the run (the returned network). With a small final learning rate and a
    long averaging window the final network carries little of the step-to-step jitter of
    stochastic training. The penalty weight grows geometrically from ``penalty`` to
    ``final_penalty``: the Dirichlet term is tiny
    (:math:`\mathbb E_\pi|\nabla q|^2 = \nu_R/kT \approx 5\cdot10^{-4}` for Mueller–Brown at
    kT = 10), so a large weight from the start drowns it, while a small final weight lets
    :math:`q` shrink its contrast between A and B by about :math:`I/\lambda`.

    Parameters
    ----------
    sampler
        A :class:`BoltzmannSampler` (sets the dimension, device and dtype).
    options
        A :class:`CommittorOptions`; any of its fields may also be given as a keyword
        (``steps=4000``), which overrides ``options``. ``batch`` and ``boundary_batch`` are
        accepted for ``batch_size`` and ``boundary_batch_size``.
    state_a, state_b
        The two states.
    seed, generator
        Randomness for the initial weights and the samples: a ``torch.Generator`` on the
        sampler's device, or else a new one seeded with ``seed``. The global torch RNG is not touched.
    callback
        ``callback(step, net)`` every ``record_every`` steps, with the current estimate: the
        weight average once averaging has started, the trained network before.
    """
    if not isinstance(sampler, BoltzmannSampler):
        raise TypeError(f"sampler must be a BoltzmannSampler, got {type(sampler).__name__}")
    _check_states(state_a, state_b, sampler.box)
    options = resolve_options(CommittorOptions, options, overrides, "fit_committor", _ALIASES)
    if callback is not None:
        check_callable("callback", callback)
    generator, seed = resolve_generator(seed, generator, sampler.device)
    o = options
    start = time.process_time()
    net = CommittorNet(sampler.dim, o.width, o.depth, generator=generator).to(device=sampler.device, dtype=sampler.dtype)
    last = max(o.steps - 1, 1)
    mean_weight = sampler.mean_weight if o.normalise == "exact" else None

    def loss_at(step):
        points, weights = sampler.sample(o.batch_size, generator)
        points_a = sampler.sample_state(state_a, o.boundary_batch_size, generator)
        points_b = sampler.sample_state(state_b, o.boundary_batch_size, generator)
        weight = o.penalty * (o.final_penalty / o.penalty) ** (step / last)
        return variational_loss(net, points, weights, points_a, points_b, weight, mean_weight)

    run = train_averaged(
        net,
        loss_at,
        steps=o.steps,
        lr=o.lr,
        final_lr=o.final_lr,
        clip=o.clip,
        average_from=o.average_from,
        record_every=o.record_every,
        callback=callback,
        hint="the learning rate is probably too large",
    )
    result = run.model
    if o.polish_steps > 0:
        result = _polish(result, sampler, state_a, state_b, o, generator, mean_weight)
    return CommittorFit(
        net=result,
        losses=run.history["loss"],
        steps=o.steps,
        options=o,
        history_steps=run.history["step"],
        seed=seed,
        cpu_seconds=time.process_time() - start,
    )


def _polish(
    net,
    sampler: BoltzmannSampler,
    state_a: Disk,
    state_b: Disk,
    o: CommittorOptions,
    generator: torch.Generator,
    mean_weight: float | None,
):
    """L-BFGS on the loss over one fixed quasi-random sample, stopped early on a second, independent one
    (see ``CommittorOptions.polish_steps``). Returns the network of the lowest check loss."""

    def quadrature():
        points, weights = sampler.quasi_random(o.polish_points, generator)
        ends = [sampler.sample_state(state, 10 * o.boundary_batch_size, generator) for state in (state_a, state_b)]
        return points, weights, *ends

    sample, check = quadrature(), quadrature()

    def check_loss():
        return variational_loss(net, *check, o.final_penalty, mean_weight).item()

    net.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        net.parameters(),
        lr=1.0,
        max_iter=_POLISH_CHECK_EVERY,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
    )
    evaluations = [0]

    def closure():
        optimizer.zero_grad()
        loss = variational_loss(net, *sample, o.final_penalty, mean_weight)
        raise_if_nonfinite(loss.detach(), o.steps + evaluations[0], hint="the L-BFGS polish diverged")
        evaluations[0] += 1
        loss.backward()
        return loss

    best, best_state = check_loss(), copy.deepcopy(net.state_dict())
    for done in range(0, o.polish_steps, _POLISH_CHECK_EVERY):
        optimizer.param_groups[0]["max_iter"] = min(_POLISH_CHECK_EVERY, o.polish_steps - done)
        optimizer.step(closure)
        current = check_loss()
        if not current < best:  # the fixed sample is being overfitted (or nothing moves): stop
            break
        best, best_state = current, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    return net.requires_grad_(False)


def committor_errors(
    q: Callable,
    reference: FVCommittor,
    *,
    cutoff: float = 130.0,
    band: tuple = (0.3, 0.7),
    dim: int = 2,
    width: float = HARMONIC_WIDTH,
    seed: int = 0,
) -> dict:
    r"""Relative :math:`L^2` errors of ``q`` against the reference on its cell centres.

    ``"low_energy"``: cells with :math:`V - V_{\min} <` ``cutoff`` outside A and B;
    ``"transition"``: those cells where the reference lies in ``band``. For ``dim > 2`` each
    cell centre gets harmonic coordinates drawn from their Gaussian (``seed``), so the error
    also measures how well ``q`` ignores them. Also returns ``"reaction_rate"``, the rate
    :math:`kT\,I[q]/Z` of ``q`` by the same quadrature (2-D only; ``nan`` otherwise).
    """
    check_callable("q", q)
    if not isinstance(reference, FVCommittor):
        raise TypeError(f"reference must be an FVCommittor, got {type(reference).__name__}")
    cutoff = check_float("cutoff", cutoff, positive=True)
    dim = check_int("dim", dim, minimum=2)
    low_energy = reference.low_energy_mask(cutoff)
    transition = low_energy & reference.transition_mask(*band)
    values = evaluate_on_grid(q, reference, dim=dim, width=width, seed=seed)
    errors = {}
    for name, mask in (("low_energy", low_energy), ("transition", transition)):
        diff = values[mask] - reference.q[mask]
        errors[name] = float(np.linalg.norm(diff) / np.linalg.norm(reference.q[mask]))
    errors["reaction_rate"] = reaction_rate_of(q, reference) if dim == 2 else float("nan")
    return errors


def evaluate_on_grid(
    q: Callable, reference: FVCommittor, *, dim: int = 2, width: float = HARMONIC_WIDTH, seed: int = 0
) -> np.ndarray:
    """``q`` at the reference's cell centres (harmonic coordinates Gaussian when ``dim > 2``), shape ``(n, n)``."""
    check_callable("q", q)
    dim = check_int("dim", dim, minimum=2)
    device, dtype = device_of(q), _dtype_of(q)
    X, Y = np.meshgrid(reference.x, reference.y)
    points = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], 1), dtype=dtype, device=device)
    if dim > 2:
        generator = new_generator(seed, device)
        extra = (
            math.sqrt(reference.kT)
            * width
            * torch.randn(points.shape[0], dim - 2, generator=generator, device=device, dtype=dtype)
        )
        points = torch.cat([points, extra], 1)
    with torch.no_grad():
        return _to_numpy(q(points)).reshape(X.shape).astype(float)


def reaction_rate_of(q: Callable, reference: FVCommittor) -> float:
    r"""Rate :math:`\nu_R = kT\,I[q]/Z` of a 2-D trial committor ``q``, with autograd gradients on the reference grid."""
    check_callable("q", q)
    device, dtype = device_of(q), _dtype_of(q)
    X, Y = np.meshgrid(reference.x, reference.y)
    points = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], 1), dtype=dtype, device=device).requires_grad_(True)
    grad_q = torch.autograd.grad(q(points).sum(), points)[0]
    grad_sq = _to_numpy((grad_q**2).sum(1)).reshape(X.shape).astype(float)
    outside = ~(reference.in_a | reference.in_b)
    boltzmann = np.exp(-np.minimum((reference.V - reference.V_min) / reference.kT, MAX_EXPONENT))
    energy = float((grad_sq * boltzmann)[outside].sum() * reference.h**2)
    return reference.kT * energy / reference.partition
